"""Real lmms-eval over `sarchat export lmms-eval`'s tasks, with a tiny model on real vLLM, checked
against `sarchat score` on the responses lmms-eval logged.

lmms-eval and vLLM are not dependencies of the test suite: this runs where an interpreter with both
is named, SARCHAT_LMMS_PYTHON (or SARCHAT_VLLM_PYTHON, if lmms-eval is installed in it);
`.ci/lmms_env.sh` adds lmms-eval to the CPU vLLM environment of `.ci/vllm_env.sh` and prints it, and
`.ci/vllm_checks.sh` runs this file with it after tests/test_real_vllm.py. Elsewhere it is skipped;
tests/test_export_lmms.py runs the same hooks the way lmms-eval does in every run.

Nothing is downloaded: `sarchat synth` + `sarchat generate` make a 30-dialogue test split, a tiny
random LLaVA is built locally (tests.tiny_llava), lmms-eval runs its `vllm` model (the
engine in its own process, eager, uni-process executor: the fast start-up settings of
tests/test_real_vllm.py) over the whole group `sarchat_bench` with --log_samples, and its
results.json is compared with the metrics.json `sarchat score` writes from those logs.
"""
import glob
import json
import os
import subprocess

import pytest

from tests import cli_process

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_NEW_TOKENS = "12"
RUN_TIMEOUT_S = 600


def _lmms_python():
    for var in ("SARCHAT_LMMS_PYTHON", "SARCHAT_VLLM_PYTHON"):
        py = os.environ.get(var)
        if py and subprocess.run([py, "-c", "import importlib.util as u, sys; "
                                  "sys.exit(not (u.find_spec('lmms_eval') and u.find_spec('vllm')))"],
                                 capture_output=True, timeout=120).returncode == 0:
            return py
    return None


LMMS_PYTHON = _lmms_python()
pytestmark = pytest.mark.skipif(LMMS_PYTHON is None, reason="no lmms-eval + vLLM here: set SARCHAT_LMMS_PYTHON "
                                                            "(bash .ci/lmms_env.sh prints one)")


def _env(root):
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update({"VLLM_CPU_KVCACHE_SPACE": "2", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(root / "hf"), "VLLM_NO_USAGE_STATS": "1",
                "DO_NOT_TRACK": "1", "TOKENIZERS_PARALLELISM": "false", "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
                "WANDB_MODE": "disabled"})
    return env


def _checked(proc, what):
    assert proc.returncode == 0, f"{what} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    return proc


def _run(cmd, root, what):
    return _checked(subprocess.run(cmd, capture_output=True, text=True, env=_env(root), timeout=RUN_TIMEOUT_S), what)


def _sarchat(root, *args):
    """A stage with Beam (synth, generate, score) in this interpreter, `export` too (as a user runs it),
    forked from its warm process (Beam imported once)."""
    return _checked(cli_process.run_sarchat(list(args), env=_env(root), timeout=RUN_TIMEOUT_S), f"sarchat {args[0]}")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("real_lmms")
    _sarchat(root, "synth", str(root / "raw"), "--images", "40", "--seed", "real-vllm", "--quiet")
    _sarchat(root, "generate", "--input", str(root / "raw"), "--output", str(root / "out"), "--splits", "test",
             "--formats", "parquet", "--identify-variants", "1")
    _sarchat(root, "export", "lmms-eval", "--dataset", str(root / "out"), "--output", str(root / "tasks"),
             "--adapter", "llava-1.5", "--max-tokens", MAX_NEW_TOKENS)
    model = str(root / "llava")
    _run([LMMS_PYTHON, "-m", "tests.tiny_llava", model, "--dataset", str(root / "out")], root, "tiny_llava")
    # lmms-eval's vllm model generates max(task's max_new_tokens, its own max_new_tokens=4096): both set
    _run([LMMS_PYTHON, "-m", "lmms_eval", "--model", "vllm",
          "--model_args", f"model={model},enforce_eager=True,distributed_executor_backend=uni,max_model_len=4096,"
                          f"max_new_tokens={MAX_NEW_TOKENS}",
          "--include_path", str(root / "tasks"), "--tasks", "sarchat_bench", "--batch_size", "32",
          "--log_samples", "--output_path", str(root / "logs")], root, "lmms-eval")
    (folder,) = glob.glob(str(root / "logs" / "*"))          # lmms-eval's folder named after the model
    (results,) = glob.glob(os.path.join(folder, "*_results.json"))
    logs = sorted(glob.glob(os.path.join(folder, "*_samples_sarchat_*.jsonl")))
    _sarchat(root, "score", "--dataset", str(root / "out"), "--predictions", *logs, "--output", str(root / "scores"),
             "--bootstrap", "0", "--samples", "0")
    model_name = os.path.basename(folder)
    with open(results, encoding="utf-8") as fh:
        lmms = json.load(fh)
    with open(root / "scores" / model_name / "metrics.json", encoding="utf-8") as fh:
        metrics = json.load(fh)
    return {"root": root, "lmms": lmms, "metrics": metrics, "logs": logs, "model": model_name}


def _figures(results, name):
    return {k.split(",")[0]: v for k, v in results["results"][name].items() if k.endswith(",none") and "_stderr" not in k}


def test_lmms_eval_reports_the_numbers_of_sarchat_score(run):
    from sarchat.transforms.tasks import COLUMNS, TASKS

    group, metrics = _figures(run["lmms"], "sarchat_bench"), run["metrics"]
    assert {c: group[c] for c in COLUMNS} == metrics["columns"]
    assert {t: group[f"{t}.score"] for t in TASKS} == metrics["tasks"]
    assert (group["overall"], group["overall_macro"]) == (metrics["overall"], metrics["overall_macro"])
    # every test sample answered once, version unknown (lmms-eval records none)
    assert metrics["missing_predictions"] == 0 and metrics["predictions_dataset_version"] is None
    assert sum(metrics["n"]["tasks"].values()) == 30
    # a subset task's own columns are the same columns of sarchat score
    refer = _figures(run["lmms"], "sarchat_refer_single")
    assert refer["refer.single.iou25"] == metrics["columns"]["refer.single.iou25"]


def test_every_logged_sample_is_scored_alike(run):
    """Per sample: the TP/FP/FN lmms-eval's process_results logged equal sarchat score's samples_<task>.jsonl."""
    ours = {}
    for path in glob.glob(str(run["root"] / "scores" / run["model"] / "samples_*.jsonl")):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                r = json.loads(line)
                ours[r["id"]] = (r["status"], {c: [v["tp"], v["fp"], v["fn"]] for c, v in r["scores"].items()})
    theirs = {}
    for path in run["logs"]:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                r = json.loads(line)
                record = r["overall"]   # every SARChat metric logs the same per-sample record
                theirs[record["id"]] = (record["status"], record["scores"])
    assert len(theirs) == 30 and theirs == ours
