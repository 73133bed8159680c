"""`sarchat export lmms-eval`: the task folder, its hooks run the way lmms-eval runs them, and the
numbers they give equal `sarchat score`'s on the same responses (without lmms-eval itself;
tests/test_real_lmms.py runs the real one).

lmms-eval's side is imitated closely where it matters: the YAML is read with a `!function`
constructor that loads the named function from the utils.py beside the file, as lmms-eval's
import_function does (a fresh module per tag); the documents come from `datasets`' parquet builder
with the template's data_files; a task's metric aggregation gets the list of its per-sample values;
and a group aggregation is applied to every metric whose name CONTAINS the configured name, in the
configured order, as lmms-eval's consolidate_group_results does.
"""
import glob
import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

from sarchat.transforms.adapters import get_adapter
from sarchat.transforms.box_formats import get_box_format
from sarchat.transforms.score import lmms_eval_hooks as H
from sarchat.transforms.tasks import BOX_TASKS, COLUMNS, TASKS
from tests import cli_process
from tests.helpers import generated_dataset

yaml = pytest.importorskip("yaml")
datasets = pytest.importorskip("datasets")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def sarchat(*args):
    return cli_process.run_sarchat(args, env=_env(), timeout=600)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("export_lmms")
    return generated_dataset(root, images=30, seed="lmms", extra=("--splits", "test", "--formats", "parquet"))


def export(dataset, out, *extra):
    proc = sarchat("export", "lmms-eval", "--dataset", dataset, "--output", str(out), *extra)
    assert proc.returncode == 0, proc.stderr
    return str(out)


# ---- lmms-eval's way of reading the folder ---------------------------------------------------------

def load_yaml(path):
    """A task or group YAML as lmms-eval's load_yaml_config(mode="full") reads it: `include` merged,
    `!function utils.NAME` resolved from the utils.py beside the file (a fresh module each time)."""
    folder = os.path.dirname(path)

    def function(loader, node):
        module_name, name = loader.construct_scalar(node).rsplit(".", 1)
        spec = importlib.util.spec_from_file_location(module_name, os.path.join(folder, f"{module_name}.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return getattr(module, name)

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!function", function)
    with open(path, encoding="utf-8") as fh:
        config = yaml.load(fh, Loader=Loader)
    if "include" in config:
        base = load_yaml(os.path.join(folder, config.pop("include")))
        base.update(config)
        config = base
    return config


def resolved_kwargs(config, model_name="vllm"):
    """lmms_eval_specific_kwargs as lmms-eval's _prepare_model_specific_config resolves them."""
    kwargs = dict(config["lmms_eval_specific_kwargs"])
    if model_name in kwargs:
        return kwargs[model_name]
    kwargs.update(kwargs.get("default", {}))
    return kwargs


def evaluate(folder, respond):
    """Run the folder's tasks like lmms-eval: per task, docs -> prompt -> respond(doc, prompt) ->
    process_results -> aggregation per metric; then the group. Returns (task results, group results,
    [(task name, doc, response, per-sample metrics)])."""
    task_results, logged = {}, []
    group = load_yaml(os.path.join(folder, "sarchat_bench.yaml"))
    for name in group["task"]:
        config = load_yaml(os.path.join(folder, f"{name}.yaml"))
        data = datasets.load_dataset(config["dataset_path"], **config["dataset_kwargs"])
        docs = config["process_docs"](data[config["test_split"]])
        kwargs = resolved_kwargs(config)
        values = {m["metric"]: [] for m in config["metric_list"]}
        for doc in docs:
            prompt = config["doc_to_text"](doc, kwargs)
            images = config["doc_to_visual"](doc)
            assert len(images) == 1 and images[0].mode == "RGB"
            response = respond(doc, prompt, images[0])
            metrics = config["process_results"](doc, [response.strip()])
            assert set(metrics) == set(values)
            for m, v in metrics.items():
                values[m].append(v)
            logged.append((name, doc, response, metrics))
        task_results[name] = {m["metric"]: m["aggregation"](values[m["metric"]]) for m in config["metric_list"]}
        task_results[name]["samples"] = len(docs)
    group_results = {}
    for metric in sorted({m for r in task_results.values() for m in r if m != "samples"}):
        for agg in group["aggregate_metric_list"]:
            if agg["metric"] in metric:   # lmms-eval's rule: the configured name is a substring
                present = [r[metric] for r in task_results.values() if metric in r]
                sizes = [r["samples"] for r in task_results.values() if metric in r]
                group_results[metric] = agg["aggregation"](present, sizes, agg["weight_by_size"])
    return task_results, group_results, logged


def _reformat(answer, fmt, W, H_):
    canon = get_box_format("canonical")
    return re.sub(r"\{<[^{}]*>\}", lambda m: fmt.render(canon.parse(m.group(0), W, H_), W, H_), answer)


def write_lmms_log(logged, folder, date="20261202_000000"):
    """lmms-eval 0.7's samples logs of these responses: one file per task, no `doc` (it drops it)."""
    os.makedirs(folder, exist_ok=True)
    by_task = {}
    for i, (name, doc, response, metrics) in enumerate(logged):
        by_task.setdefault(name, []).append({"doc_id": len(by_task.get(name, [])), "target": doc["answer"],
                                             "filtered_resps": response, "input": "q", **metrics})
    for name, records in by_task.items():
        with open(os.path.join(folder, f"{date}_samples_{name}.jsonl"), "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in records)
    return sorted(glob.glob(os.path.join(folder, f"{date}_samples_*.jsonl")))


# ---- the folder -----------------------------------------------------------------------------------

def test_the_folder_has_a_group_and_a_task_per_table3_task_and_subset(dataset, tmp_path):
    folder = export(dataset, tmp_path / "tasks", "--adapter", "qwen2-vl")
    manifest = json.load(open(os.path.join(dataset, "manifest.json")))
    parquet = sorted(os.path.join(dataset, f["path"]) for f in manifest["files"] if f["path"].startswith("parquet/test/"))
    names = ["sarchat_count", "sarchat_grounding_single", "sarchat_grounding_multi", "sarchat_identify_single",
             "sarchat_identify_multi", "sarchat_refer_single", "sarchat_refer_multi", "sarchat_describe",
             "sarchat_classify"]
    assert sorted(n for n in os.listdir(folder) if n != ".sarchat-owner.json") == sorted(["_default_template_yaml", "sarchat_bench.yaml", "utils.py",
                                                 "sarchat_export.json"] + [f"{n}.yaml" for n in names])
    group = load_yaml(os.path.join(folder, "sarchat_bench.yaml"))
    assert group["group"] == "sarchat_bench" and group["task"] == names
    for name in names:
        config = load_yaml(os.path.join(folder, f"{name}.yaml"))
        assert config["task"] == name and config["dataset_path"] == "parquet"
        assert config["dataset_kwargs"]["data_files"] == {"test": parquet}   # absolute, from the manifest
        assert all(os.path.isabs(p) for p in parquet)
        assert config["lmms_eval_specific_kwargs"]["default"] == {"adapter": "qwen2-vl", "format_hint": True}
        for key in ("doc_to_text", "doc_to_visual", "doc_to_target", "process_results", "process_docs"):
            assert callable(config[key]), key
        assert all(callable(m["aggregation"]) for m in config["metric_list"])
        assert config["metadata"]["sarchat_dataset_version"] == manifest.get("dataset_version", manifest.get("config_hash"))
    assert [m["metric"] for m in group["aggregate_metric_list"]] == H.GROUP_METRICS
    assert set(H.GROUP_METRICS) == set(COLUMNS) | {f"{t}.score" for t in TASKS} | {"overall", "overall_macro"}
    # lmms-eval's substring rule: a name must come before every longer name containing it
    for i, a in enumerate(H.GROUP_METRICS):
        assert not any(a in b for b in H.GROUP_METRICS[:i]), a


def test_prompts_images_and_the_kwargs_adapter(dataset, tmp_path):
    folder = export(dataset, tmp_path / "tasks", "--adapter", "qwen2.5-vl")
    seen = set()
    qwen25 = get_adapter("qwen2.5-vl")

    def respond(doc, prompt, image):
        assert prompt == qwen25.user_text(doc)    # the prompt `sarchat infer` sends
        assert (qwen25.hint(doc["width"], doc["height"]) in prompt) == (doc["task"] in BOX_TASKS)
        # padded right/bottom to multiples of 28, as `sarchat infer` pads for Qwen2.5-VL
        assert image.size == (-(-doc["width"] // 28) * 28, -(-doc["height"] // 28) * 28)
        seen.add(doc["task"])
        return doc["answer"]

    evaluate(folder, respond)
    assert seen == set(TASKS)
    config = load_yaml(os.path.join(folder, "sarchat_count.yaml"))
    doc = config["process_docs"](datasets.load_dataset("parquet", **config["dataset_kwargs"])["test"])[0]
    with pytest.raises(ValueError, match="exported for 'qwen2.5-vl'.*--adapter llava-1.5"):
        config["doc_to_text"](doc, {"default": {"adapter": "llava-1.5"}, "adapter": "llava-1.5"})
    assert "Write every bounding box" not in config["doc_to_text"](doc, {"adapter": "qwen2.5-vl", "format_hint": False})


@pytest.mark.parametrize("adapter", ["sarchat", "qwen2-vl"])
def test_reference_answers_score_100_on_every_column(dataset, tmp_path, adapter):
    folder = export(dataset, tmp_path / "tasks", "--adapter", adapter)
    fmt = get_adapter(adapter).box_format
    tasks, group, _ = evaluate(folder, lambda doc, prompt, image: _reformat(doc["answer"], fmt, doc["width"], doc["height"]))
    nonnull = [c for c in COLUMNS if group[c] is not None]
    assert len(nonnull) >= 10 and all(group[c] == 100.0 for c in nonnull), group  # null: a subset without samples
    assert group["overall"] == 100.0 and all(group[f"{t}.score"] == 100.0 for t in TASKS)
    assert tasks["sarchat_refer_single"]["refer.single.iou25"] == 100.0


def test_lmms_eval_numbers_equal_sarchat_score_on_the_same_responses(dataset, tmp_path):
    """Mixed responses (right, wrong, half right, unparseable) through the hooks, then the same
    responses as lmms-eval logs through `sarchat score`: every figure is equal."""
    folder = export(dataset, tmp_path / "tasks", "--adapter", "llava-1.5")

    def respond(doc, prompt, image):
        k = int(doc["id"][-2:], 16) % 4
        if k == 0:
            return doc["answer"]
        if k == 1:
            return "I cannot tell."
        if k == 2:  # a box off by a few pixels and another category word
            return re.sub(r"<(\d+)>", lambda m: f"<{int(m.group(1)) + 7}>", doc["answer"]).replace("ship", "tank")
        return doc["answer"][: max(1, len(doc["answer"]) // 2)]

    tasks, group, logged = evaluate(folder, respond)
    logs = write_lmms_log(logged, str(tmp_path / "logs" / "tiny__llava"))
    proc = sarchat("score", "--dataset", dataset, "--predictions", *logs, "--output", str(tmp_path / "scores"),
                   "--bootstrap", "0", "--samples", "0", "--plots", "none")
    assert proc.returncode == 0, proc.stderr
    metrics = json.load(open(tmp_path / "scores" / "tiny__llava" / "metrics.json"))
    assert metrics["missing_predictions"] == 0 and metrics["predictions_dataset_version"] is None
    assert {c: group[c] for c in COLUMNS} == metrics["columns"]
    assert {t: group[f"{t}.score"] for t in TASKS} == metrics["tasks"]
    assert (group["overall"], group["overall_macro"]) == (metrics["overall"], metrics["overall_macro"])
    assert 0 < metrics["overall"] < 100   # the responses were mixed: not a trivially equal 0 or 100
    # a subset task's own columns are sarchat score's columns of that subset
    assert tasks["sarchat_refer_multi"]["refer.multi.iou50"] == metrics["columns"]["refer.multi.iou50"]
    assert tasks["sarchat_count"]["count.only_count"] == metrics["columns"]["count.only_count"]


# ---- the command line -----------------------------------------------------------------------------

def test_a_rerun_replaces_its_own_files_and_never_a_foreign_one(dataset, tmp_path):
    folder = export(dataset, tmp_path / "tasks")
    (tmp_path / "tasks" / "notes.txt").write_text("mine")
    export(dataset, tmp_path / "tasks", "--adapter", "internvl")
    assert "'internvl'" in open(os.path.join(folder, "utils.py")).read()
    assert (tmp_path / "tasks" / "notes.txt").read_text() == "mine"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "utils.py").write_text("# someone's")
    proc = sarchat("export", "lmms-eval", "--dataset", dataset, "--output", str(tmp_path / "other"))
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "utils.py" in proc.stderr and "was not written by `sarchat export" in proc.stderr
    assert (tmp_path / "other" / "utils.py").read_text() == "# someone's"


@pytest.mark.parametrize("args, code, message", [
    (["export", "tsv"], 2, "unknown export format 'tsv'"),
    (["export", "lmms-eval", "--dataset", "DATASET", "--output", "OUT", "--adapter", "gpt-9"], 2, "unknown adapter 'gpt-9'"),  # exit 2, as in infer and score
    (["export", "lmms-eval", "--dataset", "gs://bucket/out", "--output", "OUT"], 2, "lmms-eval reads local files"),
    (["export", "lmms-eval", "--dataset", "NOWHERE", "--output", "OUT"], 2, "--dataset NOWHERE: no such folder"),
    (["export", "lmms-eval", "--dataset", "DATASET", "--output", "OUT", "--split", "train"], 1, "lists no parquet/train/"),
    (["export", "lmms-eval", "--dataset", "DATASET", "--output", "DATASET/tasks"], 1, "lies inside the dataset"),
])
def test_bad_invocations_are_one_line(dataset, tmp_path, capsys, args, code, message):
    """In process (the subprocess path is the rerun test's); the same cli.main a user's `sarchat` runs."""
    from sarchat.beam_pipelines import cli

    args = [a.replace("DATASET", dataset).replace("OUT", str(tmp_path / "out")).replace("NOWHERE", str(tmp_path / "nowhere"))
            for a in args]
    message = message.replace("NOWHERE", str(tmp_path / "nowhere"))
    assert cli.main(args) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("sarchat export: error: ") and message in err, err
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.parametrize("argv", [["export", "--help"], ["export", "lmms-eval", "--help"], ["export", "vlmevalkit", "--help"]])
def test_help_answers_without_beam(argv):
    code = ("import sys; from sarchat.beam_pipelines.cli import main\n"
            f"rc = main({argv!r})\n"
            "print(rc, 'apache_beam' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True)
    assert proc.returncode == 0 and "usage: sarchat export" in proc.stdout, proc.stderr
    assert proc.stdout.split()[-2:] == ["0", "False"]
