"""Names and documents of the scorer's output folder, apart from the reports. Pure code, no Beam.

    OUT/<model dir>/metrics.json, breakdown.json, rejected.jsonl, samples/samples-BBBBB-of-NNNNN.parquet
    OUT/leaderboard.json, leaderboard.md, report.md, report.html
    OUT/rejected.jsonl    malformed lines of files holding several models (no model to count them for)
"""
import collections
import json
import re
import zlib

from sarchat.transforms.fileio import delete, join_path
from sarchat.transforms.score.prediction_files import match_paths

REJECT_FIELDS = ("model", "id", "reason", "file", "row")


def model_dirname(model):
    """A file-system-safe folder name for a model (a short hash keeps distinct names distinct)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("._") or "model"
    if safe != model:
        safe += "-" + format(zlib.crc32(model.encode("utf-8")), "08x")
    return safe


def samples_file_name(bucket, num_buckets):
    return "samples-%05d-of-%05d.parquet" % (bucket, num_buckets)


def json_text(obj):
    return json.dumps(obj, indent=2, sort_keys=False) + "\n"


def rejects_jsonl(rejects):
    rejects = sorted(rejects, key=lambda r: (r["reason"], r.get("id") or "", r.get("file") or "", r.get("row") or 0))
    return "".join(json.dumps({k: r.get(k) for k in REJECT_FIELDS}) + "\n" for r in rejects)


def reject_counts(rejects):
    return dict(sorted(collections.Counter(r["reason"] for r in rejects).items()))


def leaderboard(entries):
    """Models sorted by overall score (best first, ties by name)."""
    rows = []
    for e in entries:
        m = e["metrics"]
        rows.append({
            "model": m["model"], "dir": e.get("dir"), "box_format": e.get("box_format"),
            "overall": m["overall"], "overall_ci95": m["overall_ci95"],
            "overall_macro": m["overall_macro"], "tasks": m["tasks"],
            "parse_failures": sum(v["count"] for v in m["parse_failures"].values()),
            "inference_errors": sum(v["count"] for v in (m.get("inference_errors") or {}).values()),
            "missing_predictions": m["missing_predictions"],
            "rejected": sum(e.get("breakdown", {}).get("rejected", {}).values()),
        })
    rows.sort(key=lambda r: (-(r["overall"] if r["overall"] is not None else -1.0), r["model"]))
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    return rows


def remove_stale_samples(output_dir, num_buckets):
    """Delete per-sample files of an earlier run with another bucket count in the same output
    folder (only files named like ours: OUT/*/samples/samples-NNNNN-of-MMMMM.parquet)."""
    found = match_paths(join_path(output_dir, "*", "samples", "samples-*-of-*.parquet"))
    stale = [p for p in found if re.search(r"samples-\d{5}-of-\d{5}\.parquet$", p)
             and not p.endswith("-of-%05d.parquet" % num_buckets)]
    delete(stale)
