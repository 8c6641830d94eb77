"""The main job on the embedded default data, composing the stages end to end.

``demo``: synthetic survey as archive-format FITS files -> ingest -> train -> analyse ->
report, on a laptop CPU in minutes. Layout of ``out``::

    raw/            ADP FITS files and labels.csv (the synthetic "archive")
    store/          the Parquet store
    run/            checkpoints and metrics.jsonl
    analysis/       latents.parquet, analysis.json, report.html
"""

from __future__ import annotations

import logging
import time

from specray import storage
from specray.config import DEMO_OVERRIDES, load_config
from specray.data.ingest import ingest
from specray.data.synth_store import synthesize

log = logging.getLogger(__name__)

DEMO_STARS = 300
DEMO_MEAN_EPOCHS = 4.0


def demo(
    out: str = "specray-demo",
    stars: int = DEMO_STARS,
    seed: int = 0,
    overrides: list[str] | None = None,
    settings: str | None = None,
) -> str:
    """Run every stage on the synthetic survey; return the closing summary. ``settings``
    (a YAML or JSON file) and then ``overrides`` change the demo's own settings."""
    from specray.analysis.analyze import analyze
    from specray.train.trainer import train

    config = load_config(settings, overrides, base=DEMO_OVERRIDES + [f"train.seed={seed}"])
    out = storage.normalize(out)
    raw, store = storage.join(out, "raw"), storage.join(out, "store")
    run, analysis = storage.join(out, "run"), storage.join(out, "analysis")
    started = time.monotonic()
    log.info("demo 1/4: synthesising %d stars into %s", stars, raw)
    if not storage.exists(storage.join(raw, "labels.csv")):
        log.info("%s", synthesize(raw, stars, DEMO_MEAN_EPOCHS, "demo", "fits", seed))
    log.info("demo 2/4: ingesting %s into %s", raw, store)
    log.info(
        "%s", ingest(raw, store, grid="demo", labels=storage.join(raw, "labels.csv")).summary()
    )
    log.info("demo 3/4: training %s", run)
    log.info("%s", train(store, run, config).summary())
    log.info("demo 4/4: analysing the latent space into %s", analysis)
    result = analyze(analysis, config, data=store, model=run)
    minutes = (time.monotonic() - started) / 60
    return f"{result.summary()}\ndemo finished in {minutes:.1f} min"
