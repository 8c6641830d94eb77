"""Store formats 1 and 2: the same spectra read identically through every reader, the
plain-pyarrow recipe of the schema docstring, format versions in store.json, and the
large-column guard."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from specray import schema, storage
from specray.data.reader import object_counts, read_store, training_datasets
from specray.data.store import STORE_FILE, open_or_create_store, open_store
from specray.spectra.grid import named_grid
from specray.train.loop import unpack_mask
from tests.helpers import TOY_GRID, plain_rows, write_toy_store

pytestmark = pytest.mark.usefixtures("ray_session")


@pytest.fixture(scope="module")
def both_formats(tmp_path_factory):
    """The same toy spectra (with gaps in the mask) as a format-1 and a format-2 store."""
    folder = tmp_path_factory.mktemp("formats")
    uris = {}
    for version in (1, 2):
        uris[version] = str(folder / f"v{version}")
        write_toy_store(uris[version], n_objects=20, shards=3, format_version=version)
    return uris


def test_new_stores_are_format_2_and_store_json_says_so(both_formats):
    descriptor = json.loads(storage.read_text(storage.join(both_formats[2], STORE_FILE)))
    assert descriptor["format_version"] == schema.FORMAT_VERSION == 2
    store = open_store(both_formats[2])
    shard = pq.read_table(store.shard_uris()[0])
    assert shard.schema.field("flux") == schema.flux_field(store.grid.length)
    assert shard.schema.field("flux").metadata[schema.DTYPE_KEY] == b"<f2"
    assert shard.schema.field("mask").type == pa.binary((store.grid.length + 7) // 8)
    assert shard.schema.metadata[schema.VERSION_KEY] == b"2"
    assert open_store(both_formats[1]).format_version == 1
    assert schema.shard_format(pq.read_schema(open_store(both_formats[1]).shard_uris()[0])) == 1


def test_v1_and_v2_decode_to_identical_arrays_with_plain_pyarrow(both_formats):
    v1, v2 = plain_rows(both_formats[1]), plain_rows(both_formats[2])
    assert sorted(v1) == sorted(v2) and len(v1) == 60
    grid = named_grid(TOY_GRID)
    for spectrum_id, (flux, mask) in v1.items():
        assert flux.dtype == np.float16 and mask.dtype == np.uint8
        assert flux.shape == mask.shape == (grid.length,)
        assert np.array_equal(flux.view(np.uint16), v2[spectrum_id][0].view(np.uint16))
        assert np.array_equal(mask, v2[spectrum_id][1])
        assert np.array_equal(mask, grid.mask)  # padding is 0 in both


def test_the_three_line_recipe_of_the_schema_docstring(both_formats):
    path = open_store(both_formats[2]).shard_uris()[0]
    t = pq.read_table(path, columns=["flux", "mask"])
    flux = np.frombuffer(b"".join(t["flux"].to_pylist()), "<f2").reshape(t.num_rows, -1)
    mask = np.unpackbits(
        np.frombuffer(b"".join(t["mask"].to_pylist()), np.uint8).reshape(t.num_rows, -1),
        axis=1,
        count=flux.shape[1],
    )
    assert np.array_equal(flux, schema.decode_flux(t["flux"]))
    assert np.array_equal(mask, schema.decode_mask(t["mask"], flux.shape[1]))
    assert "np.unpackbits" in schema.__doc__ and '"<f2"' in schema.__doc__


def _by_flux(batches) -> dict[bytes, tuple]:
    rows = {}
    for batch in batches:
        for k in range(len(batch["flux"])):
            assert batch["flux"].dtype == np.float16 and batch["flux"].shape[1:] == (1024,)
            key = np.asarray(batch["flux"][k]).tobytes()
            assert key not in rows
            rows[key] = tuple(np.asarray(batch[name][k]).tobytes() for name in sorted(batch))
    return rows


def test_training_reader_gives_the_same_objects_for_both_formats(both_formats):
    sides = {}
    for version, uri in both_formats.items():
        store = open_store(uri)
        train, val = training_datasets(store, object_counts(store), 0.3, balance=True)
        sides[version] = [
            _by_flux(split.iter_batches(batch_size=None, batch_format="numpy"))
            for split in (train, val)
        ]
    assert sides[1] == sides[2]
    assert len(sides[2][0]) + len(sides[2][1]) == 60 and len(sides[2][1]) > 0


def test_the_training_mask_travels_packed_and_unpacks_to_the_stored_mask(both_formats):
    for uri in both_formats.values():
        store = open_store(uri)
        train, val = training_datasets(store, object_counts(store), 0.3, balance=True)
        for split in (train, val):
            for batch in split.iter_torch_batches(batch_size=16):
                n = len(batch["flux"])
                assert batch["mask"].shape == (n, (store.grid.length + 7) // 8)
                unpacked = unpack_mask(batch["mask"], store.grid.length)
                expected = torch.from_numpy(np.tile(store.grid.mask.astype(np.uint8), (n, 1)))
                assert torch.equal(unpacked, expected)


@pytest.mark.parametrize("length", [1, 7, 8, 13, 1021])
def test_unpack_mask_is_numpys_unpackbits(length):
    rng = np.random.default_rng(length)
    mask = (rng.random((5, length)) < 0.3).astype(np.uint8)
    packed = schema.packed_mask_rows(schema.encode_mask(mask, version=1))
    assert np.array_equal(packed, np.packbits(mask, axis=1))
    unpacked = unpack_mask(torch.from_numpy(packed), length)
    assert unpacked.dtype == torch.uint8 and np.array_equal(unpacked.numpy(), mask)
    assert np.array_equal(schema.packed_mask_rows(schema.encode_mask(mask, version=2)), packed)


def test_analysis_reader_gives_the_same_rows_for_both_formats(both_formats):
    columns = ["id", "object", "flux", "mask", "rv"]
    seen = {}
    for version, uri in both_formats.items():
        rows = {}
        for batch in read_store(open_store(uri), columns).iter_batches(batch_format="numpy"):
            for k, spectrum_id in enumerate(batch["id"]):
                rows[str(spectrum_id)] = (
                    batch["flux"][k].tobytes(),
                    batch["mask"][k].tobytes(),
                    float(batch["rv"][k]),
                    str(batch["object"][k]),
                )
        seen[version] = rows
    assert seen[1] == seen[2] and len(seen[2]) == 60


def test_an_old_store_json_without_format_version_is_format_1(tmp_path):
    uri = str(tmp_path / "old")
    write_toy_store(uri, n_objects=2, shards=1, format_version=1)
    descriptor_uri = storage.join(uri, STORE_FILE)
    descriptor = json.loads(storage.read_text(descriptor_uri))
    descriptor.pop("format_version")
    descriptor["schema_version"] = "1"  # what stores written before format 2 carry
    storage.atomic_write_text(descriptor_uri, json.dumps(descriptor))
    store = open_store(uri)
    assert store.format_version == 1
    assert schema.shard_format(store.schema) == 1
    assert len(plain_rows(uri)) == 6


def test_an_unknown_format_version_is_a_clear_error(tmp_path):
    uri = str(tmp_path / "future")
    open_or_create_store(uri, named_grid(TOY_GRID))
    descriptor_uri = storage.join(uri, STORE_FILE)
    descriptor = json.loads(storage.read_text(descriptor_uri))
    storage.atomic_write_text(descriptor_uri, json.dumps({**descriptor, "format_version": 7}))
    with pytest.raises(schema.FormatError, match=r"store\.json.*format 7"):
        open_store(uri)


def test_a_flux_column_beyond_2_to_the_31_elements_round_trips():
    """2**31 + 2 * 8192 float16 values in one Arrow array (4 GiB + 32 kB): np.zeros maps
    untouched pages lazily, and encode/decode are views, so only the rows written here
    cost memory. Row ``i`` starts at byte ``i * 2 L``, an int64 in Arrow and numpy."""
    length = 8192
    rows = 2**31 // length + 2
    flux = np.zeros((rows, length), np.float16)
    flux[0, 0], flux[-1, -1], flux[rows // 2, 7] = 1.5, -2.25, 3.0
    column = schema.encode_flux(flux)
    assert len(column) == rows and rows * length > 2**31
    decoded = schema.decode_flux(pa.chunked_array([column]))
    assert decoded.shape == (rows, length) and np.shares_memory(decoded, flux)
    assert (decoded[0, 0], decoded[rows // 2, 7], decoded[-1, -1]) == (1.5, 3.0, -2.25)
    tail = schema.decode_flux(column.slice(rows - 1))
    assert tail.shape == (1, length) and tail[0, -1] == -2.25 and tail[0, 0] == 0


def test_chunked_and_sliced_columns_decode_in_order():
    rng = np.random.default_rng(3)
    flux = rng.normal(1, 0.1, (7, 13)).astype(np.float16)
    mask = (rng.random((7, 13)) > 0.5).astype(np.uint8)
    for encode, decode, values in (
        (schema.encode_flux, schema.decode_flux, flux),
        (schema.encode_mask, lambda c: schema.decode_mask(c, 13), mask),
    ):
        column = encode(values)
        parts = pa.chunked_array([column.slice(0, 2), column.slice(2, 4), column.slice(6)])
        assert np.array_equal(decode(parts), values)
        assert np.array_equal(decode(column.slice(3, 2)), values[3:5])
