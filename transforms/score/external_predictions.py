"""Predictions written by other evaluation tools, read as docs/rules.md section 11 prediction rows. Pure code.

sarchat.transforms.score.prediction_files reads every prediction file; for these two kinds it hands
the records to the functions here, which turn them into rows {id, prediction, model}:

- lmms-eval `--log_samples` logs, `OUT/<model>/<date>_samples_<task>.jsonl`: one JSON object per
  line with `doc_id`, `filtered_resps`, the metrics' per-sample values, ... (recognised by its
  first record having `doc_id` and `filtered_resps`, `resps` or `doc`). lmms-eval's `doc_id` is the
  document's position in its task, not a sample id. A task folder from `sarchat export lmms-eval`
  keeps our `id` column in every document, and its process_results puts it in every metric's
  per-sample record (sarchat.transforms.score.lmms_eval_hooks), which lmms-eval logs: the sample
  id is that record's `id` (or `doc.id`, where an lmms-eval version logs the document; 0.7 does not). The prediction is `filtered_resps` (the response after lmms-eval's
  filters, which is what process_results scored; its first item where it is a list), stripped as lmms-eval strips it before
  process_results. The model is the folder lmms-eval named after it (`<model>`), and the source is
  the run, `<folder>/<date>`: all the task logs of one run are one source, two runs of a model two.
  A record without the id (a log of some other task) or without `filtered_resps` is an error
  naming the file and line.
- VLMEvalKit prediction tables (`.tsv`, `.csv`; `.xlsx` when openpyxl is installed, else an error
  saying so): a header row with `index` and `prediction` columns (others are ignored; `model` is
  used when present). `index` is our sample id (VLMEvalKit tables of SARChat-Bench must be built
  with it); integer-looking values from a spreadsheet are written without a decimal point. The model
  is the `model` column, else the file name without its suffix, less `_<dataset>` where the table
  has the `sarchat_dataset` column that `sarchat export vlmevalkit` writes (VLMEvalKit names its
  prediction table `<model>_<dataset>.xlsx`, .tsv or .json by PRED_FORMAT; its columns are the
  dataset's, less `image`, plus `prediction`); the source is the file. VLMEvalKit's .json tables
  (PRED_FORMAT=json: one JSON array of row objects, `df.to_dict('records')`) are read the same way
  (is_json_table: a .json file whose text starts with `[`).

Neither tool records the dataset version, so such predictions have none: `sarchat score` accepts
them and its report says the version is unknown (docs/rules.md section 11).
"""
import io
import json
import os
import posixpath
import re

from sarchat.transforms import decode
from sarchat.transforms.fileio import open_read
from sarchat.transforms.errors import InputError
from sarchat.transforms.score.lmms_eval_hooks import GROUP_METRICS

TABLE_SUFFIXES = (".tsv", ".csv", ".xlsx")
DATASET_COLUMN = "sarchat_dataset"   # the dataset name `sarchat export vlmevalkit` writes in every row
_DATE_PREFIX = re.compile(r"^(.*?)_samples_[^/]*\.jsonl(?:\.gz)?$")
_BOM = "\ufeff"


# ---- lmms-eval ------------------------------------------------------------------------------------

def is_lmms_eval_record(record) -> bool:
    """A record of an lmms-eval samples log (the first one decides for the file)."""
    return isinstance(record, dict) and "doc_id" in record and any(k in record for k in ("filtered_resps", "resps", "doc"))


def _sample_id(record):
    """Our sample id in an lmms-eval record: `doc.id`, else the `id` of a SARChat metric's record."""
    doc = record.get("doc")
    if isinstance(doc, dict) and doc.get("id") not in (None, ""):
        return doc["id"]
    for metric in GROUP_METRICS:
        value = record.get(metric)
        if isinstance(value, dict) and value.get("id") not in (None, ""):
            return value["id"]
    return None


def _split(path):
    return posixpath.split(path) if "://" in path else os.path.split(path)


def lmms_eval_model(path) -> str:
    """The model of an lmms-eval log: the folder lmms-eval named after it (`OUT/<model>/...`)."""
    folder, _ = _split(path)
    name = _split(folder.rstrip("/"))[1] if folder else ""
    return name or "lmms-eval"


def lmms_eval_source(path) -> str:
    """The run an lmms-eval log belongs to: `<folder>/<date>` of `<folder>/<date>_samples_<task>.jsonl`."""
    folder, name = _split(path)
    m = _DATE_PREFIX.match(name)
    run = m.group(1) if m else name
    return f"{folder}/{run}" if folder else run


def lmms_eval_row(record, path, index):
    """A prediction row {id, prediction, model} of one samples-log record; None passes through (a
    line that is not a JSON object, counted as malformed by the caller)."""
    if record is None:
        return None
    where = f"{path}: line {index + 1}"
    if not is_lmms_eval_record(record):
        raise InputError(f"{where} is not an lmms-eval sample record (no doc_id and filtered_resps), unlike the file's first line")
    sid = _sample_id(record)
    if sid is None or (isinstance(sid, str) and not sid.strip()):
        raise InputError(f"{where} (doc_id {record.get('doc_id')}) carries no SARChat-Bench sample id: not a log "
                         "of the tasks `sarchat export lmms-eval` writes (their metrics log the id of each sample)")
    # lmms-eval 0.7 logs filtered_resps as the one response; older versions as a list per request
    text = record.get("filtered_resps", record.get("resps"))
    if not isinstance(text, (str, list)):
        raise InputError(f"{where} (doc.id {sid}) has no filtered_resps (a log written with --log_samples has)")
    while isinstance(text, list):
        text = text[0] if text else ""
    text = "" if text is None else str(text)
    return {"id": str(sid), "prediction": text.strip(), "model": lmms_eval_model(path)}


def lmms_eval_rows(path, records):
    """The (index, row) stream of a JSONL file: prediction rows as they are, or, when its first
    record is an lmms-eval sample record, every record turned into a prediction row."""
    lmms_eval = None  # the first record decides
    for index, record in records:
        if lmms_eval is None and record is not None:
            lmms_eval = is_lmms_eval_record(record)
        yield index, (lmms_eval_row(record, path, index) if lmms_eval else record)


# ---- VLMEvalKit -------------------------------------------------------------------------------------

def is_table(path) -> bool:
    return str(path).lower().endswith(TABLE_SUFFIXES)


def _read(path) -> bytes:
    decode.check_is_file(path, "prediction table")
    with open_read(path) as fh:
        return fh.read()


def _cell(value):
    """A table cell as text: None for an empty one, integers from spreadsheets without '.0'."""
    if value is None:
        return None
    if isinstance(value, float):
        if value != value:  # NaN
            return None
        if value.is_integer():
            return str(int(value))
    text = str(value)
    return text if text.strip() else None


def _table_records(path):
    """(header, [row values...]) of a .tsv / .csv / .xlsx table."""
    low = path.lower()
    if low.endswith(".xlsx"):
        try:
            import openpyxl
        except ImportError:
            raise InputError(f"{path}: reading .xlsx tables needs openpyxl (pip install openpyxl); "
                             "or save the table as .tsv or .csv") from None
        try:
            book = openpyxl.load_workbook(io.BytesIO(_read(path)), read_only=True, data_only=True)
        except Exception as exc:  # openpyxl raises several kinds for a file that is not a workbook
            raise InputError(f"cannot read {path} as an .xlsx workbook: {type(exc).__name__}: {exc}") from None
        rows = list(book.worksheets[0].iter_rows(values_only=True)) if book.worksheets else []
        header = [("" if v is None else str(v)).strip() for v in (rows[0] if rows else [])]
        return header, [list(r) for r in rows[1:]]
    try:
        text = _read(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text ({exc})") from None
    text = text[1:] if text.startswith(_BOM) else text
    rows = decode.table_rows(text, "\t" if low.endswith(".tsv") else ",", path)
    header = [h.strip() for h in (rows[0] if rows else [])]
    return header, rows[1:]


def is_json_table(path) -> bool:
    """A VLMEvalKit .json prediction table: a .json file whose text (after a byte order mark and
    white space) starts with `[` (JSONL files, also named .json, start with `{`)."""
    if not str(path).lower().endswith(".json"):
        return False
    with open_read(path) as fh:
        head = fh.read(4096)
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"[")


def _json_table_records(path):
    """(header, [row values...]) of a JSON array of row objects (the union of their keys)."""
    try:
        records = json.loads(_read(path).decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path} is not a JSON array of rows ({exc})") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise InputError(f"{path} is not a JSON array of row objects (VLMEvalKit's PRED_FORMAT=json table)")
    header = []
    for r in records:
        header += [k for k in r if k not in header]
    return header, [[r.get(k) for k in header] for r in records]


def table_rows(path):
    """(row index, prediction row) per data row of a VLMEvalKit table; InputError naming the file
    when it has no `index` or `prediction` column. A row without an index keeps id None (rejected
    as `missing_id` by the scorer, like any prediction row without an id)."""
    header, rows = _json_table_records(path) if is_json_table(path) else _table_records(path)
    col = _table_columns(path, header)
    stem = _table_stem(path)
    for i, values in enumerate(rows):
        if not any(_cell(v) is not None for v in values):
            continue  # a blank line
        cells = {name: _cell(values[j]) for name, j in col.items() if j < len(values)}
        model = cells.get("model") or table_model(stem, cells.get(DATASET_COLUMN)) or "model"
        yield i, {"id": cells.get("index"), "prediction": cells.get("prediction") or "", "model": model}


def _table_columns(path, header):
    """{column name: position} of the columns a table's rows are read from; InputError when it lacks
    `index` or `prediction`."""
    lacking = [c for c in ("index", "prediction") if c not in header]
    if lacking:
        raise InputError(f"{path} has no {' or '.join(repr(c) for c in lacking)} column (VLMEvalKit prediction "
                         f"tables need index and prediction; found {', '.join(h for h in header if h) or 'none'})")
    return {name: header.index(name) for name in ("index", "prediction", "model", DATASET_COLUMN) if name in header}


def _table_stem(path):
    """The table's file name less its table suffix (`<model>_<dataset>` for VLMEvalKit's files)."""
    stem = _split(path)[1]
    for suffix in TABLE_SUFFIXES + (".json",):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    return stem


def table_model(stem, dataset_name):
    """The model of a VLMEvalKit table named `<model>_<dataset>` (VLMEvalKit's prediction file name):
    the stem less `_<dataset>` when the table's `sarchat_dataset` column names the dataset (tables of
    `sarchat export vlmevalkit` datasets have it), else the whole stem."""
    if dataset_name and stem.endswith(f"_{dataset_name}") and len(stem) > len(dataset_name) + 1:
        return stem[: -len(dataset_name) - 1]
    return stem
