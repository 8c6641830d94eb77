"""Fanning NumPy work out as Ray tasks: remote functions, chunked ranges, waiting with progress.

The permutation tests (:mod:`specray.analysis.significance_table`) and the attribution
(:mod:`specray.analysis.attribution`) split their permutations and half-samples into
chunks, run one task per chunk on Ray and gather the results in submission order. The
task bodies are plain NumPy functions; this module is the only Ray they touch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from specray.progress import Progress


@functools.cache
def remote(fn: Callable[..., Any]) -> Any:
    """``fn`` as a Ray remote function of one CPU (built once per process)."""
    import ray

    return ray.remote(num_cpus=1)(fn)


def chunks(total: int, size: int, offset: int = 0) -> list[tuple[int, int]]:
    """[start, stop) ranges covering range(offset, offset + total) in pieces of ``size``."""
    end = offset + total
    return [(s, min(s + size, end)) for s in range(offset, end, size)]


def wait_all(refs: list[Any], what: str) -> list[Any]:
    """ray.get in submission order, showing the tasks done as they finish (specray.progress)."""
    import ray

    pending = list(refs)
    with Progress(what, len(refs), "tasks") as shown:
        while pending:
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=0.5)
            shown.advance(len(ready))
    return ray.get(refs)
