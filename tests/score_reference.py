"""The scorer's per-sample reference, for the tests only: a samples row and a samples_<task>.jsonl
line built one sample at a time from metrics.score_sample's result, which the columnar scorer
(sarchat.transforms.score.score_columns) must equal, and the report's choice of shown samples over
a list of ids."""
import json
import math

from sarchat.transforms.score import metrics as M
from sarchat.transforms.score.sample_choice import choose_from_candidates, smallest_candidates
from sarchat.transforms.score.score_columns import pred_labels


def sample_record(row, model, pred, result):
    """One row of SAMPLE_SCHEMA as a dict, from a test row, its prediction row and metrics.score_sample's
    result: the per-sample reference of the columnar scorer's rows (score_columns.ModelTask.sample_table)."""
    parsed, scores = result["parsed"] or {}, result["scores"]
    return {"id": row["id"], "task": row["task"], "subset": row.get("subset"), "model": model,
            "status": result["status"], "error": pred.get("error") if pred else None,
            "latency_s": pred.get("latency_s") if pred else None, "category": M.sample_category(row),
            "size": M.sample_size(row), "pred_count": parsed.get("count"), "pred_boxes": parsed.get("boxes") or [],
            "pred_box_categories": parsed.get("box_categories"), "pred_labels": pred_labels(row["task"], parsed),
            "ious": result["ious"], "columns": list(scores), "tp": [v[0] for v in scores.values()],
            "fp": [v[1] for v in scores.values()], "fn": [v[2] for v in scores.values()]}


def _finite(x):
    return None if isinstance(x, float) and not math.isfinite(x) else x


def sample_line_record(row, record, pred):
    """One jsonl object from the test row (question, answer), the sample record of sample_record and
    the prediction row (its raw text)."""
    return {
        "id": record["id"],
        "task": record["task"],
        "subset": record["subset"],
        "model": record["model"],
        "question": row.get("question"),
        "reference": row.get("answer"),
        "response": pred.get("prediction") if pred else None,
        "status": record["status"],
        "error": record["error"],
        "latency_s": _finite(record["latency_s"]),
        "category": record["category"],
        "size": record["size"],
        "parsed": {
            "count": record["pred_count"],
            "boxes": record["pred_boxes"],
            "box_categories": record["pred_box_categories"],
            "labels": record["pred_labels"],
        },
        "ious": record["ious"],
        "scores": {c: {"tp": tp, "fp": fp, "fn": fn}
                   for c, tp, fp, fn in zip(record["columns"], record["tp"], record["fp"], record["fn"])},
    }


# one shared encoder writes json.dumps(record, ensure_ascii=False, allow_nan=False)'s text at half
# its cost (a record is a tree: no cycle to check)
_LINE_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, check_circular=False)


def sample_line(row, record, pred):
    """The record as one line of JSON (no NaN: a non-finite latency is null)."""
    return _LINE_ENCODER.encode(sample_line_record(row, record, pred)) + "\n"


def choose_samples(ids_tasks_subsets, per_task):
    """The report's choice (sample_choice) over [(id, task, subset)] directly."""
    return choose_from_candidates(smallest_candidates(ids_tasks_subsets, per_task), per_task)
