"""A Ray Data source that reads a store's committed shards, one read task per shard.

Why not ``ray.data.read_parquet``: in Ray 2.60 every execution of a Parquet read starts a
``FooterReader`` actor and lists and sizes the files before its first block, about 5-10 s
on a 2-core machine (benchmarks/RESULTS.md), and a training run executes its dataset once
per epoch. The store already knows what that work finds out: which shards hold committed
rows and how many (the manifest), and their schema (``store.json``). So a read task here
opens its shard with pyarrow and yields one block per row group (~32 MiB, the sink's
``ROW_GROUP_BYTES``), with nothing to start first.

Shuffling reorders the shards, a new order for every execution of the dataset (every
epoch); with a seed the sequence of orders is the same in every run, as
``ray.data.FileShuffleConfig`` does it (the seed combined with Ray's execution index).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from specray import storage
from specray.data.store import SHARDS_DIR, Store

TEXT_BYTES_ESTIMATE = 32
"""In-memory bytes assumed per text cell, for Ray's size estimates only."""


class ShardSource(Datasource):
    """The ``columns`` of a store's committed shards (see the module docstring)."""

    def __init__(
        self, store: Store, columns: list[str], shuffle: bool = False, seed: int | None = None
    ) -> None:
        super().__init__()
        counts = Counter(entry.shard for entry in store.manifest if entry.ingested)
        uris = [store.path(SHARDS_DIR, name) for name in counts]
        self._filesystem = storage.arrow_filesystem(uris[0])[0] if uris else None
        self._shards = [
            (uri, storage.arrow_filesystem(uri)[1], rows)
            for uri, rows in zip(uris, counts.values(), strict=True)
        ]  # (URI, path on the filesystem, rows), resolved once, not every epoch
        self._columns = list(columns)
        self._row_bytes = sum(_cell_bytes(store.schema.field(name).type) for name in columns)
        self._shuffle, self._seed = shuffle, seed

    def get_name(self) -> str:
        return "StoreShards"

    def estimate_inmemory_data_size(self) -> int:
        return sum(rows for _, _, rows in self._shards) * self._row_bytes

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context=None
    ) -> list[ReadTask]:
        """One task per shard (``parallelism`` is Ray's suggestion; a shard is the unit)."""
        execution = getattr(data_context, "_execution_idx", 0) if data_context else 0
        shards = list(self._shards)
        if self._shuffle:
            seed = None if self._seed is None else hash((self._seed, execution)) % 2**32
            random.Random(seed).shuffle(shards)
        return [
            ReadTask(
                _reader(self._filesystem, path, self._columns),
                BlockMetadata(
                    num_rows=rows,
                    size_bytes=rows * self._row_bytes,
                    input_files=[uri],
                    exec_stats=None,
                ),
                per_task_row_limit=per_task_row_limit,
            )
            for uri, path, rows in shards
        ]


def _reader(filesystem, path: str, columns: list[str]):
    """The read function of one shard: its row groups, one Arrow table each."""

    def read() -> Iterator[pa.Table]:
        with filesystem.open_input_file(path) as handle:
            shard = pq.ParquetFile(handle)
            for group in range(shard.num_row_groups):
                yield shard.read_row_group(group, columns=columns)

    return read


def _cell_bytes(kind: pa.DataType) -> int:
    """Bytes of one value of ``kind`` in memory (an estimate for text)."""
    if pa.types.is_string(kind):
        return TEXT_BYTES_ESTIMATE
    try:
        return kind.byte_width
    except ValueError:  # a tensor extension type (store format 1)
        return kind.storage_type.list_size * kind.value_type.bit_width // 8
