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


class SampleColumns:
    """Per-sample results gathered column by column, then one Arrow table of SAMPLE_SCHEMA."""

    def __init__(self):
        self.cols = {name: [] for name in SAMPLE_SCHEMA.names}

    def add(self, row, model, pred, result, category, size):
        c = self.cols
        parsed = result["parsed"] or {}
        task = row["task"]
        c["id"].append(row["id"])
        c["task"].append(task)
        c["subset"].append(row.get("subset"))
        c["model"].append(model)
        c["status"].append(result["status"])
        c["error"].append(pred.get("error") if pred else None)
        c["latency_s"].append(pred.get("latency_s") if pred else None)
        c["category"].append(category)
        c["size"].append(size)
        c["pred_count"].append(parsed.get("count"))
        c["pred_boxes"].append(parsed.get("boxes") or [])
        c["pred_box_categories"].append(parsed.get("box_categories"))
        c["pred_labels"].append(pred_labels(task, parsed))
        c["ious"].append(result["ious"])
        scores = result["scores"]
        c["columns"].append(list(scores))
        c["tp"].append([v[0] for v in scores.values()])
        c["fp"].append([v[1] for v in scores.values()])
        c["fn"].append([v[2] for v in scores.values()])

    def __len__(self):
        return len(self.cols["id"])

    def row(self, i):
        return {k: v[i] for k, v in self.cols.items()}

    def to_table(self):
        return pa.table({name: pa.array(self.cols[name], type=SAMPLE_SCHEMA.field(name).type)
                         for name in SAMPLE_SCHEMA.names}, schema=SAMPLE_SCHEMA)


def sample_record(row, model, pred, result):
    """One row of SAMPLE_SCHEMA as a dict."""
    sc = SampleColumns()
    sc.add(row, model, pred, result, M.sample_category(row), M.sample_size(row))
    return sc.row(0)
