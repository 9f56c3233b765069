"""Tables as Parquet files read and written in parts, so memory does not grow with them.

Code on big tables reads its input in record batches or a few columns at a time and write
its outputs batch by batch; :func:`write_rows` writes chosen rows in a chosen order (a
shuffled split) with an external shuffle: one pass deals the rows into buckets of output
positions, then each bucket is ordered in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

#: Rows per batch read or written: a few tens of MB for a typical security table.
BATCH_ROWS = 200_000
#: Rows per bucket of an external shuffle: each is sorted in memory on its own.
_BUCKET_ROWS = 1_000_000


def table_rows(path: Path) -> int:
    """Rows in a Parquet file, from its footer."""
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def table_columns(path: Path) -> list[str]:
    """The column names of a Parquet table (pandas' index columns left out)."""
    import pyarrow.parquet as pq

    names = pq.ParquetFile(path).schema_arrow.names
    return [n for n in names if not n.startswith("__index_level_")]


def parquet_batches(path: Path, rows: int = BATCH_ROWS) -> Iterator[pd.DataFrame]:
    """The table in a Parquet file, batch by batch, with the dtypes a whole read gives."""
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
        yield batch.to_pandas()


def parquet_columns(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    """Some columns of the table in a Parquet file (the rest is never read)."""
    import pyarrow.parquet as pq

    frame: pd.DataFrame = pq.read_table(path, columns=list(columns)).to_pandas()
    return frame


class ParquetSink:
    """Writes a table to a Parquet file batch by batch, every batch with the first's types.

    :meth:`column` reads one column back once the sink is closed.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None

    def write(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._writer is None:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            self._writer = pq.ParquetWriter(self.path, table.schema, compression="zstd")
        else:
            table = pa.Table.from_pandas(frame, schema=self._writer.schema, preserve_index=False)
        self._writer.write_table(table)
        self.rows += len(frame)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def write_rows(
    source: Path,
    positions: np.ndarray,
    target: Path,
    scratch: Path,
    progress: Callable[[str], None] = lambda _m: None,
) -> None:
    """Write rows ``positions`` of ``source`` (in that order) to ``target``.

    Equal to ``read(source).iloc[positions]``, written in parts: rows are dealt by their
    output position into buckets of at most ``_BUCKET_ROWS`` (Arrow files in ``scratch``),
    then each bucket is ordered and appended. Memory: one batch plus one bucket.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.ipc as ipc
    import pyarrow.parquet as pq

    n_source = table_rows(source)
    slot = np.full(n_source, -1, dtype=np.int64)  # output position of each source row
    slot[positions] = np.arange(len(positions))
    n_buckets = max(1, -(-len(positions) // _BUCKET_ROWS))
    file = pq.ParquetFile(source)
    schema = file.schema_arrow
    buckets = [scratch / f"bucket-{i}.arrow" for i in range(n_buckets)]
    writers = [ipc.new_file(str(b), schema.append(pa.field("_slot", pa.int64()))) for b in buckets]
    start = 0
    for batch in file.iter_batches(batch_size=BATCH_ROWS):
        where = slot[start : start + batch.num_rows]
        start += batch.num_rows
        chosen = np.flatnonzero(where >= 0)
        if not len(chosen):
            continue
        part = batch.take(pa.array(chosen)).append_column("_slot", pa.array(where[chosen]))
        bucket_of = where[chosen] // _BUCKET_ROWS
        for b in np.unique(bucket_of):
            writers[b].write_batch(part.filter(pa.array(bucket_of == b)))
    for writer in writers:
        writer.close()
    with pq.ParquetWriter(target, schema, compression="zstd") as out:
        for i, bucket in enumerate(buckets):
            with pa.memory_map(str(bucket)) as source_file:
                table = ipc.open_file(source_file).read_all()
            order = np.argsort(table.column("_slot").to_numpy())
            out.write_table(table.drop_columns(["_slot"]).take(pa.array(order)))
            bucket.unlink()
            if n_buckets > 1:
                progress(f"wrote {min((i + 1) * _BUCKET_ROWS, len(positions)):,} rows")
