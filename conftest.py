"""Doctest fixtures: the names the examples in specray's docstrings use.

``adp_file`` is the genuine HARPS archive file in tests/data; ``store_path`` a 12-spectrum
toy store (tests.helpers); ``run_path`` one checkpoint folder of an untrained network on
that store's grid, written by the trainer's own checkpoint writer (a trained model is
exercised in tests/test_api.py; an example only needs one that loads).
"""

from __future__ import annotations

import pytest
from _pytest.doctest import DoctestItem


@pytest.fixture(scope="session")
def doctest_files(tmp_path_factory) -> dict[str, str]:
    import json

    import torch

    from specray.config import load_config
    from specray.data.store import open_store
    from specray.model.checkpoint import TrainingState, write_checkpoint
    from specray.model.records import CheckpointMeta
    from specray.model.vae import build_model
    from tests.conftest import ADP_FIXTURE
    from tests.helpers import TOY_MODEL, write_toy_store

    root = tmp_path_factory.mktemp("doctest")
    store, checkpoint = root / "store", root / "checkpoint"
    write_toy_store(str(store), n_objects=6, epochs=2, shards=2)
    grid = open_store(str(store)).grid
    config = load_config(overrides=TOY_MODEL)
    torch.manual_seed(0)
    model = build_model(config.model.preset, input_length=grid.length, **config.model.overrides())
    checkpoint.mkdir()
    meta = CheckpointMeta(
        config=config.to_dict(),
        grid=json.loads(grid.to_json()),
        architecture=model.config(),
        store=str(store),
        epoch=0,
        step=0,
        history=[],
    )
    optimizer = torch.optim.Adam(model.parameters())
    write_checkpoint(str(checkpoint), model, optimizer, TrainingState(), meta)
    return {"adp_file": str(ADP_FIXTURE), "store_path": str(store), "run_path": str(checkpoint)}


@pytest.fixture(autouse=True)
def _doctest_names(request) -> None:
    """Give docstring examples (and only them) the files above."""
    if isinstance(request.node, DoctestItem):
        namespace = request.getfixturevalue("doctest_namespace")
        namespace.update(request.getfixturevalue("doctest_files"))
