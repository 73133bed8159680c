"""Id buckets of the scorer's join and the Arrow IPC bytes that carry rows between its stages.

A bucket is crc32(id) mod num_buckets, so the join, the per-sample files and every output are the
same whatever the runner, worker count or bundle order. Batches travel as Arrow IPC stream bytes:
one cheap bytes element per (batch, bucket) instead of thousands of nested dicts for Beam's coders
to walk. Pure code, no Beam.
"""
import zlib

import pyarrow as pa


def bucket_of(sample_id, num_buckets):
    return zlib.crc32(str(sample_id).encode("utf-8")) % num_buckets


def to_ipc(table):
    """A pyarrow Table or RecordBatch -> Arrow IPC stream bytes."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write(table)
    return sink.getvalue().to_pybytes()


def ipc_rows(data):
    """Arrow IPC stream bytes -> list of row dicts."""
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all().to_pylist()


def bucket_parts(table, ids, num_buckets):
    """[(bucket, ipc bytes of the table's rows in that bucket)], buckets ascending."""
    groups = {}
    for i, sid in enumerate(ids):
        groups.setdefault(bucket_of(sid, num_buckets), []).append(i)
    return [(b, to_ipc(table.take(pa.array(idx, type=pa.int64())))) for b, idx in sorted(groups.items())]
