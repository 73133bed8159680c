"""The lmms-eval task folder of `sarchat export lmms-eval`, rendered as text. Pure code, no Beam.

    DIR/_default_template_yaml   what every task shares: the local Parquet test split as data
                                 (`dataset_path: parquet`, absolute `data_files` from the dataset's
                                 manifest.json), the hooks, greedy generation settings, the adapter
                                 in `lmms_eval_specific_kwargs`; lmms-eval indexes only *.yaml
                                 files, so this one is never taken for a task of its own
    DIR/sarchat_<task>[_<subset>].yaml   one task per Table 3 task/subset: its rows, its metrics
    DIR/sarchat_bench.yaml       the group `sarchat_bench` over the nine tasks, metrics.json's figures
    DIR/utils.py                 binds sarchat.transforms.score.lmms_eval_hooks to this export's
                                 adapter and image root (the only code in the folder)
    DIR/sarchat_export.json      what was exported from where, and the files written (the export's
                                 manifest: written last, read by the next export into DIR to remove
                                 exactly those files first)

Each test row keeps its `id` as a column of the lmms-eval document, so lmms-eval's samples logs
carry it (`doc.id`) and `sarchat score` reads them back as predictions of those ids
(sarchat.transforms.score.external_predictions). The files are rendered from the lmms_*.j2
templates beside this module (JSON strings are YAML scalars), so that no YAML library is needed;
lmms-eval's `!function` tags are plain text there.
"""
import json
import os

from sarchat.transforms import dataset_files
from sarchat.transforms.adapters import get_adapter
from sarchat.transforms.errors import OutputError, UsageError
from sarchat.transforms.fileio import write_text
from sarchat.transforms.rendering import render
from sarchat.transforms.score import lmms_eval_hooks as H

TEMPLATE = "_default_template_yaml"
UTILS = "utils.py"
EXPORT_MANIFEST = "sarchat_export.json"
GROUP_FILE = f"{H.GROUP}.yaml"
EXPORT_FORMAT = 1
DEFAULT_MAX_NEW_TOKENS = 512   # `sarchat infer --max-tokens`'s default


def _q(value):
    """A YAML scalar for a string (a JSON string is a valid YAML double-quoted scalar)."""
    return json.dumps(str(value), ensure_ascii=False)


def render_folder(data_files, split, adapter_name, image_root, format_hint=True,
                  max_new_tokens=DEFAULT_MAX_NEW_TOKENS, dataset=None, dataset_version=None):
    """{file name: text} of the whole task folder (the export manifest included, last), rendered
    from the lmms_*.j2 templates beside this module."""
    adapter = get_adapter(adapter_name).name   # InputError for an unknown adapter
    metrics = sorted({m for t, s in H.subtasks() for m in H.subtask_metrics(t, s)}, key=H.GROUP_METRICS.index)
    model = dict(H=H, q=_q, repr=repr, version=EXPORT_FORMAT, template=TEMPLATE, adapter=adapter)
    files = {TEMPLATE: render(__file__, "lmms_default_template.yaml.j2", data_files=data_files, split=split,
                              format_hint=format_hint, max_new_tokens=int(max_new_tokens),
                              dataset_version=dataset_version, **model),
             GROUP_FILE: render(__file__, "lmms_group.yaml.j2", **model),
             UTILS: render(__file__, "lmms_utils.py.j2", image_root=image_root, metrics=metrics, **model)}
    for t, s in H.subtasks():
        files[f"{H.subtask_name(t, s)}.yaml"] = render(__file__, "lmms_task.yaml.j2", task=t, subset=s, **model)
    manifest = {"format": EXPORT_FORMAT, "kind": "lmms-eval tasks", "group": H.GROUP,
                "tasks": [H.subtask_name(t, s) for t, s in H.subtasks()], "dataset": dataset,
                "dataset_version": dataset_version or None, "split": split, "adapter": adapter,
                "format_hint": bool(format_hint), "image_root": image_root, "max_new_tokens": int(max_new_tokens),
                "data_files": list(data_files), "files": sorted([*files, EXPORT_MANIFEST])}
    files[EXPORT_MANIFEST] = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    return files


# ---- planning and writing the folder ------------------------------------------------------------

def local_inputs(dataset, split="test", image_root=None, tool="lmms-eval"):
    """(absolute dataset folder, its manifest, the split's Parquet files, absolute image root) of a
    local generated dataset, for an export another tool reads; a SarchatError naming the flag or file
    otherwise. The data files are the split's Parquet shards exactly as the dataset's manifest.json
    lists them (dataset_files); the image root is --image-root or the manifest's input_root (as
    `sarchat score` finds it). `tool` reads local files, so both must be local."""
    dataset = str(dataset)
    if dataset_files.is_url(dataset):
        raise UsageError(f"--dataset {dataset}: {tool} reads local files; copy the dataset to a local folder first")
    if not os.path.isdir(dataset):
        raise UsageError(f"--dataset {dataset}: {dataset_files.not_a_folder(dataset)} (give a `sarchat generate` output folder)")
    manifest = dataset_files.read_manifest(dataset)
    files = dataset_files.required_split_parquet_files(dataset, split, manifest=manifest)
    root = dataset_files.image_root(dataset, manifest, image_root)
    if root is None:
        raise UsageError(f"--image-root: {dataset_files.join(dataset, dataset_files.MANIFEST)} records no input_root; "
                         "name the folder the test rows' image_path is relative to")
    if dataset_files.is_url(root):
        raise UsageError(f"--image-root {root}: {tool} reads local images; copy them to a local folder first")
    if not os.path.isdir(root):
        raise UsageError(f"--image-root {root}: {dataset_files.not_a_folder(root)} (the test rows' image_path is relative to it)")
    return os.path.abspath(dataset), manifest, [os.path.abspath(f) for f in files], os.path.abspath(root)


def plan_export(dataset, split="test", adapter="sarchat", image_root=None, format_hint=True,
                max_new_tokens=DEFAULT_MAX_NEW_TOKENS):
    """{file name: text} for a generated dataset folder; a SarchatError naming the flag or file otherwise
    (local_inputs: the split's Parquet files and the image root, absolute)."""
    dataset, manifest, files, root = local_inputs(dataset, split, image_root, "lmms-eval")
    return render_folder(files, split, adapter, root, format_hint, max_new_tokens, dataset,
                         dataset_files.dataset_version(manifest))


def _previous_files(output):
    """The file names a previous export into `output` wrote (its sarchat_export.json), else []."""
    path = os.path.join(output, EXPORT_MANIFEST)
    if not os.path.exists(path):
        return []
    try:
        with open(path, encoding="utf-8") as fh:
            names = json.load(fh).get("files")
    except (OSError, ValueError, AttributeError) as exc:
        raise OutputError(f"{path} is not an export manifest ({exc}); remove the folder or export elsewhere") from None
    if not isinstance(names, list) or not all(isinstance(n, str) and n and "/" not in n and "\\" not in n
                                              and n not in (".", "..") for n in names):
        raise OutputError(f"{path} is not an export manifest (its `files` are not plain file names)")
    return names


def own_older_export(output, present):
    """ownership.claim's test for a folder without its marker: the files an older export listed
    in its sarchat_export.json (None: not an export folder)."""
    if EXPORT_MANIFEST not in present:
        return None
    return [*_previous_files(output), EXPORT_MANIFEST]


def write_export(output, files, command="sarchat export lmms-eval", also_ours=()):
    """Write the folder: the previous export's files removed first (its manifest before them), this
    export's manifest last; a file this export would overwrite that no export of ours wrote is an
    OutputError naming it (no command overwrites a file it did not write). `also_ours`: files the
    ownership marker lists (a run killed or stopped by a full disk before its manifest)."""
    output = str(output)
    previous = sorted(set(_previous_files(output)) | {n for n in also_ours if "/" not in n})
    for name in sorted(files):
        path = os.path.join(output, name)
        if os.path.exists(path) and name not in previous:
            raise OutputError(f"{path} exists and was not written by `{command}`; export into an empty folder")
    for name in ([EXPORT_MANIFEST] if previous else []) + previous:  # the manifest first
        if os.path.exists(os.path.join(output, name)):
            os.remove(os.path.join(output, name))
    os.makedirs(output, exist_ok=True)
    for name in sorted(files):
        if name == EXPORT_MANIFEST:
            continue
        if callable(files[name]):
            files[name](os.path.join(output, name))
        else:
            write_text(os.path.join(output, name), files[name])
    write_text(os.path.join(output, EXPORT_MANIFEST), files[EXPORT_MANIFEST], "application/json")
    return sorted(files)
