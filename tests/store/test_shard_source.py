"""The Ray Data source of a store: committed shards only, one block per row group, seeded
shard orders that change every epoch and repeat from run to run."""

import pyarrow.parquet as pq
import pytest

from specray.data.reader import read_store
from specray.data.shard_source import ShardSource
from specray.data.store import SHARDS_DIR, open_store
from tests.helpers import write_toy_store

pytestmark = pytest.mark.usefixtures("ray_session")

SHARDS = 5


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """40 objects x 2 epochs in 5 shards, each rewritten in row groups of 7 rows, and an
    uncommitted shard file (as a killed ingest leaves) that no reader may see."""
    uri = str(tmp_path_factory.mktemp("shards") / "store")
    write_toy_store(uri, n_objects=40, epochs=2, shards=SHARDS)
    opened = open_store(uri)
    for shard in opened.shard_uris():
        pq.write_table(pq.read_table(shard), shard, row_group_size=7)
    orphan = pq.read_table(opened.shard_uris()[0])
    pq.write_table(orphan, opened.path(SHARDS_DIR, "part-orphan-00000.parquet"))
    return open_store(uri)


def shard_order(dataset) -> list[str]:
    """The first id of each shard in the order one pass delivers them (16 rows a shard)."""
    ids = [i for batch in dataset.iter_batches(batch_size=None) for i in batch["id"]]
    assert len(ids) == len(set(ids)) == 80
    return [ids[k] for k in range(0, 80, 16)]


def test_every_committed_row_once_in_blocks_of_one_row_group(store):
    tasks = ShardSource(store, ["id", "teff"]).get_read_tasks(parallelism=1)
    assert [task.metadata.input_files[0] for task in tasks] == store.shard_uris()
    assert [task.metadata.num_rows for task in tasks] == [16] * SHARDS
    blocks = [list(task()) for task in tasks]
    assert [[b.num_rows for b in shard] for shard in blocks] == [[7, 7, 2]] * SHARDS
    assert all(b.column_names == ["id", "teff"] for shard in blocks for b in shard)

    ids = [i for batch in read_store(store, ["id"]).iter_batches() for i in batch["id"]]
    expected = [e.id for e in store.manifest if e.ingested]
    assert sorted(ids) == sorted(expected) and len(ids) == 80  # the orphan is not read
    assert read_store(store, ["id"]).limit(9).count() == 9


def test_a_seed_repeats_the_sequence_of_shard_orders_and_each_epoch_reorders(store):
    def orders(seed):
        dataset = read_store(store, ["id"], shuffle=True, seed=seed)
        dataset.context.execution_options.preserve_order = True
        return [shard_order(dataset) for _ in range(3)]  # three epochs

    first = orders(seed=11)
    assert orders(seed=11) == first
    assert len({tuple(order) for order in first}) > 1  # not the same order every epoch
    assert orders(seed=12) != first
    plain = read_store(store, ["id"])
    plain.context.execution_options.preserve_order = True
    assert shard_order(plain) == _first_ids(store)  # unshuffled: the order of the store


def _first_ids(store) -> list[str]:
    """The first id of each committed shard, in the store's shard order."""
    firsts = {}
    for entry in store.manifest:
        if entry.ingested:
            firsts.setdefault(entry.shard, entry.id)
    return list(firsts.values())
