"""`sarchat score` end to end on temp dirs: oracle = 100, several models, rejects, formats, determinism."""
import glob
import json
import os
import re

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.util import assert_that, equal_to

from sarchat.beam_pipelines import cli, score
from sarchat.inference.baselines import BlindPrior, oracle_prediction
from tests.helpers import CATEGORIES, known_dataset
from sarchat.transforms import coco
from sarchat.synthetic import sardet_synth as synthetic
from sarchat.transforms.box_formats import get_box_format
from sarchat.transforms.generate.dialogues import DialogueBuilder
from sarchat.transforms.score.metrics import COLUMNS
from sarchat.transforms.score.parsing import parse_answer
from sarchat.transforms.schema import PREDICTION_SCHEMA
from sarchat.transforms.tasks import TASKS

METRICS_ORDER = ["model", "columns", "tasks", "overall", "overall_macro", "overall_ci95", "n", "parse_failures",
                 "inference_errors", "missing_predictions", "dataset_version", "predictions_dataset_version",
                 "dataset_version_mismatch", "template_spread"]
METRICS_KEYS = set(METRICS_ORDER)


def generated_table(split="test", n_images=70, n_boxes=170, seed=5, with_known=True):
    """Dialogues from the generator's own builder: synthetic SARDet-like annotations plus the
    hand-written known dataset of conftest (which has a ship / harbor image with relations)."""
    builder = DialogueBuilder(seed=0)
    data = synthetic.sardet_scale_annotations(split, n_images, n_boxes, seed)
    images, _ = coco.parse_coco(data, "synthetic.json", split, f"JPEGImages/{split}")
    if with_known:
        imgs, anns = known_dataset()
        known, _ = coco.parse_coco({"images": imgs, "annotations": anns, "categories": CATEGORIES},
                                   "known.json", split, f"JPEGImages/{split}")
        for im in known:  # keep image ids distinct from the synthetic ones
            im["image_id"] += 10_000_000
        images += known
    return builder.table(images)[0]


def write_manifest(root, version="v-test", **extra):
    """A generator-style manifest.json listing every Parquet file under root with its size."""
    files = []
    for folder, _, names in os.walk(root):
        for name in sorted(names):
            if name.endswith(".parquet"):
                path = os.path.join(folder, name)
                files.append({"path": os.path.relpath(path, root).replace(os.sep, "/"), "bytes": os.path.getsize(path)})
    manifest = {"generator": "sarchat-bench", "config_hash": version, "files": sorted(files, key=lambda f: f["path"]),
                **extra}
    with open(os.path.join(root, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    return manifest


def write_dataset(table, root, shards=3, version="v-test"):
    folder = os.path.join(root, "parquet", "test")
    os.makedirs(folder, exist_ok=True)
    per = (table.num_rows + shards - 1) // shards
    for k in range(shards):
        pq.write_table(table.slice(k * per, per), os.path.join(folder, f"dialogues-{k:05d}-of-{shards:05d}.parquet"))
    write_manifest(root, version)
    return root


def write_predictions(rows, path):
    if path.endswith(".parquet"):
        pq.write_table(pa.Table.from_pylist(rows, schema=PREDICTION_SCHEMA), path)
    else:
        with open(path, "w") as f:
            for r in rows:
                f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


def run_score(dataset, preds, out, *extra, test=None):
    # the report's charts are tests/test_score_plots.py's subject; here they would only add seconds
    argv = ["--dataset", str(dataset), "--predictions", *[str(p) for p in preds], "--output", str(out),
            "--bootstrap", "200", "--plots", "none", *extra]
    assert score.run(argv, test=test) == 0


def load(out, model):
    with open(os.path.join(out, model, "metrics.json")) as f:
        return json.load(f)


def samples(out, model):
    files = sorted(glob.glob(os.path.join(out, model, "samples", "*.parquet")))
    return pq.read_table(files).sort_by("id").to_pylist()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("generated")
    table = generated_table()
    write_dataset(table, str(root))
    return str(root), table.to_pylist()


# ---------------------------------------------------------------------------------------------


def test_oracle_scores_100_on_every_column_through_the_pipeline(dataset, tmp_path):
    root, rows = dataset
    preds = write_predictions([{"id": r["id"], "prediction": oracle_prediction(r), "model": "oracle"} for r in rows],
                              str(tmp_path / "oracle.parquet"))
    out = tmp_path / "out"
    n_task = {t: sum(1 for r in rows if r["task"] == t) for t in TASKS}

    def check(metrics):
        (model, m), = metrics
        assert model == "oracle" and set(m) == METRICS_KEYS
        assert all(m["columns"][c] == 100.0 for c in COLUMNS), m["columns"]  # none null: every column covered
        assert all(m["tasks"][t] == 100.0 for t in TASKS)
        assert m["overall"] == 100.0 and m["overall_macro"] == 100.0 and m["overall_ci95"] == [100.0, 100.0]
        assert m["n"]["tasks"] == n_task
        assert m["missing_predictions"] == 0
        assert all(v["count"] == 0 for v in m["parse_failures"].values())
        # every template of every task scores 100 too; their samples add up to the task's
        for t in TASKS:
            sp = m["template_spread"][t]
            assert sum(v["n"] for v in sp["by_template"].values()) == n_task[t]
            assert sp["min"] == sp["max"] == 100.0 and sp["stdev"] == 0.0 and sp["templates"] >= 1
        templates = {(r["task"], r["template_id"] or "") for r in rows}
        assert {(t, tid) for t in TASKS for tid in m["template_spread"][t]["by_template"]} == templates

    def hook(p, outputs):
        assert_that(outputs["metrics"] | beam.combiners.ToList(), lambda got: check(got[0]))
        assert_that(outputs["rejects"], equal_to([]), label="NoRejects")

    run_score(root, [preds], out, test=hook)
    m = load(out, "oracle")
    assert list(m) == METRICS_ORDER
    assert m["dataset_version"] == "v-test" and m["predictions_dataset_version"] is None
    assert m["dataset_version_mismatch"] is False
    assert all(v == {"count": 0, "rate": 0.0} for v in m["inference_errors"].values())
    assert list(m["columns"]) == list(COLUMNS)
    assert m["n"]["columns"]["grounding.abstract_position"] > 0
    got = samples(out, "oracle")
    assert [s["id"] for s in got] == sorted(r["id"] for r in rows)  # every test sample, once
    # --num-buckets auto: these 1,588 rows are one bucket, so one samples file
    assert os.listdir(out / "oracle" / "samples") == ["samples-00000-of-00001.parquet"]
    assert {s["status"] for s in got} == {"ok"}
    assert all(sum(s["fp"]) == 0 and sum(s["fn"]) == 0 for s in got)
    for name in ("leaderboard.json", "leaderboard.md", "report.md", "report.html"):
        assert os.path.getsize(out / name) > 0
    assert json.load(open(out / "leaderboard.json"))[0]["model"] == "oracle"


def test_several_models_missing_duplicates_unknown_ids_and_determinism(dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1796169600")  # the report's date; else a minute may pass between runs
    root, rows = dataset
    ids = sorted(r["id"] for r in rows)
    by_id = {r["id"]: r for r in rows}
    missing = set(ids[:5])
    dup = ids[10:13]
    # oracle; later rows repeat three ids with a wrong answer (rejected: the first row is scored)
    a = write_predictions([{"id": i, "prediction": oracle_prediction(by_id[i]), "model": "oracle"}
                           for i in ids if i not in missing]
                          + [{"id": i, "prediction": "no idea", "model": "oracle"} for i in dup]
                          + [{"id": "not-a-test-id", "prediction": "x", "model": "oracle"}],
                          str(tmp_path / "oracle.parquet"))
    # blind, as JSONL: every id, plus a malformed line, a row without id, an unknown id, a duplicate
    train = generated_table("train", n_images=150, n_boxes=330, seed=9, with_known=False).to_pylist()
    blind = BlindPrior().fit(train)
    lines = [{"id": r["id"], "prediction": blind.predict(r), "model": "blind", "latency_s": 0.01} for r in rows]
    lines += ["{not json", {"prediction": "x", "model": "blind"}, {"id": "zzz", "prediction": "x", "model": "blind"},
              {"id": ids[0], "prediction": "again", "model": "blind"}]
    c = write_predictions(lines, str(tmp_path / "blind.jsonl"))

    out1, out2 = tmp_path / "o1", tmp_path / "o2"
    run_score(root, [a, c], out1, "--num-buckets", "64")
    # the second run: two worker processes (the pipeline pickles), another bucket count, another file order
    run_score(root, [str(tmp_path / "*.parquet"), c], out2, "--num-buckets", "7",
              "--direct_num_workers=2", "--direct_running_mode=multi_processing")

    oracle, blind_m = load(out1, "oracle"), load(out1, "blind")
    assert oracle["missing_predictions"] == 5 and blind_m["missing_predictions"] == 0
    assert 95.0 < oracle["overall"] < 100.0  # the 5 missing ones are misses, nothing else
    assert blind_m["overall"] < 60.0
    assert sum(v["count"] for v in blind_m["parse_failures"].values()) == 0  # blind answers parse
    assert oracle["n"] == blind_m["n"]
    rej = [json.loads(x) for x in open(out1 / "oracle" / "rejected.jsonl")]
    assert sorted((r["reason"], r["id"]) for r in rej) == sorted(
        [("duplicate_id", i) for i in dup] + [("unknown_id", "not-a-test-id")])
    assert all(r["file"].endswith("oracle.parquet") and r["row"] >= len(ids) - 5 for r in rej)
    rej = [json.loads(x) for x in open(out1 / "blind" / "rejected.jsonl")]
    assert sorted(r["reason"] for r in rej) == ["duplicate_id", "malformed_row", "missing_id", "unknown_id"]
    o = samples(out1, "oracle")
    assert [s["id"] for s in o] == ids
    assert sum(s["status"] == "missing" for s in o) == 5
    assert all(s["status"] == "ok" and sum(s["fp"]) + sum(s["fn"]) == 0 for s in o if s["id"] in dup)
    board = json.load(open(out1 / "leaderboard.json"))
    assert [r["model"] for r in board] == ["oracle", "blind"] and board[1]["rejected"] == 4
    # deterministic: other worker count, bucket count and file order -> identical metrics and samples,
    # and the same bytes in every samples_<task>.jsonl
    for model in ("oracle", "blind"):
        assert open(out1 / model / "metrics.json").read() == open(out2 / model / "metrics.json").read()
        assert open(out1 / model / "breakdown.json").read() == open(out2 / model / "breakdown.json").read()
        assert samples(out1, model) == samples(out2, model)
        lines = sorted(glob.glob(str(out1 / model / "samples_*.jsonl")))
        assert len(lines) == len(TASKS), lines
        for path in lines:
            assert open(path, "rb").read() == (out2 / model / os.path.basename(path)).read_bytes(), path
    assert open(out1 / "report.md").read() == open(out2 / "report.md").read()


def _reformat(answer, fmt, W, H):
    canon = get_box_format("canonical")
    import re

    return re.sub(r"\{<[^{}]*>\}", lambda m: fmt.render(canon.parse(m.group(0), W, H), W, H), answer)


def test_box_formats_per_model_flags_and_run_manifest(dataset, tmp_path):
    root, rows = dataset
    paths = []
    for model, spec in (("qwen-ft", "qwen2-vl"), ("intern-ft", "internvl"), ("json-ft", "json-bbox2d:1000")):
        fmt = get_box_format(spec)
        folder = tmp_path / model
        folder.mkdir()
        paths.append(write_predictions(
            [{"id": r["id"], "prediction": _reformat(r["answer"], fmt, r["width"], r["height"]), "model": model}
             for r in rows], str(folder / "predictions.parquet")))
    # json-ft is resolved from the manifest `sarchat infer` writes beside its predictions
    (tmp_path / "json-ft" / "manifest.json").write_text(json.dumps({"model": "json-ft",
                                                                    "box_format": "json-bbox2d:1000"}))
    out = tmp_path / "out"
    run_score(root, paths, out, "--adapter", "qwen-ft=qwen2-vl", "--adapter", "intern-ft=internvl")
    for model in ("qwen-ft", "intern-ft", "json-ft"):
        m = load(out, model)
        assert all(m["columns"][c] == 100.0 for c in COLUMNS), (model, m["columns"])
    board = {r["model"]: r["box_format"] for r in json.load(open(out / "leaderboard.json"))}
    assert board == {"qwen-ft": "qwen2-vl", "intern-ft": "internvl", "json-ft": "json-bbox2d:1000"}
    # read as canonical (the wrong declaration), the same answers lose every box
    out2 = tmp_path / "out2"
    run_score(root, paths[:1], out2, "--no-sample-files", "--bootstrap", "0")
    m = load(out2, "qwen-ft")
    assert m["columns"]["refer.single.iou50"] == 0.0 and m["parse_failures"]["refer"]["rate"] == 100.0
    assert m["columns"]["classify"] == 100.0 and m["overall_ci95"] == [None, None]


def test_bad_invocations_fail_cleanly(dataset, tmp_path, capsys):
    root, _ = dataset
    assert cli.main(["score", "--dataset", root, "--predictions", str(tmp_path / "nothing*.parquet"),
                     "--output", str(tmp_path / "o")]) == 2
    p = write_predictions([{"id": "x", "prediction": "y", "model": "m"}], str(tmp_path / "p.jsonl"))
    assert cli.main(["score", "--dataset", root, "--predictions", p, "--output", str(tmp_path / "o"),
                     "--adapter", "no-such-adapter"]) == 2
    assert "sarchat score: error: --adapter: unknown adapter or box format 'no-such-adapter'" in capsys.readouterr().err
    assert cli.main(["score", "--dataset", str(tmp_path / "missing"), "--predictions", p, "--output", str(tmp_path / "o")]) == 2
    capsys.readouterr()
    from sarchat.transforms.errors import UsageError  # checked when parsed now (beam_pipelines/flags.py)
    with pytest.raises(UsageError, match="--num-buckets.*expected a positive integer or auto, got '0'"):
        score.run(["--dataset", root, "--predictions", p, "--output", str(tmp_path / "o"), "--num-buckets", "0"])
    # a file named .parquet that is not Parquet: one line naming it, before any job starts
    corrupt = tmp_path / "model-a.parquet"
    corrupt.write_bytes(b"PAR1 but not really")
    assert cli.main(["score", "--dataset", root, "--predictions", str(corrupt), "--output", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert f"sarchat score: error: cannot read predictions file {corrupt}: ArrowInvalid" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def _oracle_rows(rows, model, **extra):
    return [{"id": r["id"], "prediction": oracle_prediction(r), "model": model, **extra} for r in rows]


def test_inference_errors_run_folders_bom_and_malformed_lines(dataset, tmp_path):
    root, rows = dataset
    ids = sorted(r["id"] for r in rows)
    failed = set(ids[:4])
    # a `sarchat infer` run folder: predictions.parquet, predictions.jsonl and the run manifest
    run = tmp_path / "run-qwen"
    run.mkdir()
    preds = _oracle_rows(rows, "qwen")
    for p in preds:  # a failed request keeps whatever text came back: it must not be scored
        if p["id"] in failed:
            p["error"] = "TimeoutError: no answer within 60 s"
    write_predictions(preds, str(run / "predictions.parquet"))
    write_predictions(preds, str(run / "predictions.jsonl"))
    (run / "manifest.json").write_text(json.dumps({"model": "qwen", "box_format": "canonical",
                                                   "dataset_version": "v-test"}))
    # JSONL with a UTF-8 byte order mark and two malformed lines
    lines = [json.dumps(p) for p in _oracle_rows(rows, "bommy")]
    lines[3:3] = ["{not json", "[1, 2]"]
    jsonl = tmp_path / "bommy.jsonl"
    jsonl.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode("utf-8") + b"\n")
    out = tmp_path / "out"
    run_score(root, [run, jsonl], out, "--bootstrap", "0", "--samples", "1")

    board = json.load(open(out / "leaderboard.json"))
    assert sorted(r["model"] for r in board) == ["bommy", "qwen"]  # no model "manifest" or "predictions"
    q = load(out, "qwen")
    assert q["inference_errors"]["classify"]["count"] + sum(v["count"] for v in q["inference_errors"].values()) > 0
    assert sum(v["count"] for v in q["inference_errors"].values()) == 4
    assert sum(v["count"] for v in q["parse_failures"].values()) == 0  # errors are not parse failures
    assert q["missing_predictions"] == 0 and q["overall"] < 100.0
    assert q["dataset_version"] == q["predictions_dataset_version"] == "v-test" and not q["dataset_version_mismatch"]
    statuses = {s["id"]: s["status"] for s in samples(out, "qwen")}
    assert {i for i, st in statuses.items() if st == "inference_error"} == failed
    b = load(out, "bommy")
    assert b["overall"] == 100.0 and b["missing_predictions"] == 0  # the BOM-prefixed first row is scored
    assert b["predictions_dataset_version"] is None
    rej = [json.loads(x) for x in open(out / "bommy" / "rejected.jsonl")]
    assert [(r["reason"], r["row"], r["model"]) for r in rej] == [("malformed_row", 3, "bommy"),
                                                                  ("malformed_row", 4, "bommy")]
    assert {r["model"]: r["inference_errors"] for r in board} == {"qwen": 4, "bommy": 0}
    md = open(out / "report.md").read()
    assert "## Inference errors per task" in md and "| qwen |" in md
    assert "bommy: dataset version v-test; the predictions record no version" in md
    assert "qwen: dataset version v-test, predictions made on the same version" in md


def test_predictions_of_another_dataset_version(dataset, tmp_path, capsys):
    root, rows = dataset
    table = pa.Table.from_pylist(_oracle_rows(rows, "old"), schema=PREDICTION_SCHEMA)
    path = tmp_path / "old.parquet"
    pq.write_table(table.replace_schema_metadata({"sarchat.dataset_version": "v-older"}), str(path))
    out = tmp_path / "out"
    argv = ["--dataset", root, "--predictions", str(path), "--output", str(out), "--bootstrap", "0", "--samples", "0"]
    assert cli.main(["score", *argv]) == 1
    err = capsys.readouterr().err
    assert (f"sarchat score: error: {path} holds predictions made on dataset version v-older, but {root} is "
            "version v-test") in err and "--allow-version-mismatch" in err
    assert not out.exists()
    assert score.run(argv + ["--allow-version-mismatch"]) == 0
    assert "warning: old: predictions made on dataset version v-older" in capsys.readouterr().err
    m = load(out, "old")
    assert m["dataset_version"] == "v-test" and m["predictions_dataset_version"] == "v-older"
    assert m["dataset_version_mismatch"] is True
    assert "WARNING: predictions made on dataset version v-older, scored on version v-test" in open(out / "report.md").read()
    assert "WARNING: predictions made on dataset version v-older" in open(out / "report.html").read()


def test_a_huge_answer_is_cut_in_the_report_and_the_job_writes_the_sections(dataset, tmp_path, capsys):
    from tests.score_reference import choose_samples

    root, rows = dataset
    shown = choose_samples([(r["id"], r["task"], r["subset"]) for r in rows], 1)
    by_id = {r["id"]: r for r in rows}
    count_id = next(i for i in shown if by_id[i]["task"] == "count")
    preds = _oracle_rows(rows, "huge")
    huge = "There are 3 instances. " + "{<1><1><5><5>}" * 5000 + " ship" * 400_000  # about 2 MB
    for p in preds:
        if p["id"] == count_id:
            p["prediction"] = huge
    path = write_predictions(preds, str(tmp_path / "huge.parquet"))
    out = tmp_path / "out"
    # --no_wait_until_finish: the launcher reads nothing back; the job itself writes the report sections
    run_score(root, [path], out, "--bootstrap", "0", "--no-sample-files", "--samples", "1", "--no_wait_until_finish")
    assert "pipeline submitted" in capsys.readouterr().out
    page = open(out / "report.html", encoding="utf-8").read()
    assert len(page) < 1_500_000, len(page)  # the answer alone is 2 MB
    assert f"(cut: 900 of {len(huge):,} characters shown)" in page
    assert "(cut: 4942 more marks not shown)" in page  # the count, 5000 boxes, the missed truth: 60 shown
    assert "<h2>Samples</h2>" in page and f"id='sample-{count_id}'" in page
    assert len(re.findall(r"<div class='sample' id=", page)) == len(shown)


# ---------------------------------------------------------------------------------------------
# Baselines


def test_blind_reads_only_task_question_and_image_size(dataset):
    _, rows = dataset
    train = generated_table("train", n_images=120, n_boxes=260, seed=2, with_known=False).to_pylist()
    for use_box in (False, True):
        blind = BlindPrior(use_question_box=use_box).fit(train)
        again = BlindPrior.from_dict(json.loads(json.dumps(blind.to_dict())))
        for r in rows[:300]:
            redacted = {k: r[k] for k in ("task", "question", "width", "height")}
            p = blind.predict(redacted)
            assert p == blind.predict(r) == again.predict(redacted)
            assert parse_answer(r["task"], p, get_box_format("canonical"), r["width"], r["height"])["status"] == "ok"


def test_blind_uses_training_priors():
    rows = [{"task": "classify", "gt_categories": ["car"]}] * 3 + [{"task": "classify", "gt_categories": ["ship"]}]
    rows += [{"task": "count", "gt_categories": ["tank"] * 4, "gt_count": 4, "gt_boxes": [[0, 0, 10, 10]] * 4,
              "gt_cells": ["top left"] * 4, "width": 100, "height": 100}]
    blind = BlindPrior().fit(rows)
    assert blind.predict({"task": "classify", "question": "?", "width": 10, "height": 10}) == "The image contains car."
    p = blind.predict({"task": "count", "question": "[count] How many tanks are there?", "width": 300, "height": 300})
    assert p.startswith("There are 4 instances. {<")
    assert p.count("{<") == 4
