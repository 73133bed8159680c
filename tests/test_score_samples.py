"""`sarchat score`'s SCORES/<model>/samples_<task>.jsonl end to end, and `sarchat score --explain ID`."""
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sarchat.beam_pipelines import score
from sarchat.inference.baselines import oracle_prediction
from sarchat.synthetic import sardet_synth as synthetic
from sarchat.transforms import coco
from sarchat.transforms.generate.dialogues import DialogueBuilder
from sarchat.transforms.score import score_columns
from sarchat.transforms.score.metrics import COLUMNS, TASK_COLUMNS
from sarchat.transforms.tasks import TASKS
from tests import cli_process

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIELDS = ["id", "task", "subset", "model", "question", "reference", "response", "status", "error", "latency_s",
          "category", "size", "parsed", "ious", "scores"]


def write_dataset(root, shards=2):
    """A small generated test split (synthetic SARDet-like annotations through the generator's builder)."""
    data = synthetic.sardet_scale_annotations("test", 40, 100, 5)
    images, _ = coco.parse_coco(data, "synthetic.json", "test", "JPEGImages/test")
    table, _ = DialogueBuilder(seed=0).table(images)
    folder = os.path.join(root, "parquet", "test")
    os.makedirs(folder)
    per = (table.num_rows + shards - 1) // shards
    files = []
    for k in range(shards):
        path = os.path.join(folder, f"dialogues-{k:05d}-of-{shards:05d}.parquet")
        pq.write_table(table.slice(k * per, per), path)
        files.append({"path": os.path.relpath(path, root), "bytes": os.path.getsize(path)})
    with open(os.path.join(root, "manifest.json"), "w") as f:
        json.dump({"generator": "sarchat-bench", "config_hash": "v-test", "files": files}, f)
    return table.to_pylist()


def write_jsonl(rows, path):
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return str(path)


def wrong_predictions(rows):
    """Deliberately wrong: the oracle answer of the next row of the same task (parseable, mostly
    wrong), an empty answer every third row (unparseable), one inference error, one missing id."""
    by_task = {}
    for r in sorted(rows, key=lambda r: r["id"]):
        by_task.setdefault(r["task"], []).append(r)
    out = []
    for task_rows in by_task.values():
        for k, r in enumerate(task_rows):
            other = task_rows[(k + 1) % len(task_rows)]
            out.append({"id": r["id"], "model": "wrong", "latency_s": 0.5,
                        "prediction": "" if k % 3 == 0 else oracle_prediction(other)})
    ids = sorted(p["id"] for p in out)
    error_id, missing_id = ids[1], ids[2]
    for p in out:
        if p["id"] == error_id:
            p["error"] = "timeout after 60 s"
    return [p for p in out if p["id"] != missing_id], error_id, missing_id


def run_score(dataset, preds, out, *extra):
    argv = ["--dataset", dataset, "--predictions", *preds, "--output", str(out), "--bootstrap", "0", "--plots", "none",
            *extra]  # no charts: these tests read the samples files
    assert score.run(argv) == 0


def read_lines(out, model):
    """{task: [record]} of every samples_<task>.jsonl of the model."""
    folder = os.path.join(out, model)
    return {n[len("samples_"):-len(".jsonl")]: [json.loads(x) for x in open(os.path.join(folder, n))]
            for n in sorted(os.listdir(folder)) if n.startswith("samples_") and n.endswith(".jsonl")}


def file_texts(out):
    return {os.path.relpath(os.path.join(d, n), out): open(os.path.join(d, n)).read()
            for d, _, names in os.walk(out) for n in names if n.endswith(".jsonl") and n.startswith("samples_")}


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    base = tmp_path_factory.mktemp("samples")
    root = str(base / "generated")
    rows = write_dataset(root)
    oracle = write_jsonl([{"id": r["id"], "prediction": oracle_prediction(r), "model": "oracle"} for r in rows],
                         base / "oracle.jsonl")
    wrong_rows, error_id, missing_id = wrong_predictions(rows)
    wrong = write_jsonl(wrong_rows, base / "wrong.jsonl")
    out = base / "out"
    run_score(root, [oracle, wrong], out, "--num-buckets", "16")
    return {"root": root, "rows": rows, "out": str(out), "preds": [oracle, wrong], "wrong": wrong_rows,
            "error_id": error_id, "missing_id": missing_id, "base": base}


def test_one_jsonl_per_model_and_task_with_question_reference_response(scored):
    rows, out = scored["rows"], scored["out"]
    by_id = {r["id"]: r for r in rows}
    n_task = {t: sorted(r["id"] for r in rows if r["task"] == t) for t in TASKS}
    assert all(n_task.values())  # the dataset has every task, so every file below is checked
    wrong_text = {p["id"]: p["prediction"] for p in scored["wrong"]}
    for model in ("oracle", "wrong"):
        files = read_lines(out, model)
        assert sorted(files) == sorted(TASKS)
        for task, recs in files.items():
            assert [r["id"] for r in recs] == n_task[task]  # one per test row, sorted by id
            for r in recs:
                row = by_id[r["id"]]
                assert list(r) == FIELDS and r["model"] == model and r["task"] == task
                assert r["question"] == row["question"] and r["reference"] == row["answer"]
                assert r["subset"] == row.get("subset")
                assert list(r["scores"]) == [c for c in TASK_COLUMNS[task] if c in r["scores"]] and r["scores"]
                if model == "oracle":
                    assert r["response"] == oracle_prediction(row) and r["status"] == "ok"
                else:
                    assert r["response"] == wrong_text.get(r["id"])


def test_oracle_tp_is_the_truth_and_the_wrong_model_is_counted_as_metrics_say(scored):
    out = scored["out"]
    oracle = {r["id"]: r for recs in read_lines(out, "oracle").values() for r in recs}
    wrong = {r["id"]: r for recs in read_lines(out, "wrong").values() for r in recs}
    misses = 0
    for sid, o in oracle.items():
        w = wrong[sid]
        assert all(s["fp"] == 0 and s["fn"] == 0 for s in o["scores"].values()), o
        assert all(v > 0.999 for v in o["ious"]), o
        if w["status"] != "ok":  # a miss: FN per column is the truth's size, what the oracle found
            misses += 1
            assert {c: s["tp"] for c, s in o["scores"].items()} == {c: s["fn"] for c, s in w["scores"].items()}
            assert all(s["tp"] == 0 and s["fp"] == 0 for s in w["scores"].values())
    assert misses >= len(oracle) // 3
    e, m = wrong[scored["error_id"]], wrong[scored["missing_id"]]
    assert (e["status"], e["error"], e["latency_s"]) == ("inference_error", "timeout after 60 s", 0.5)
    assert (m["status"], m["response"], m["error"]) == ("missing", None, None)
    assert any(w["status"] == "unparseable" for w in wrong.values())
    # the lines add up to metrics.json's column accuracies (Eq. 3 over the samples of the column)
    metrics = json.load(open(os.path.join(out, "wrong", "metrics.json")))
    for col in COLUMNS:
        tp = fp = fn = 0
        for w in wrong.values():
            s = w["scores"].get(col)
            if s:
                tp, fp, fn = tp + s["tp"], fp + s["fp"], fn + s["fn"]
        expected = 100.0 if tp + fp + fn == 0 else 100.0 * tp / (tp + fp + fn)
        assert metrics["columns"][col] == pytest.approx(expected, abs=1e-4), col  # metrics.json rounds to 4 places
    assert metrics["overall"] < 60.0  # wrong indeed


def test_same_bytes_in_another_file_order_and_bucket_count_and_stale_files_removed(scored, tmp_path):
    # (with two worker processes too: tests/test_score_pipeline.py's determinism test)
    out = scored["out"]
    out2 = tmp_path / "out2"
    run_score(scored["root"], list(reversed(scored["preds"])), out2, "--num-buckets", "5")
    first = file_texts(out)
    assert len(first) == 2 * len(TASKS) and first == file_texts(out2)
    # a rerun with the oracle only: the wrong model's files and an unknown task's file go
    stray = out2 / "oracle" / "samples_bogus.jsonl"
    stray.write_text("{}\n")
    run_score(scored["root"], scored["preds"][:1], out2, "--num-buckets", "5")
    assert sorted(file_texts(out2)) == sorted(k for k in first if k.startswith("oracle"))
    assert file_texts(out2) == {k: v for k, v in first.items() if k.startswith("oracle")}
    run_score(scored["root"], scored["preds"][:1], out2, "--num-buckets", "5", "--no-sample-files")
    assert file_texts(out2) == {}


def test_merged_lines_sort_by_id_whatever_the_bucket_order():
    parts = [pa.table({"id": i, "line": [x.upper() + "\n" for x in i]}) for i in (["b", "d"], ["a"], ["c"])]
    assert score_columns.merged_lines(parts) == score_columns.merged_lines(parts[::-1]) == b"A\nB\nC\nD\n"


def _sarchat(*args):
    return cli_process.run_sarchat(args, timeout=300)  # this process's environment, the checkout on PYTHONPATH


def test_explain_prints_the_sample_of_every_model_and_refuses_an_unknown_id(scored):
    out = scored["out"]
    sid = scored["error_id"]
    row = next(r for r in scored["rows"] if r["id"] == sid)
    done = _sarchat("score", "--explain", sid, "--output", out)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert text.startswith(f"sample {sid}  task {row['task']}")
    assert row["question"].splitlines()[0] in text and row["answer"].splitlines()[0] in text
    assert "model oracle: ok" in text and "model wrong: inference_error (inference error: timeout after 60 s)" in text
    assert oracle_prediction(row).splitlines()[0] in text
    record = next(r for r in read_lines(out, "oracle")[row["task"]] if r["id"] == sid)
    for col, s in record["scores"].items():
        assert f"  {col}: TP {s['tp']}  FP 0  FN 0" in text

    bad = _sarchat("score", "--explain", "no-such-id", "--output", out)
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.strip().count("\n") == 0 and "no-such-id" in bad.stderr and "error:" in bad.stderr
