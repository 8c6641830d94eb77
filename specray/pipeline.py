"""The main job on the embedded default data, composing the stages end to end."""

from __future__ import annotations

import logging

from specray import storage
from specray.data.ingest import ingest
from specray.data.synth_store import synthesize

log = logging.getLogger(__name__)

DEMO_STARS = 300
DEMO_MEAN_EPOCHS = 4.0


def demo(out: str = "specray-demo", stars: int = DEMO_STARS, seed: int = 0) -> str:
    """Synthetic survey as archive files -> ingest into a store; return a summary.

    Layout of ``out``: ``raw/`` (ADP FITS files and labels.csv), ``store/`` (shards).
    """
    raw, store = storage.join(out, "raw"), storage.join(out, "store")
    log.info("demo 1/2: synthesising %d stars into %s", stars, raw)
    log.info(
        "%s", synthesize(raw, n_stars=stars, mean_epochs=DEMO_MEAN_EPOCHS, fmt="fits", seed=seed)
    )
    log.info("demo 2/2: ingesting %s into %s", raw, store)
    report = ingest(raw, store, grid="demo", labels=storage.join(raw, "labels.csv"))
    return f"demo store {store}: {report.summary()}"
