"""Per-sample results readable on their own: OUT/<model dir>/samples_<task>.jsonl. Pure code, no Beam.

One JSON object a line per (model, test sample), sorted by id (lmms-eval's `samples_<task>.jsonl`
convention): the test row's question and reference answer beside the model's raw response, what
the parser found, the TP / FP / FN per Table 3 column and the IoUs, so that one sample reads
without joining the test Parquet, the predictions and the samples/*.parquet shards. The scorer
writes them (ScorePredictions, the lines assembled over columns by score_columns.ModelTask.lines,
which tests/test_score_columnar.py holds equal to the per-sample reference of
tests/score_reference.py); `sarchat score --explain ID` reads them.
"""
import json
import re


from sarchat.transforms.errors import InputError
from sarchat.transforms.fileio import join_path, read_bytes
from sarchat.transforms.rendering import render
from sarchat.transforms.score.prediction_files import match_paths

SAMPLE_LINES_RE = re.compile(r"samples_([A-Za-z0-9]+)\.jsonl$")


def sample_lines_name(task):
    return f"samples_{task}.jsonl"


def sample_line_files(output_dir):
    """Every OUT/<model dir>/samples_<task>.jsonl, sorted by path."""
    return [p for p in match_paths(join_path(output_dir, "*", "samples_*.jsonl")) if SAMPLE_LINES_RE.search(p)]


def stale_sample_line_files(output_dir, written):
    """samples_<task>.jsonl files under OUT that this run did not write (a model or task of an
    earlier run, or every one when this run wrote none)."""
    keep = {p.replace("\\", "/") for p in written}
    return [p for p in sample_line_files(output_dir) if p.replace("\\", "/") not in keep]


def find_sample(output_dir, sample_id):
    """[jsonl record] of `sample_id`, one per model that has it, sorted by model."""
    files = sample_line_files(output_dir)
    if not files:
        raise InputError(f"{output_dir}: no samples_<task>.jsonl files (not a `sarchat score` output folder, "
                         "or it was scored with --no-sample-files)")
    prefix = '{"id": ' + json.dumps(sample_id, ensure_ascii=False) + ","
    found = []
    for path in files:
        for line in read_bytes(path).decode("utf-8").splitlines():
            if line.startswith(prefix):
                found.append(json.loads(line))
    if not found:
        raise InputError(f"{output_dir}: no sample with id {sample_id!r} in {len(files)} samples_<task>.jsonl files")
    return sorted(found, key=lambda r: r["model"])


def _indent(text, pad="    "):
    return "\n".join(pad + line for line in (text if text is not None else "(none)").splitlines() or [""])


def _parsed_text(parsed):
    parts = []
    if parsed.get("count") is not None:
        parts.append(f"count {parsed['count']}")
    boxes = parsed.get("boxes") or []
    if boxes:
        cats = parsed.get("box_categories") or [None] * len(boxes)
        parts.append("boxes " + ", ".join(
            ("%s " % c if c else "") + "[" + ", ".join("%g" % v for v in b) + "]" for b, c in zip(boxes, cats)))
    if parsed.get("labels"):
        parts.append("labels " + ", ".join(parsed["labels"]))
    return "; ".join(parts) or "(nothing)"


def explain_text(records):
    """A readable page of one sample's records (one per model): explain.txt.j2 beside this module."""
    return render(__file__, "explain.txt.j2", records=records, indent=_indent, parsed_text=_parsed_text)
