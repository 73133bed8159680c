"""What an exported lmms-eval task folder calls at run time (`sarchat export lmms-eval`). Pure code.

lmms-eval (EvolvingLMMs-Lab/lmms-eval) loads a task from a YAML file whose `!function utils.NAME`
entries name functions of the utils.py beside it; the utils.py that sarchat.transforms.score.
lmms_eval_export writes is a few lines binding this module's functions to the folder's constants
(the adapter it was exported for, the image root). So lmms-eval scores with this toolkit's own
parsers and metrics (sarchat.transforms.score.parsing, metrics), never a second implementation.

One lmms-eval task per Table 3 task/subset (`sarchat_count`, `sarchat_grounding_single`, ...) and a
group `sarchat_bench` over all of them:

- `process_results(doc, [response])` scores one sample with metrics.score_sample and returns, for
  every metric of the task, the same small record (id, task, subset, status, TP/FP/FN per column,
  category, size). lmms-eval logs these beside the response in its samples_<task>.jsonl.
- A task's metrics are the Table 3 columns of its samples (`count.iou25`, `refer.single.iou50`,
  ...; dotted ids as in metrics.json) plus `<task>.score`, `overall` and `overall_macro` (the same
  figures over this task's samples only). Each is aggregated by metrics.build_metrics over the
  task's records, rounded as metrics.json is, so a column of one subset (`grounding.single`)
  equals `sarchat score`'s. `grounding.abstract_position` of a subset task covers that subset only.
- The group's metrics are every metrics.json column, the six task scores (`<task>.score`),
  `overall` and `overall_macro`. lmms-eval hands a group aggregation only the tasks' final figures,
  which cannot give Eq. 3 sums over several tasks; so every task aggregation also keeps its records
  here (`_RECORDS`, by task and subset, replaced on each evaluation) and the group aggregations
  compute metrics.build_metrics over the records of all the tasks: the numbers of `sarchat score`'s
  metrics.json on the same responses (bootstrap interval aside). lmms-eval aggregates every task
  before any group, in one process (rank 0), which is what this relies on.
- lmms-eval applies a group aggregation to every metric whose name CONTAINS the configured name
  ("classify" also matches "classify.score"); GROUP_METRICS is ordered so that a name comes before
  every longer name containing it, and the later (right) one wins.
"""

from sarchat.transforms import dataset_files
from sarchat.transforms.adapters import get_adapter
from sarchat.transforms.score import metrics as M
from sarchat.transforms.tasks import COLUMNS, SPECS, TABLE3_TASK_ORDER, TASK_COLUMNS, TASKS

GROUP = "sarchat_bench"
TASK_PREFIX = "sarchat_"
OVERALL = ("overall", "overall_macro")


def subtasks():
    """(task, subset or None) per lmms-eval task, in the paper's Table 3 order."""
    return [(t, s) for t in TABLE3_TASK_ORDER for s in (SPECS[t].subsets or (None,))]


def subtask_name(task, subset):
    return f"{TASK_PREFIX}{task}" + (f"_{subset}" if subset else "")


def subtask_columns(task, subset):
    """The Table 3 columns a task/subset's samples count in (`refer.single.iou25`, ...)."""
    subsets = SPECS[task].subsets
    parts = {c: c.split(".")[1] if "." in c else None for c in TASK_COLUMNS[task]}
    return [c for c, part in parts.items() if subset is None or part not in subsets or part == subset]


def subtask_metrics(task, subset):
    """The metric names of one lmms-eval task: its columns, its task score, overall, overall_macro."""
    return subtask_columns(task, subset) + [f"{task}.score", *OVERALL]


def _contained_first(names):
    """`names` ordered so that each comes before every other name that contains it (stable)."""
    out = []
    for name in names:
        # insert before the first name already placed that contains it
        at = next((i for i, other in enumerate(out) if name in other), len(out))
        out.insert(at, name)
    return out


GROUP_METRICS = _contained_first([c for c in COLUMNS] + [f"{t}.score" for t in TABLE3_TASK_ORDER]
                                 + list(OVERALL))


def identifier(metric):
    """A Python name for a metric's hook functions: 'refer.single.iou25' -> 'refer_single_iou25'."""
    return metric.replace(".", "_")


# ---- documents, prompt and image -----------------------------------------------------------------

def in_subtask(doc, task, subset):
    """Whether a test row belongs to a task/subset, by the scorer's own rule (metrics.sample_columns)."""
    if doc.get("task") != task:
        return False
    if subset is None:
        return True
    return any(c.startswith(f"{task}.{subset}") for c in M.sample_columns(doc))


def docs_of(task, subset):
    """A `process_docs` for one task: the Hugging Face dataset's rows of that task/subset."""
    def process_docs(dataset):
        return dataset.filter(lambda doc: in_subtask(doc, task, subset))

    process_docs.__name__ = f"process_docs_{identifier(subtask_name(task, subset))}"
    return process_docs


def _kwargs_adapter(kwargs, exported):
    """The adapter named by lmms_eval_specific_kwargs (lmms-eval resolves it per model, with a
    'default'), which must be the one the folder was exported for: its box format reads the answers."""
    kwargs = kwargs or {}
    name = kwargs.get("adapter") or (kwargs.get("default") or {}).get("adapter") or exported
    hint = kwargs.get("format_hint", (kwargs.get("default") or {}).get("format_hint", True))
    if get_adapter(name).name != get_adapter(exported).name:
        raise ValueError(f"lmms_eval_specific_kwargs names adapter {name!r}, but this task folder was exported for "
                         f"{exported!r} (its answers are read in that box format): export again with --adapter {name}")
    return get_adapter(exported), bool(hint)


def doc_to_text(doc, lmms_eval_specific_kwargs, exported_adapter):
    """The user text `sarchat infer` sends: the question with its boxes in the model's format, plus
    the adapter's box-format sentence on box tasks (adapters.Adapter.user_text)."""
    adapter, hint = _kwargs_adapter(lmms_eval_specific_kwargs, exported_adapter)
    return adapter.user_text(doc, use_hint=hint)


def doc_to_target(doc):
    return doc.get("answer") or ""


def doc_to_visual(doc, image_root, adapter_name):
    """[the test image as an RGB PIL image], padded right/bottom as the adapter asks (Qwen2.5-VL:
    to multiples of 28, so the model's pixels are the image's). A missing image is an error naming it."""
    from PIL import Image

    path, why = dataset_files.image_file(image_root, doc["image_path"])  # the one image-path rule
    if why is not None:
        raise FileNotFoundError(f"sample {doc.get('id')}: {why}")
    try:
        with Image.open(path) as img:
            image = img.convert("RGB")
    except OSError as exc:
        raise FileNotFoundError(f"sample {doc.get('id')}: cannot read its image {path}: {exc}") from None
    m = get_adapter(adapter_name).pad_to_multiple
    if m and m > 1:
        w, h = image.size
        pw, ph = -(-w // m) * m, -(-h // m) * m
        if (pw, ph) != (w, h):
            canvas = Image.new("RGB", (pw, ph), 0)
            canvas.paste(image, (0, 0))
            image = canvas
    return [image]


# ---- scoring -------------------------------------------------------------------------------------

def response_text(results):
    """The one response lmms-eval hands process_results (it has stripped it already)."""
    if not results:
        return ""
    first = results[0]
    if isinstance(first, (list, tuple)):
        first = first[0] if first else ""
    return "" if first is None else str(first)


def sample_record(doc, response, adapter_name):
    """One sample scored by metrics.score_sample: what every aggregation needs, JSON-ready."""
    result = M.score_sample(doc, response, get_adapter(adapter_name).box_format)
    return {"id": str(doc["id"]), "task": doc["task"], "subset": doc.get("subset"), "status": result["status"],
            "scores": {c: [int(v) for v in tpfpfn] for c, tpfpfn in result["scores"].items()},
            "category": M.sample_category(doc), "size": M.sample_size(doc)}


def process_results(doc, results, adapter_name):
    """{metric: the sample's record} for every metric of the sample's lmms-eval task."""
    record = sample_record(doc, response_text(results), adapter_name)
    subset = next((s for s in (SPECS[doc["task"]].subsets or ()) if in_subtask(doc, doc["task"], s)), None)
    return {m: record for m in subtask_metrics(doc["task"], subset)}


def _arrays(records):
    """{task: metrics.TaskArrays} from sample records."""
    by_task = {}
    for r in records:
        result = {"status": r["status"], "scores": {c: tuple(v) for c, v in r["scores"].items()}}
        by_task.setdefault(r["task"], []).append((r["id"], result, r.get("category"), r.get("size")))
    return {t: M.arrays_from_results(t, rows) for t, rows in by_task.items()}


def metrics_of(records):
    """metrics.build_metrics over sample records (no bootstrap): metrics.json's figures."""
    return M.build_metrics(None, _arrays(records), n_boot=0)


def metric_value(metrics_doc, metric):
    """One named figure of a build_metrics document (None when it is null)."""
    if metric in metrics_doc["columns"]:
        return metrics_doc["columns"][metric]
    if metric.endswith(".score") and metric[: -len(".score")] in TASKS:
        return metrics_doc["tasks"][metric[: -len(".score")]]
    if metric in OVERALL:
        return metrics_doc[metric]
    raise KeyError(f"unknown SARChat-Bench metric {metric!r}")


# records of every task aggregated in this process, by (task, subset): what the group aggregations read
_RECORDS = {}


def subtask_aggregator(metric):
    """A task's aggregation for one metric: its records -> the figure (and the records are kept)."""
    def aggregate(records):
        records = [r for r in records if isinstance(r, dict)]
        for key in {(r["task"], r.get("subset")) for r in records}:
            _RECORDS[key] = [r for r in records if (r["task"], r.get("subset")) == key]
        return metric_value(metrics_of(records), metric)

    aggregate.__name__ = f"aggregate_{identifier(metric)}"
    return aggregate


def group_aggregator(metric):
    """The group's aggregation for one metric: the tasks' figures are ignored, the records of every
    task aggregated in this evaluation give it (see the module docstring)."""
    def aggregate(values=None, sizes=None, weight_by_size=False):
        records = [r for key in sorted(_RECORDS, key=str) for r in _RECORDS[key]]
        return metric_value(metrics_of(records), metric)

    aggregate.__name__ = f"group_{identifier(metric)}"
    return aggregate
