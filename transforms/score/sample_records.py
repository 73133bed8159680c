"""Per-sample results of the scorer: OUT/<model>/samples/*.parquet rows (SAMPLE_SCHEMA). Pure code.

One row per (model, test sample): its status, what the parser found, the IoUs and TP / FP / FN per
Table 3 column. The report's samples section marks answers from these same rows.
"""
import pyarrow as pa

from sarchat.transforms.score import metrics as M
from sarchat.transforms.tasks import BY_ID

SAMPLE_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("task", pa.string()),
    ("subset", pa.string()),
    ("model", pa.string()),
    ("status", pa.string()),          # ok | unparseable | missing | inference_error
    ("error", pa.string()),           # the prediction's own error field, if any
    ("latency_s", pa.float64()),
    ("category", pa.string()),        # the sample's category (count, identify, refer)
    ("size", pa.string()),            # the sample's 5-level size (identify)
    ("pred_count", pa.int32()),       # count: the stated number
    ("pred_boxes", pa.list_(pa.list_(pa.float64()))),  # pixel xyxy as parsed
    ("pred_box_categories", pa.list_(pa.string())),    # grounding: category of each parsed box
    ("pred_labels", pa.list_(pa.string())),  # classify categories, identify attr=value,
                                             # describe size|category|cell, grounding cat1|rel|cat2, refer cells
    ("ious", pa.list_(pa.float64())),  # per truth box: IoU with its matched prediction (0 unmatched)
    ("columns", pa.list_(pa.string())),  # the Table-3 columns the sample counts in, and per column:
    ("tp", pa.list_(pa.int32())),        # true positives
    ("fp", pa.list_(pa.int32())),        # false positives
    ("fn", pa.list_(pa.int32())),        # false negatives
])


def pred_labels(task, parsed):
    """What the `pred_labels` column holds: the task module's pred_labels of the parser's dict."""
    return BY_ID[task].pred_labels(parsed) if parsed else []


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
