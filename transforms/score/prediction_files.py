"""The one reader of prediction files (docs/rules.md section 11). Pure code, no Beam transforms.

A prediction row is `id`, `prediction` (raw model text), `model`, and optional `error`,
`latency_s`, in Parquet or JSONL (optionally .gz; a UTF-8 byte order mark is accepted). Used twice
with the same functions: at launch, `scan_prediction_file` checks every file (columns, rows, model
names, the dataset version it records) so that a bad input is one clear line before any worker
starts; in the job, `iter_prediction_tables` feeds the scorer.

- `--predictions DIR` means DIR's predictions.parquet (the file `sarchat infer` writes), or the
  part files its run manifest names (`predictions.parquet_glob`, the RunInference layout). A file
  named manifest.json is never read as predictions.
- A line that is not a JSON object (or not UTF-8) is a malformed row: counted and written to
  rejected.jsonl, never a model of its own.
- A file without rows, a Parquet file without an `id` or `prediction` column, a JSONL file none of
  whose rows has one, and the same model in two prediction sources are errors naming the file(s).
- lmms-eval samples logs (`*_samples_*.jsonl`) and VLMEvalKit tables (`index`, `prediction`;
  .tsv, .csv, .xlsx, and .json holding one JSON array) are read as prediction rows too (sarchat.transforms.score.external_predictions);
  they record no dataset version.
- Rows without a `model` take the file's name (ad-hoc files). A source is a run folder (all the
  files of one `sarchat infer` or RunInference run, however they are named on the command line)
  or else one file.
"""
import os
import posixpath
from dataclasses import dataclass
from typing import Optional, Tuple

import pyarrow as pa
import pyarrow.compute as pc

from sarchat.transforms import decode, ownership
from sarchat.transforms.errors import InputError, UsageError
from sarchat.transforms.fileio import exists, join_path, match, open_parquet, open_read, read_bytes
from sarchat.transforms.score import external_predictions

PREDICTION_COLUMNS = ("id", "prediction", "model", "error", "latency_s")
REQUIRED_COLUMNS = ("id", "prediction")
# .jsonl also holds lmms-eval samples logs, the tables are VLMEvalKit's (external_predictions)
PREDICTION_SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz", ".json") + external_predictions.TABLE_SUFFIXES
PREDICTIONS_PARQUET = "predictions.parquet"
RUN_MANIFEST = "manifest.json"
VERSION_KEY = b"sarchat.dataset_version"   # Parquet key-value metadata written by `sarchat infer`
MALFORMED = "malformed_row"
# the Arrow types (pyarrow.types.is_<kind>) of the columns a Parquet batch is converted from column by column
_COLUMN_KINDS = {"id": ("string", "integer"), "prediction": ("string", "null"), "model": ("string", "null"),
                 "error": ("string", "null"), "latency_s": ("floating", "integer", "null")}
_BOM = b"\xef\xbb\xbf"

# Batches travel between stages as Arrow IPC bytes (sarchat.transforms.score.id_buckets); the row
# dicts below are what they hold, plus the file and row they came from (for rejects and ties).
PREDICTION_WIRE_SCHEMA = pa.schema([("id", pa.string()), ("prediction", pa.string()), ("model", pa.string()),
                                    ("error", pa.string()), ("latency_s", pa.float64()),
                                    ("_file", pa.string()), ("_row", pa.int64())])


@dataclass(frozen=True)
class PredictionFile:
    """What the launch scan learnt about one prediction file."""

    path: str
    source: str                      # the run folder or the file itself (a model may have one source)
    models: Tuple[str, ...]          # distinct model names of its rows, sorted
    rows: int                        # rows read (malformed ones not included)
    malformed: int                   # lines that are not a JSON object
    dataset_version: Optional[str]   # recorded in the file or its run manifest; None: not recorded
    run_manifest: Optional[dict] = None


def _is_glob(pattern):
    return any(ch in pattern for ch in "*?[")


def _is_dir(path):
    if "://" in path:
        return not path.endswith(PREDICTION_SUFFIXES) and exists(join_path(path, RUN_MANIFEST), quiet=True)
    return os.path.isdir(path)


def match_paths(pattern):
    """The paths a glob matches, sorted ([] when none)."""
    return sorted(match(pattern, quiet=True))


def _is_prediction_name(path):
    return path.endswith(PREDICTION_SUFFIXES) and posixpath.basename(path) != RUN_MANIFEST


def read_run_manifest(folder):
    """The run manifest.json `sarchat infer` writes in `folder` (a dict naming its `model`), or None."""
    path = join_path(folder, RUN_MANIFEST) if folder else RUN_MANIFEST
    try:
        if not exists(path, quiet=True):
            return None
        raw = read_bytes(path)
        m = decode.loads(raw[len(_BOM):] if raw.startswith(_BOM) else raw)
    except (OSError, ValueError):  # decode.Problem is a ValueError
        return None
    return m if isinstance(m, dict) and isinstance(m.get("model"), str) else None


def _folder_files(folder):
    direct = join_path(folder, PREDICTIONS_PARQUET)
    if exists(direct, quiet=True):
        return [direct]
    manifest = read_run_manifest(folder) or {}
    glob = (manifest.get("predictions") or {}).get("parquet_glob") if isinstance(manifest.get("predictions"), dict) else None
    if isinstance(glob, str) and glob and ".." not in glob.split("/"):
        parts = [p for p in match_paths(join_path(folder, glob)) if p.endswith(".parquet")]
        if parts:
            return parts
    raise InputError(f"--predictions {folder}: the folder has no {PREDICTIONS_PARQUET} (give a `sarchat infer` "
                     "run folder or the prediction files themselves)")


def _source_of(path):
    """A file's source: the run folder it belongs to (the folder, or for the RunInference layout
    the parent of its predictions/ folder, holding a run manifest), an lmms-eval log's run, else
    the file itself."""
    if path.endswith((".jsonl", ".jsonl.gz")) and _is_lmms_eval_log(path):
        return external_predictions.lmms_eval_source(path)
    folder = posixpath.dirname(path) if "://" in path else os.path.dirname(path)
    if folder and read_run_manifest(folder) is not None:
        return folder
    parent = posixpath.dirname(folder) if "://" in folder else os.path.dirname(folder)
    if folder and posixpath.basename(folder.rstrip("/")) == "predictions" and read_run_manifest(parent) is not None:
        return parent
    return path


def expand_prediction_inputs(patterns):
    """[(file, source)] for the --predictions values: a file, a glob (its prediction files) or a
    run folder (its predictions.parquet). UsageError naming the value that matches nothing,
    InputError for a folder without predictions."""
    out = []
    for pattern in patterns:
        pattern = str(pattern)
        if _is_glob(pattern):
            found = []
            for path in match_paths(pattern):
                if _is_dir(path):
                    found += [(f, path) for f in _folder_files(path)]
                elif _is_prediction_name(path):
                    found.append((path, _source_of(path)))
            if not found:
                raise UsageError(f"--predictions {pattern}: no prediction files match "
                                 f"({', '.join(PREDICTION_SUFFIXES)})")
            out += found
        elif _is_dir(pattern):
            out += [(f, pattern) for f in _folder_files(pattern)]
        elif exists(pattern, quiet=True):
            if posixpath.basename(pattern) == RUN_MANIFEST:
                raise InputError(f"--predictions {pattern}: a run manifest, not predictions "
                                 f"(give its folder or its {PREDICTIONS_PARQUET})")
            out.append((pattern, _source_of(pattern)))
        else:
            raise UsageError(f"--predictions {pattern}: no such file or folder")
    unique = {}
    for path, source in out:
        unique.setdefault(path, source)
    return list(unique.items())


def model_of(row, path):
    """The row's `model`, else the file's name without its suffix (ad-hoc files without the column)."""
    m = row.get("model")
    if isinstance(m, str) and m.strip():
        return m.strip()
    stem = posixpath.basename(path)
    for suffix in (".gz", ".jsonl", ".json", ".parquet"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    return stem or "model"


def clean_prediction(row, path, index):
    """A row of PREDICTION_WIRE_SCHEMA: strings where strings belong, the file and row it came from."""
    out = {k: row.get(k) for k in PREDICTION_COLUMNS}
    out["model"] = model_of(row, path)
    pid = out["id"]
    out["id"] = None if pid is None else str(pid)
    for key in ("prediction", "error"):
        if out[key] is not None and not isinstance(out[key], str):
            out[key] = str(out[key])
    try:
        out["latency_s"] = None if out["latency_s"] is None else float(out["latency_s"])
    except (TypeError, ValueError):
        out["latency_s"] = None
    out["_file"], out["_row"] = path, index
    return out


def _jsonl_lines(path):
    """(row index, dict or None) per non-blank line; None for a line that is not a JSON object in
    UTF-8 or whose prediction is not text (transforms/decode.py: lone surrogates, nesting too deep,
    a list or object as the prediction). A `.gz` is decompressed to its end mark: one cut short or
    not gzip at all is an InputError naming it, never a shorter file."""
    decode.check_is_file(path, "prediction file")
    with open_read(path) as raw_file:
        f = decode.GzipLines(raw_file, path) if path.endswith(".gz") else raw_file
        index = 0
        while True:
            raw = f.readline()
            if not raw:
                return
            if index == 0 and raw.startswith(_BOM):
                raw = raw[len(_BOM):]
            if raw.strip():
                try:
                    row = decode.loads(raw)
                    if isinstance(row, dict) and "prediction" in row:
                        decode.prediction_text(row["prediction"])
                except decode.Problem:
                    row = None
                yield index, (row if isinstance(row, dict) else None)
            index += 1


def _is_lmms_eval_log(path):
    lines = _jsonl_lines(path)
    try:
        first = next((row for _, row in lines if row is not None), None)
    except OSError:
        return False
    finally:
        lines.close()
    return external_predictions.is_lmms_eval_record(first)


def _rows(path):
    """(row index, dict or None) per record of a non-Parquet prediction file: JSONL lines, lmms-eval
    samples records or VLMEvalKit table rows as prediction rows (external_predictions)."""
    if external_predictions.is_table(path) or external_predictions.is_json_table(path):
        return external_predictions.table_rows(path)
    return external_predictions.lmms_eval_rows(path, _jsonl_lines(path))


def _read_parquet(path, what):
    try:
        return open_parquet(path)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"cannot read {what} file {path}: {type(exc).__name__}: {exc}") from None


def _parquet_batches(path, batch_size):
    """(index of its first row, batch of the prediction columns) per batch of a Parquet file."""
    pf = _read_parquet(path, "predictions")
    names = set(pf.schema_arrow.names)
    index = 0
    for batch in pf.iter_batches(batch_size=batch_size, columns=[c for c in PREDICTION_COLUMNS if c in names]):
        yield index, batch
        index += batch.num_rows


def _clean_rows(batch, path, start):
    return [clean_prediction(r, path, start + i) for i, r in enumerate(batch.to_pylist())]


def iter_prediction_batches(path, batch_size=65536):
    """([clean rows], [malformed row indices]) per batch of a prediction file."""
    if path.endswith(".parquet"):
        for index, batch in _parquet_batches(path, batch_size):
            yield _clean_rows(batch, path, index), []
        return
    rows, malformed = [], []
    for index, row in _rows(path):
        if row is None:
            malformed.append(index)
        else:
            rows.append(clean_prediction(row, path, index))
        if len(rows) >= batch_size:
            yield rows, malformed
            rows, malformed = [], []
    if rows or malformed:
        yield rows, malformed


def _wire_columns(batch, path, start):
    """A Parquet batch of prediction rows as a PREDICTION_WIRE_SCHEMA table, column by column
    (clean_prediction's rules), or None when a column's type needs clean_prediction row by row."""
    n, names, string = batch.num_rows, batch.schema.names, pa.string()
    cols = {c: batch.column(names.index(c)) for c in PREDICTION_COLUMNS if c in names}
    if not all(any(getattr(pa.types, f"is_{kind}")(col.type) for kind in _COLUMN_KINDS[c]) for c, col in cols.items()):
        return None
    pid, text, model, error, latency = (cols.get(c) for c in PREDICTION_COLUMNS)
    if model is None:
        models = pa.array([model_of({}, path)] * n, string)
    else:
        enc = pc.dictionary_encode(model, null_encoding="encode")
        names_of = pa.array([model_of({"model": m}, path) for m in enc.dictionary.to_pylist()], string)
        models = names_of.take(enc.indices)

    def strings(c):
        return pa.nulls(n, string) if c is None else pc.cast(c, string)

    return pa.Table.from_arrays([
        strings(pid), strings(text), models, strings(error),
        pa.nulls(n, pa.float64()) if latency is None else pc.cast(latency, pa.float64()),
        pa.array([path] * n, string), pa.array(range(start, start + n), pa.int64())], schema=PREDICTION_WIRE_SCHEMA)


def iter_prediction_tables(path, batch_size=65536):
    """(PREDICTION_WIRE_SCHEMA table, [malformed row indices]) per batch of a prediction file: the
    rows of iter_prediction_batches, converted column by column where the file is Parquet."""
    ownership.pause_point("score-reading-predictions")  # tests stop the job here (Ctrl-C mid-pipeline)
    if path.endswith(".parquet"):
        for index, batch in _parquet_batches(path, batch_size):
            table = _wire_columns(batch, path, index)
            if table is None:
                table = pa.Table.from_pylist(_clean_rows(batch, path, index), schema=PREDICTION_WIRE_SCHEMA)
            yield table, []
        return
    for rows, bad in iter_prediction_batches(path, batch_size):
        yield pa.Table.from_pylist(rows, schema=PREDICTION_WIRE_SCHEMA), bad


def scan_prediction_file(path, source=None):
    """A PredictionFile for `path`; InputError naming the file when it cannot be scored at all."""
    source = source or _source_of(path)
    folder = source if source != path else posixpath.dirname(path)
    manifest = read_run_manifest(folder)
    if path.endswith(".parquet"):
        (models, rows, version), malformed = _scan_parquet(path), 0
    else:
        (models, rows, malformed), version = _scan_lines(path), None
    if not rows:
        extra = f" ({malformed} malformed line{'s' if malformed != 1 else ''})" if malformed else ""
        raise InputError(f"{path} holds no prediction rows{extra}")
    if version is None and manifest is not None and manifest.get("dataset_version"):
        version = str(manifest["dataset_version"])
    return PredictionFile(path, source, tuple(sorted(models)), rows, malformed, version, manifest)


def _scan_parquet(path):
    """(models, number of rows, dataset version) of a Parquet prediction file, from its metadata and
    `model` column; InputError when it lacks a required column."""
    pf = _read_parquet(path, "predictions")
    names = pf.schema_arrow.names
    lacking = [c for c in REQUIRED_COLUMNS if c not in names]
    if lacking:
        raise InputError(f"{path} has no {' or '.join(repr(c) for c in lacking)} column "
                         f"(prediction files need {', '.join(REQUIRED_COLUMNS)}; found {', '.join(names) or 'none'})")
    rows, models = pf.metadata.num_rows, set()
    if "model" in names:
        for batch in pf.iter_batches(columns=["model"]):
            models.update(model_of({"model": m}, path) for m in batch.column(0).to_pylist())
    elif rows:
        models.add(model_of({}, path))
    version = (pf.metadata.metadata or {}).get(VERSION_KEY)
    return models, rows, version.decode("utf-8", "replace") if version else None


def _scan_lines(path):
    """(models, number of rows, number of malformed lines) of a JSONL prediction file; InputError
    when no row has a required key."""
    models, rows, malformed, seen_keys = set(), 0, 0, set()
    for _, row in _rows(path):
        if row is None:
            malformed += 1
            continue
        rows += 1
        seen_keys.update(k for k in REQUIRED_COLUMNS if k in row)
        models.add(model_of(row, path))
    lacking = [c for c in REQUIRED_COLUMNS if c not in seen_keys]
    if rows and lacking:
        raise InputError(f"{path}: no row has {' or '.join(repr(c) for c in lacking)} "
                         f"(prediction rows need {', '.join(REQUIRED_COLUMNS)})")
    return models, rows, malformed


def check_model_sources(files):
    """InputError when one model's rows come from two sources (two runs or files): scoring one and
    dropping the other as duplicates would be silently wrong."""
    first = {}
    for f in files:
        for m in f.models:
            other = first.setdefault(m, f)
            if other.source != f.source:
                raise InputError(f"model {m!r} is in two prediction sources, {other.path} and {f.path}: give each "
                                 "run its own model name (the `model` column) or score them separately")


def model_of_malformed(file_info):
    """The model a malformed line of this file is counted against: the file's only model, else None
    (a file of several models: the line goes to the run-level rejected.jsonl)."""
    return file_info.models[0] if len(file_info.models) == 1 else None
