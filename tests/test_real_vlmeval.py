"""The real VLMEvalKit (PyPI's ms-vlmeval) reads `sarchat export vlmevalkit`'s table, and
`sarchat score` reads the prediction table it writes.

Skipped unless SARCHAT_VLMEVAL_PYTHON names a python with VLMEvalKit (.ci/vlmeval_env.sh builds
one and prints it; .ci/vllm_checks.sh runs this file with it in CI). In that python, with $LMUData
pointing at a folder holding the exported table, the test runs what VLMEvalKit's run.py runs for
`--data SARChatBench`: `vlmeval.dataset.build_dataset` (an unregistered name with a `question`
column and no A/B columns: a CustomVQADataset), the dataset's `build_prompt` per row (the image
decoded from base64 into $LMUData/images/SARChatBench/<index>.png, then the question), and the
prediction table written as run.py's inference writes it (the dataset's rows less `image`, plus
`prediction`, through vlmeval.smp.dump at vlmeval.smp.get_pred_file_path with PRED_FORMAT=tsv).
No VLMEvalKit model runs here: its model classes load their checkpoints onto CUDA (`.cuda()`),
so the answers are written by the test (right for some samples, none for others), the way a model
would have answered, and scored.
"""
import json
import os
import subprocess
import textwrap

import pytest

from tests import cli_process
from tests.helpers import generated_dataset

VLMEVAL_PYTHON = os.environ.get("SARCHAT_VLMEVAL_PYTHON")
pytestmark = pytest.mark.skipif(not VLMEVAL_PYTHON, reason="SARCHAT_VLMEVAL_PYTHON is not set (.ci/vlmeval_env.sh)")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "SARChatBench"
MODEL = "tinymodel"

VLMEVAL_SIDE = textwrap.dedent('''
    import json, os, sys
    from PIL import Image
    from vlmeval.dataset import build_dataset
    from vlmeval.smp import dump, get_pred_file_path, load

    name, work_dir, model = sys.argv[1:4]
    ds = build_dataset(name)
    assert type(ds).__name__ == "CustomVQADataset", type(ds)
    data = ds.data
    prompts = {}
    for i in range(len(data)):
        line = data.iloc[i]
        msgs = ds.build_prompt(line)
        assert [m["type"] for m in msgs] == ["image", "text"], msgs
        with Image.open(msgs[0]["value"]) as img:
            size = img.size
        prompts[str(line["index"])] = {"text": msgs[1]["value"], "image": msgs[0]["value"], "size": list(size)}
    # as vlmeval/inference.py's infer_data_job writes its result
    out = data.copy()
    out["prediction"] = [a if int(str(k)[-1], 16) % 2 == 0 else "I cannot tell."
                         for k, a in zip(out["index"], out["answer"])]
    out.pop("image")
    path = get_pred_file_path(work_dir, model, name, use_env_format=True)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    dump(out, path)
    back = load(path)
    os.environ["PRED_FORMAT"] = "json"   # the same table as VLMEvalKit's .json, for a second model
    json_path = get_pred_file_path(work_dir, model + "-json", name, use_env_format=True)
    dump(out, json_path)
    print(json.dumps({"class": type(ds).__name__, "rows": len(data), "prompts": prompts, "table": path,
                      "json_table": json_path,
                      "columns": list(back.columns), "modality": getattr(ds, "MODALITY", None), "type": ds.TYPE}))
''')


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def sarchat(*args):
    return cli_process.run_sarchat(list(args), env=_env(), timeout=600)  # forked: Beam imported once


def test_vlmevalkit_loads_the_export_builds_its_prompts_and_its_predictions_score(tmp_path):
    dataset = generated_dataset(tmp_path, images=12, seed="real-vlmeval", extra=("--splits", "test", "--formats", "parquet"))
    proc = sarchat("export", "vlmevalkit", "--dataset", dataset, "--output", str(tmp_path / "export"))
    assert proc.returncode == 0, proc.stderr
    lmu = tmp_path / "LMUData"
    lmu.mkdir()
    os.symlink(tmp_path / "export" / f"{NAME}.tsv", lmu / f"{NAME}.tsv")   # the README's registration step

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env.update(LMUData=str(lmu), PRED_FORMAT="tsv", HOME=str(tmp_path))
    run = subprocess.run([VLMEVAL_PYTHON, "-c", VLMEVAL_SIDE, NAME, str(tmp_path / "outputs" / MODEL), MODEL],
                         capture_output=True, text=True, env=env, timeout=600, cwd=str(tmp_path))
    assert run.returncode == 0, run.stderr[-4000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])

    import pyarrow.parquet as pq
    from sarchat.transforms.adapters import get_adapter

    rows = {r["id"]: r for r in pq.read_table(os.path.join(dataset, "parquet", "test")).to_pylist()}
    assert got["class"] == "CustomVQADataset" and got["type"] == "VQA" and got["rows"] == len(rows)
    assert sorted(got["prompts"]) == sorted(rows)
    adapter = get_adapter("sarchat")
    for sid, p in got["prompts"].items():
        assert p["text"] == adapter.user_text(rows[sid])
        assert p["size"] == [rows[sid]["width"], rows[sid]["height"]]
        assert p["image"].startswith(str(lmu / "images" / NAME))
    table = got["table"]
    assert os.path.basename(table) == f"{MODEL}_{NAME}.tsv"
    assert {"index", "prediction", "sarchat_dataset"} <= set(got["columns"]) and "image" not in got["columns"]

    # the same answers as a plain prediction file: the same numbers
    with open(tmp_path / "same.jsonl", "w") as fh:
        for sid, row in rows.items():
            text = row["answer"] if int(sid[-1], 16) % 2 == 0 else "I cannot tell."
            fh.write(json.dumps({"id": sid, "prediction": text, "model": "same"}) + "\n")
    assert os.path.basename(got["json_table"]) == f"{MODEL}-json_{NAME}.json"
    proc = sarchat("score", "--dataset", dataset, "--predictions", table, got["json_table"],
                   str(tmp_path / "same.jsonl"), "--output", str(tmp_path / "scores"), "--bootstrap", "0",
                   "--samples", "0")
    assert proc.returncode == 0, proc.stderr
    same = json.load(open(tmp_path / "scores" / "same" / "metrics.json"))
    for model in (MODEL, MODEL + "-json"):
        metrics = json.load(open(tmp_path / "scores" / model / "metrics.json"))
        assert metrics["missing_predictions"] == 0 and 0 < metrics["overall"] < 100
        for key in ("columns", "tasks", "overall", "overall_macro", "n", "parse_failures", "template_spread"):
            assert metrics[key] == same[key], (model, key)
