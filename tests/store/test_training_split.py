"""The training reader's split and loss weights, against their definitions (reader.py)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from specray.data.reader import object_counts, training_datasets
from specray.data.shards import add_native_spectra
from specray.data.store import open_or_create_store, open_store
from specray.spectra.grid import named_grid
from tests.helpers import TOY_GRID

pytestmark = pytest.mark.usefixtures("ray_session")


def test_each_star_is_on_one_side_and_weighted_by_its_number_of_spectra(tmp_path):
    grid = named_grid(TOY_GRID)
    store = open_or_create_store(str(tmp_path / "store"), grid)
    spectra_per_star = {f"STAR-{k:02d}": 1 + k % 4 for k in range(30)}  # 1 to 4 each
    objects = np.array([obj for obj, n in spectra_per_star.items() for _ in range(n)])
    flux = np.ones((objects.size, grid.n_native))
    flux[:, 0] = np.arange(objects.size)  # row number, exact in float16: identifies the row
    ids = [f"row-{i}" for i in range(objects.size)]
    add_native_spectra(store, ids, objects, flux, {}, "split", shards=3)

    total, stars = objects.size, len(spectra_per_star)
    store = open_store(store.uri)  # as committed
    counts = object_counts(store)
    train, val = training_datasets(store, counts, val_fraction=0.3, balance=True)
    seen: dict[int, tuple[bool, float]] = {}
    for validation, dataset in ((False, train), (True, val)):
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            assert set(batch) == {"flux", "mask", "weight"} and batch["weight"].dtype == np.float32
            rows = batch["flux"][:, grid.pad_left].astype(int)
            for row, weight in zip(rows, batch["weight"], strict=True):
                assert row not in seen
                seen[row] = (validation, float(weight))
    assert sorted(seen) == list(range(total))  # every spectrum once
    for row, (validation, weight) in seen.items():
        star = objects[row]
        assert validation == (zlib.crc32(star.encode()) < int(0.3 * 2**32)), star
        assert weight == pytest.approx(total / (stars * spectra_per_star[star]), rel=1e-6)
    sides = {
        star: {seen[r][0] for r in np.flatnonzero(objects == star)} for star in spectra_per_star
    }
    assert all(len(side) == 1 for side in sides.values())  # no star on both sides
    assert 0 < sum(True in side for side in sides.values()) < stars

    unweighted, _ = training_datasets(store, counts, val_fraction=0.3, balance=False)
    weights = np.concatenate([b["weight"] for b in unweighted.iter_batches(batch_format="numpy")])
    assert np.all(weights == 1.0)
