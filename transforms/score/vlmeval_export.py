"""The VLMEvalKit custom dataset of `sarchat export vlmevalkit`. Pure code, no Beam.

    DIR/<NAME>.tsv          the test split as a VLMEvalKit image-VQA table: copy (or link) it into
                            VLMEvalKit's data root ($LMUData, default ~/LMUData) and
                            `run.py --data <NAME> --model <its model> --mode infer` runs any model
                            VLMEvalKit supports on it
    DIR/README.md           those steps for this export, and the `sarchat score` command after them
    DIR/sarchat_export.json what was exported from where, and the files written (the export
                            manifest of sarchat.transforms.score.lmms_eval_export, which also
                            writes and replaces the folder)

How VLMEvalKit reads the table (vlmeval/dataset/__init__.py `build_dataset`, image_base.py
`ImageBaseDataset`, image_vqa.py `CustomVQADataset`; ms-vlmeval 0.0.20 and the GitHub main of
2026-08 alike): a --data name no dataset class claims is looked up as `$LMUData/<NAME>.tsv`; a
table with a `question` column and no `A`/`B` columns is a CustomVQADataset. Its rows' `index` is
the sample id, `image` a base64-encoded image, or, when 64 characters or fewer, the `index` of
another row whose image it shares (VLMEvalKit's own way of storing an image once); `question` is
the text of the user turn (its default build_prompt sends [image, question]). Every other column
is carried into the prediction table VLMEvalKit writes, `<work-dir>/<model>/.../<model>_<NAME>.xlsx`
(or .tsv / .json with PRED_FORMAT=tsv / json), with the answer in `prediction`.

Here: `index` is our sample `id` (so `sarchat score` reads the prediction table as predictions of
those ids, sarchat.transforms.score.external_predictions); `question` is what `sarchat infer`
sends for the adapter (its box format in the question, its box-format sentence on box tasks:
Adapter.user_text); `image` the test image as the adapter sees it (RGB, padded as it asks:
lmms_eval_hooks.doc_to_visual), PNG; `answer` the reference; `task`, `subset`, `template_id` for
reading the table; `sarchat_dataset` the NAME, so the reader takes the model's name from
`<model>_<NAME>` (VLMEvalKit's tables have no model column). VLMEvalKit cannot score it (a custom
VQA dataset has no evaluate): `sarchat score` does.
"""
import base64
import csv
import io
import json
import os
import re

from sarchat.transforms import dataset_files
from sarchat.transforms.adapters import get_adapter
from sarchat.transforms.errors import InputError, UsageError
from sarchat.transforms.rendering import render
from sarchat.transforms.score import lmms_eval_hooks as H
from sarchat.transforms.score.dialogue_rows import iter_test_tables
from sarchat.transforms.score.lmms_eval_export import EXPORT_MANIFEST, local_inputs

EXPORT_FORMAT = 1
DEFAULT_NAME = "SARChatBench"
README = "README.md"
COLUMNS = ("index", "image", "question", "answer", "task", "subset", "template_id", "sarchat_dataset")
ROW_COLUMNS = ("id", "split", "task", "subset", "image_path", "width", "height", "question", "answer", "template_id")
IMAGE_REF_MAX = 64   # VLMEvalKit: an `image` cell this short is the index of the row holding the image
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


def check_name(name):
    """The dataset name (the TSV's file name, VLMEvalKit's --data); UsageError naming --name otherwise."""
    name = str(name or "")
    if not _NAME.match(name):
        raise UsageError(f"--name {name!r}: a VLMEvalKit dataset name is a letter, then letters, digits, '_', '.' "
                         "or '-' (64 at most); it names the .tsv file and run.py's --data")
    if "video" in name.lower():
        raise UsageError(f"--name {name!r}: VLMEvalKit takes a custom dataset whose name contains 'video' for a "
                         "video dataset; choose another name")
    return name


def tsv_name(name):
    return f"{name}.tsv"


def image_base64(row, image_root, adapter_name):
    """The row's image as the adapter sees it (RGB, padded as it asks), PNG, base64."""
    image = H.doc_to_visual(row, image_root, adapter_name)[0]
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def table_rows(rows, name, adapter_name, image_root, format_hint=True):
    """The TSV's rows (lists in COLUMNS order) for test rows (dicts of ROW_COLUMNS): each image
    encoded once, later rows of the same image naming the first row's index."""
    adapter = get_adapter(adapter_name)
    first_of = {}
    for row in rows:
        sid = str(row["id"])
        ref = first_of.get(row["image_path"])
        if ref is None:
            image = image_base64(row, image_root, adapter.name)
            if len(sid) <= IMAGE_REF_MAX:
                first_of[row["image_path"]] = sid
        else:
            image = ref
        yield [sid, image, adapter.user_text(row, use_hint=format_hint), row.get("answer") or "", row["task"],
               row.get("subset") or "", row.get("template_id") or "", name]


def read_test_rows(files, split):
    """The split's test rows (dicts of ROW_COLUMNS) of the Parquet shards, in file order."""
    for path in files:
        for table, _ in iter_test_tables(path, split, columns=ROW_COLUMNS):
            yield from table.to_pylist()


def write_tsv(path, rows):
    """The table at `path` (header, then rows): tab-separated, fields quoted where they hold a tab, a
    quote or a line break, as pandas.read_csv(sep='\\t') reads them."""
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(COLUMNS)
        writer.writerows(rows)


def render_readme(name, output, dataset, adapter):
    return render(__file__, "vlmeval_readme.md.j2", data=name, dataset=dataset, adapter=adapter,
                  tsv=os.path.join(output, tsv_name(name)), tsv_name=tsv_name(name))


def plan_export(dataset, output, split="test", adapter="sarchat", image_root=None, format_hint=True,
                name=DEFAULT_NAME):
    """{file name: text or writer} for `write_export` (lmms_eval_export); a SarchatError naming the
    flag or file before anything is written."""
    name = check_name(name)
    adapter = get_adapter(adapter).name   # InputError for an unknown adapter
    dataset, manifest, files, root = local_inputs(dataset, split, image_root, "VLMEvalKit")
    output = os.path.abspath(str(output))
    tsv = tsv_name(name)

    def write(path):
        """The TSV, written beside its name and renamed when complete (a failure leaves no table)."""
        partial = path + ".partial"
        try:
            write_tsv(partial, table_rows(read_test_rows(files, split), name, adapter, root, format_hint))
        except BaseException as exc:
            if os.path.exists(partial):
                os.remove(partial)
            if isinstance(exc, FileNotFoundError):   # an image the rows name is not under the image root
                raise InputError(f"{exc} (--image-root {root})") from None
            raise
        os.replace(partial, path)

    out = {tsv: write, README: render_readme(name, output, dataset, adapter)}
    rows = sum(t.num_rows for path in files for t, _ in iter_test_tables(path, split, columns=("id", "split")))
    out[EXPORT_MANIFEST] = json.dumps(
        {"format": EXPORT_FORMAT, "kind": "VLMEvalKit custom dataset", "name": name, "dataset": dataset,
         "dataset_version": dataset_files.dataset_version(manifest) or None, "split": split, "rows": rows,
         "adapter": adapter, "format_hint": bool(format_hint), "image_root": root, "data_files": files,
         "columns": list(COLUMNS), "files": sorted([tsv, README, EXPORT_MANIFEST])},
        indent=2, ensure_ascii=False) + "\n"
    return out
