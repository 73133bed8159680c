"""Id buckets of the scorer's join and the Arrow IPC bytes that carry rows between its stages.

A bucket is crc32(id) mod num_buckets, so the join, the per-sample files and every output are the
same whatever the runner, worker count or bundle order. Batches travel as Arrow IPC stream bytes:
one cheap bytes element per (batch, bucket) instead of thousands of nested dicts for Beam's coders
to walk. Pure code, no Beam.
"""
import zlib

import numpy as np
import pyarrow as pa

# `--num-buckets auto`: one bucket per this many prediction rows, at most MAX_AUTO_BUCKETS. A bucket
# costs tens of milliseconds whatever its size (a samples file per model, a join, a scoring pass per
# task), so a 2,000-row run scores in one bucket instead of 64 nearly empty ones; a paper-size test
# split of two models still gets enough buckets to spread over workers.
ROWS_PER_AUTO_BUCKET = 8192
MAX_AUTO_BUCKETS = 64


def auto_bucket_count(prediction_rows):
    """The number of id buckets `--num-buckets auto` picks for this many prediction rows in all."""
    return max(1, min(MAX_AUTO_BUCKETS, -(-int(prediction_rows) // ROWS_PER_AUTO_BUCKET)))


def bucket_of(sample_id, num_buckets):
    return zlib.crc32(str(sample_id).encode("utf-8")) % num_buckets


def to_ipc(table, compression=None):
    """A pyarrow Table or RecordBatch -> Arrow IPC stream bytes (compression: None, "zstd", "lz4")."""
    sink = pa.BufferOutputStream()
    # one thread: a worker runs one bundle per core already
    options = pa.ipc.IpcWriteOptions(compression=compression, use_threads=False) if compression else None
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write(table)
    return sink.getvalue().to_pybytes()


def ipc_table(data):
    """Arrow IPC stream bytes -> pyarrow Table."""
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


def bucket_parts(table, ids, num_buckets):
    """[(bucket, ipc bytes of the table's rows in that bucket)], buckets ascending."""
    if not len(ids):
        return []
    buckets = np.fromiter((bucket_of(sid, num_buckets) for sid in ids), dtype=np.int64, count=len(ids))
    order = np.argsort(buckets, kind="stable")
    sorted_buckets = buckets[order]
    cuts = np.nonzero(np.diff(sorted_buckets))[0] + 1
    return [(int(sorted_buckets[idx[0]]), to_ipc(table.take(pa.array(order[idx]))))
            for idx in np.split(np.arange(len(order)), cuts)]
