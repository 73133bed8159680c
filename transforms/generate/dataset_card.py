"""The Hugging Face dataset card (OUT/README.md) of a generated dataset, from its manifest. Pure.

`load_dataset(OUT)` reads the card's `configs:` block: the default config is the Parquet rows of
every split (all columns of SPEC section 4, ids and ground truth included). Without a card,
`datasets` would guess and pick the swift JSONL files, losing the ids and the ground truth. The
ms-swift files get no config of their own: `datasets` uses one loader for every config of a folder
(huggingface/datasets#6447), so a JSONL config beside the Parquet one fails to load; the card gives
the one-line `load_dataset("json", ...)` call for them instead. The files are listed one by one from the
manifest (not globbed), so a stray file in the folder is never part of the dataset.
"""
import json

from sarchat.transforms.schema import DIALOGUE_SCHEMA
from sarchat.transforms.tasks import TASKS

CARD_FILE = "README.md"
# The card's last line. A README.md ending with it was written by generate and is replaced on a
# rerun; any other README.md in the output folder is the user's, and generate refuses the folder
# rather than overwrite it (transforms/generate/lifecycle.py).
CARD_MARK = "<!-- written by sarchat generate from manifest.json; replaced on every run -->"

# What each column holds (SPEC section 4), for the card's schema table.
COLUMN_NOTES = {
    "id": "stable id: hash of split, image id, task, subset, unit and variant",
    "split": "train or test",
    "task": "classify, describe, count, grounding, identify or refer",
    "subset": "single / multi for grounding, identify and refer; null otherwise",
    "image_path": "image path relative to the source dataset's root (see 'Images')",
    "image_id": "COCO image id in the source annotations",
    "width": "image width in pixels", "height": "image height in pixels",
    "question": "the user turn without the image tag",
    "answer": "the reference answer",
    "messages": "chat turns (user text starts with `<image>\\n`)",
    "template_id": "template bank entry the question was drawn from (versioned)",
    "gt_boxes": "truth boxes, [x1, y1, x2, y2] absolute pixels",
    "gt_categories": "truth categories, one per box",
    "gt_cells": "3x3 grid cell of each box (e.g. 'top left')",
    "gt_sizes": "size word of each box", "gt_shapes": "shape word of each box (identify)",
    "gt_relations": "grounding relations 'cat1|relation|cat2|direction'",
    "gt_count": "number of instances (count)",
}


def _yaml_str(s) -> str:
    return json.dumps(str(s))  # a JSON string is a valid YAML scalar


def _config_block(name, files_by_split, default=False):
    lines = [f"- config_name: {name}"]
    if default:
        lines.append("  default: true")
    lines.append("  data_files:")
    for split, paths in files_by_split.items():
        lines.append(f"  - split: {split}")
        lines.append("    path:")
        lines += [f"    - {_yaml_str(p)}" for p in paths]
    return lines


def _files(manifest, folder, suffix):
    """{split: [relative paths]} of the manifest's files under folder/<split>/ ending in suffix."""
    out = {}
    for entry in manifest.get("files", []):
        path = entry.get("path", "")
        parts = path.split("/")
        if len(parts) == 3 and parts[0] == folder and path.endswith(suffix):
            out.setdefault(parts[1], []).append(path)
    return {split: sorted(paths) for split, paths in sorted(out.items(), key=lambda kv: (kv[0] != "train", kv[0]))}


def render_card(manifest: dict) -> str:
    """README.md text: YAML front matter with `configs:`, then what the dataset is and how to use it."""
    parquet = _files(manifest, "parquet", ".parquet")
    swift = _files(manifest, "swift", ".jsonl")
    front = ["---", "configs:"]
    if parquet:
        front += _config_block("default", parquet, default=True)
    front += ["task_categories:", "- visual-question-answering", "- object-detection",
              "language:", "- en", "tags:", "- sar", "- remote-sensing", "- sarchat", "---", ""]

    counts = manifest.get("counts", {})
    config = manifest.get("config", {})
    body = ["# SARChat-style SAR image-text dialogues", "",
            "Made by the SARChat-Bench toolkit's `sarchat generate` from COCO-format SAR detections: the "
            "six tasks of SARChat-Bench (classification, fine-grained description, instance counting, "
            "spatial grounding, cross-modal identification, referring), one row per dialogue.", "",
            "```python", "from datasets import load_dataset",
            "ds = load_dataset(\"path/to/this/folder\")            # Parquet rows, every column",
            "```", ""]
    if swift:
        body += ["The ms-swift fine-tuning files (`{\"messages\", \"images\"}` rows, one file per task):", "",
                 "```python",
                 "swift = load_dataset(\"json\", data_files={"
                 + ", ".join(f"\"{split}\": \"swift/{split}/*.jsonl\"" for split in swift) + "})",
                 "```", ""]
    body += [
            "## Counts", "", "| split | images | boxes | dialogues | " + " | ".join(TASKS) + " |",
            "| --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in TASKS) + " |"]
    for split, c in counts.items():
        by_task = c.get("by_task", {})
        cells = [str(sum(by_task.get(t, {}).values())) for t in TASKS]
        body.append(f"| {split} | {c.get('images', 0)} | {c.get('boxes', 0)} | {c.get('dialogues', 0)} | "
                    + " | ".join(cells) + " |")
    body += ["", "## Columns", "", "| column | type | what it holds |", "| --- | --- | --- |"]
    for field in DIALOGUE_SCHEMA:
        body.append(f"| `{field.name}` | `{field.type}` | {COLUMN_NOTES.get(field.name, '')} |")
    body += ["", "## Images", "",
             "Rows carry `image_path`, relative to the source dataset's root; the images themselves are not "
             "copied here. Join it with the root the dataset was generated from"
             + (f" (recorded as `{config.get('image_root')}`)" if config.get("image_root") else "") + ":", "",
             "```python", "import os", "from datasets import Image, load_dataset",
             "ds = load_dataset(\"path/to/this/folder\", split=\"test\")",
             "ds = ds.map(lambda r: {\"image\": os.path.join(IMAGE_ROOT, r[\"image_path\"])})"
             ".cast_column(\"image\", Image())", "```", "",
             "The ms-swift files already hold full image paths (the generation's `--image-root`).", "",
             "## Provenance", "",
             f"- dataset version: `{manifest.get('dataset_version') or manifest.get('config_hash', '')}`",
             f"- generator: `{manifest.get('generator', '')} {manifest.get('version', '')}` (how each version "
             "builds the dialogues: the toolkit's docs/rules.md)",
             f"- generator configuration hash: `{manifest.get('config_hash', '')}`",
             f"- seed: `{config.get('seed', '')}`, identify variants per box: `{config.get('identify_variants', '')}`"]
    for name, fp in sorted((manifest.get("inputs") or {}).items()):
        body.append(f"- input `{name}`: `{json.dumps(fp, sort_keys=True)}`")
    body += ["", "`manifest.json` beside this card lists every file with its size and row count; tools of the "
             "toolkit read only the files it lists.", "",
             "## License", "",
             "The images and boxes come from the source detection dataset (for SARChat, SARDet-100K and the "
             "datasets it merges); their licenses and terms of use apply to everything here. The questions "
             "and answers are generated from those annotations by templates.", "", CARD_MARK, ""]
    return "\n".join(front + body)


def is_generated_card(data: bytes) -> bool:
    """A README.md that generate wrote (its last line is CARD_MARK)."""
    return data.rstrip().endswith(CARD_MARK.encode("utf-8"))
