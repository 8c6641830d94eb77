"""Starting or joining Ray, the same way for every stage."""

from __future__ import annotations

import logging
import os

import ray

log = logging.getLogger(__name__)

MIN_LOGICAL_CPUS = 4
"""Train and Data deadlock when Train's workers hold every CPU (ray-notes.md): on a small
machine we declare at least this many logical CPUs. They are bookkeeping, not cores."""


def ensure_ray(num_cpus: int | None = None) -> None:
    """Join the cluster in RAY_ADDRESS (as under ``ray job submit``) or start a local one.

    A local Ray gets ``max(4, 2 x cores)`` logical CPUs unless ``num_cpus`` says otherwise.
    """
    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=True)
        return
    cpus = num_cpus or max(MIN_LOGICAL_CPUS, 2 * (os.cpu_count() or 1))
    log.info("starting a local Ray with %d logical CPUs", cpus)
    ray.init(num_cpus=cpus, include_dashboard=False, logging_level=logging.WARNING)
