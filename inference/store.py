"""Append-only prediction store and the merge into `predictions.parquet`.

Layout under the output folder DIR:

    DIR/store/<run_key>/part-<i>-of-<k>.jsonl   one JSON record per line, appended per batch,
                                                flushed and fsync'd before the batch counts as done
    DIR/store/<run_key>/part-<i>-of-<k>.lock    flock held by the process writing that part
    DIR/runs/<run_key>/shard-<i>-of-<k>.json    manifest of the latest invocation of that shard
    DIR/runs/<run_key>/history.jsonl            one summary line per invocation
    DIR/predictions.parquet                     the merge: PREDICTION_SCHEMA, one row per sample id
    DIR/predictions.jsonl                       the same rows as JSON lines
    DIR/manifest.json                           the run manifest (written with the merge)

The run key hashes everything that can change an answer (inference/manifest.py: the dataset
version, backend, model fingerprint, adapter/prompt spec, sampling and engine settings), so a rerun
with the same settings finds its records and skips them, and a run with other settings (or on a
regenerated dataset) never mixes with them. A record is
    {"id", "prediction", "model", "error", "latency_s", "key", "t"}
with `error` null on success. Success records are final; error records are retried by the next
run. A run killed mid-write leaves at most one torn last line: readers skip lines that are not
complete JSON objects, and the next writer starts on a fresh line.

Merge: every part file of the run key (all shard indices and shard counts), per id the first
success record in (file name, line) order, else the last error record (prediction "" and the
error). Rows sorted by id. Written to a temporary file and renamed, under DIR/.merge.lock, so the
last shard to finish always writes a complete file. predictions.parquet carries the dataset version
in its Parquet key-value metadata (DATASET_VERSION_KEY), as the RunInference pipeline's files do.
"""
import contextlib
import fcntl
import glob
import json
import os
import time

import pyarrow as pa
import pyarrow.parquet as pq

from sarchat.transforms import decode
from sarchat.transforms.errors import OutputError
from sarchat.transforms.schema import PREDICTION_SCHEMA

PREDICTIONS_PARQUET = "predictions.parquet"
PREDICTIONS_JSONL = "predictions.jsonl"
MANIFEST = "manifest.json"
# Parquet key-value metadata of every predictions file: the dataset version it was made on.
DATASET_VERSION_KEY = "sarchat.dataset_version"


def prediction_schema(dataset_version):
    """PREDICTION_SCHEMA with the dataset version in its key-value metadata."""
    return PREDICTION_SCHEMA.with_metadata({DATASET_VERSION_KEY: str(dataset_version or "")})


def prediction_row(sample_id, prediction, model, error, latency_s):
    """One row of PREDICTION_SCHEMA: `error` None on success, else the error and prediction ""."""
    ok = error in (None, "")
    return {
        "id": sample_id,
        "prediction": prediction if ok else (prediction or ""),
        "model": model,
        "error": None if ok else str(error),
        "latency_s": None if latency_s is None else round(float(latency_s), 6),
    }


def store_dir(out_dir, run_key):
    return os.path.join(out_dir, "store", run_key)


def runs_dir(out_dir, run_key):
    return os.path.join(out_dir, "runs", run_key)


def part_name(shard_index, num_shards):
    return f"part-{shard_index:05d}-of-{num_shards:05d}"


def fsync_dir(path):
    with contextlib.suppress(OSError):  # a folder that cannot be opened or synced is left as it is
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_records(path):
    """Complete records of one part file; a torn or garbled line is skipped, never fatal."""
    records = []
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return records
    with fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                continue  # torn last line of a killed writer
            try:
                rec = json.loads(raw)
            except ValueError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("id"), str):
                records.append(rec)
    return records


def _files(folder, pattern):
    """The sorted paths in a folder matching a glob pattern ([] when the folder does not exist)."""
    return sorted(glob.glob(os.path.join(glob.escape(folder), pattern)))


def part_files(out_dir, run_key):
    return _files(store_dir(out_dir, run_key), "part-*.jsonl")


def scan(out_dir, run_key):
    """(done ids, failed ids -> last error) across all part files of the run key, by the merge's rule."""
    best = _best_records(out_dir, run_key)
    return {sid for sid, (ok, _) in best.items() if ok}, {sid: rec["error"] for sid, (ok, rec) in best.items() if not ok}


def _record_line(record) -> bytes:
    """One store line; a record whose text holds a lone surrogate is escaped first (the rare case
    pays for the walk over the record, the usual one is dumped and encoded once)."""
    try:
        return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        return _record_line(decode.escape_record(record))


class PartWriter:
    """Appends records to this shard's part file: one write, flush and fsync per batch.

    Holds an exclusive flock on the part's lock file, so two processes can never write the same
    part (a second one fails at once with a clear message instead of duplicating work).
    """

    def __init__(self, out_dir, run_key, shard_index, num_shards):
        folder = store_dir(out_dir, run_key)
        os.makedirs(folder, exist_ok=True)
        base = os.path.join(folder, part_name(shard_index, num_shards))
        self.path = base + ".jsonl"
        self._lock = open(base + ".lock", "a+")
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._lock.close()
            raise OutputError(f"another process is writing {self.path} (same run key and shard); "
                               "wait for it or stop it first") from exc
        existed = os.path.exists(self.path)
        self._fh = open(self.path, "a+b")  # every write appends, whatever was read
        if not existed:
            fsync_dir(folder)
        elif self._fh.seek(0, os.SEEK_END):  # if the last writer died mid-line, ours starts on a fresh line
            self._fh.seek(-1, os.SEEK_END)
            if self._fh.read(1) != b"\n":
                self._fh.write(b"\n")
                self._sync()

    def _sync(self):
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def append(self, records):
        if not records:
            return
        # a backend's text is stored whatever it holds: lone surrogates escaped (transforms/decode.py),
        # so one sample's answer never stops the batch or its reruns
        payload = b"".join(_record_line(r) for r in records)
        try:
            self._fh.write(payload)
            self._sync()
        except OSError as exc:  # a full disk or file size limit: one line naming the part file
            raise OutputError(f"cannot write {self.path}: {exc.strerror or exc} (disk full, file size limit or "
                              "read-only disk); what is stored is kept: free some space and rerun the same "
                              "command to resume") from exc

    def close(self):
        try:
            self._fh.close()
        finally:
            self._lock.close()  # which releases the flock


def make_record(sample_id, prediction, model, error, latency_s, run_key):
    """A store record: the prediction row plus the run key and the time."""
    return {**prediction_row(sample_id, prediction, model, error, latency_s), "key": run_key,
            "t": round(time.time(), 3)}


@contextlib.contextmanager
def _merge_lock(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, ".merge.lock"), "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # released when the file closes
        yield


def _atomic_write_bytes(path, data: bytes, sync_dir=True):
    """Write `path` through a temporary file, fsync'd, renamed over it; then the folder is fsync'd
    unless `sync_dir` is False (a caller renaming several files into one folder syncs it once)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    if sync_dir:
        fsync_dir(os.path.dirname(path) or ".")


def atomic_write_json(path, obj, sync_dir=True):
    text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    _atomic_write_bytes(path, text.encode("utf-8"), sync_dir)


def _best_records(out_dir, run_key):
    """{id: (succeeded, its record)}: the first success is final; else a later error replaces an earlier one."""
    best = {}
    for path in part_files(out_dir, run_key):
        for rec in read_records(path):
            if not best.get(rec["id"], (False,))[0]:
                best[rec["id"]] = (rec.get("error") in (None, ""), rec)
    return best


def merged_rows(out_dir, run_key):
    """One row per id (see module doc), sorted by id."""
    return [prediction_row(sid, rec.get("prediction"), rec.get("model"), None if ok else rec.get("error"),
                           rec.get("latency_s")) for sid, (ok, rec) in sorted(_best_records(out_dir, run_key).items())]


def merge(out_dir, run_key, manifest=None, dataset_version=None):
    """Write DIR/predictions.parquet (+ .jsonl, + manifest.json); returns (n rows, n errors)."""
    with _merge_lock(out_dir):
        rows = merged_rows(out_dir, run_key)
        buf = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pylist(rows, schema=prediction_schema(dataset_version)), buf)
        _atomic_write_bytes(os.path.join(out_dir, PREDICTIONS_PARQUET), buf.getvalue().to_pybytes(), sync_dir=False)
        jsonl = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        _atomic_write_bytes(os.path.join(out_dir, PREDICTIONS_JSONL), jsonl.encode("utf-8"), sync_dir=False)
        n_err = sum(1 for r in rows if r["error"] is not None)
        if manifest is not None:
            manifest = dict(manifest)
            manifest["predictions"] = {"parquet": PREDICTIONS_PARQUET, "jsonl": PREDICTIONS_JSONL,
                                       "rows": len(rows), "errors": n_err}
            manifest["shards"] = shard_manifests(out_dir, run_key)
            atomic_write_json(os.path.join(out_dir, MANIFEST), manifest, sync_dir=False)
        fsync_dir(out_dir)  # the renames above, made durable together
        return len(rows), n_err


def shard_manifests(out_dir, run_key):
    out = []
    for path in _files(runs_dir(out_dir, run_key), "shard-*.json"):
        try:
            with open(path, encoding="utf-8") as fh:
                m = json.load(fh)
        except (OSError, ValueError):
            continue
        out.append({k: m.get(k) for k in ("shard_index", "num_shards", "started_at", "finished_at", "status",
                                           "counts", "setup_s", "predict_s", "throughput_sps", "host")})
    return out


def run_keys(out_dir):
    return sorted(os.path.basename(os.path.dirname(path)) for path in _files(os.path.join(out_dir, "store"), "*/"))
