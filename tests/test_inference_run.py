"""`sarchat infer` end to end on CPU backends: store, resume, sharding, merge, manifest."""
import json
import os
import shutil

import pyarrow.parquet as pq
import pytest

from sarchat.beam_pipelines import cli
from sarchat.inference import store
from sarchat.inference.config import parse_tasks
from sarchat.inference.dataset import load_rows, shard_of
from sarchat.inference.run import run
from tests.fixture_dataset import write_fixture_dataset
from sarchat.transforms.errors import OutputError, UsageError
from sarchat.transforms.schema import PREDICTION_SCHEMA


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("rundata")
    generated, image_root, rows = write_fixture_dataset(str(root), n_images=6, seed=11)
    return generated, image_root, rows["test"]


def _preds(out):
    return pq.read_table(os.path.join(out, "predictions.parquet")).to_pylist()


def test_cfar_end_to_end_and_rerun_skips(dataset, tmp_path):
    generated, _, rows = dataset
    out = str(tmp_path / "cfar")
    assert run(["--dataset", generated, "--backend", "cfar", "--output", out, "--no-progress"]) == 0
    table = pq.read_table(os.path.join(out, "predictions.parquet"))
    assert table.schema.equals(PREDICTION_SCHEMA)
    preds = table.to_pylist()
    assert [p["id"] for p in preds] == sorted(r["id"] for r in rows)
    assert not any(p["error"] for p in preds) and all(p["model"] == "cfar" for p in preds)
    by_id = {r["id"]: r for r in rows}
    for p in preds:
        task = by_id[p["id"]]["task"]
        if task == "count":
            assert p["prediction"].startswith(("There are ", "There is 1 instance."))
        if task == "grounding":
            assert p["prediction"].startswith("In this SAR image, I can identify several objects")
    with open(os.path.join(out, "predictions.jsonl")) as fh:
        assert len(fh.readlines()) == len(rows)
    manifest = json.loads(open(os.path.join(out, "manifest.json")).read())
    for key in ("model", "adapter", "backend", "sampling", "versions", "started_at", "finished_at",
                "run_key", "shards", "predictions"):
        assert key in manifest
    assert manifest["shards"][0]["counts"]["done"] == len(rows)
    # the dataset version, in the run manifest and in the Parquet file's key-value metadata
    version = json.loads(open(os.path.join(generated, "manifest.json")).read())["dataset_version"]
    assert version and manifest["dataset_version"] == version
    assert table.schema.metadata[store.DATASET_VERSION_KEY.encode()] == version.encode()
    before = open(os.path.join(out, "predictions.parquet"), "rb").read()
    part = store.part_files(out, manifest["run_key"])[0]
    lines_before = open(part).read().count("\n")
    shard_before = manifest["shards"][0]

    assert run(["--dataset", generated, "--backend", "cfar", "--output", out, "--no-progress"]) == 0
    manifest = json.loads(open(os.path.join(out, "manifest.json")).read())
    # nothing to do: the shard keeps the figures of the run that did the work, the history says we looked
    assert manifest["shards"][0] == shard_before and shard_before["throughput_sps"]
    history = open(os.path.join(out, "runs", manifest["run_key"], "history.jsonl")).read().splitlines()
    assert [json.loads(h)["counts"]["skipped"] for h in history] == [0, len(rows)]
    assert open(part).read().count("\n") == lines_before
    assert open(os.path.join(out, "predictions.parquet"), "rb").read() == before


def test_selection_tasks_limit(dataset, tmp_path):
    generated, _, rows = dataset
    out = str(tmp_path / "sel")
    run(["--dataset", generated, "--backend", "cfar", "--output", out, "--no-progress",
         "--tasks", "count", "refer_single", "--limit", "5"])
    wanted = [r for r in sorted(rows, key=lambda r: r["id"])
              if r["task"] == "count" or (r["task"] == "refer" and r["subset"] == "single")]
    got = _preds(out)
    assert len(got) == 5
    assert {p["id"] for p in got} <= {r["id"] for r in wanted}
    assert parse_tasks(["count,refer_single"]) == {("count", None), ("refer", "single")}
    with pytest.raises(UsageError, match="--tasks: unknown task 'counting'"):
        parse_tasks("counting")
    with pytest.raises(UsageError, match="'classify_single' selects nothing: classify has no subsets"):
        parse_tasks("classify_single")


def test_shards_partition_and_merge(dataset, tmp_path):
    generated, _, rows = dataset
    out = str(tmp_path / "sharded")
    common = ["--dataset", generated, "--backend", "cfar", "--output", out, "--no-progress", "--num-shards", "3"]
    seen = []
    for i in range(3):
        part = load_rows(generated, "test", num_shards=3, shard_index=i)
        assert all(shard_of(r["id"], 3) == i for r in part)
        seen.extend(r["id"] for r in part)
        run(common + ["--shard-index", str(i), "--no-merge"])
    assert sorted(seen) == sorted(r["id"] for r in rows)
    assert not os.path.exists(os.path.join(out, "predictions.parquet"))
    run(common + ["--merge-only"])
    preds = _preds(out)
    assert [p["id"] for p in preds] == sorted(r["id"] for r in rows)
    manifest = json.loads(open(os.path.join(out, "manifest.json")).read())
    assert sorted(s["shard_index"] for s in manifest["shards"]) == [0, 1, 2]
    # a later single-shard rerun with the same settings finds everything done
    run(["--dataset", generated, "--backend", "cfar", "--output", out, "--no-progress"])
    assert len(_preds(out)) == len(rows)


def test_spawn_shards(dataset, tmp_path):
    generated, _, rows = dataset
    out = str(tmp_path / "spawned")
    assert run(["--dataset", generated, "--backend", "cfar", "--output", out, "--no-progress",
                "--num-shards", "2", "--spawn-shards", "--limit", "12"]) == 0
    preds = _preds(out)
    assert len(preds) == 12 and len({p["id"] for p in preds}) == 12


def test_missing_and_corrupt_images_recorded_then_retried(dataset, tmp_path, capsys):
    generated, image_root, rows = dataset
    images = tmp_path / "images"
    shutil.copytree(image_root, images)
    paths = sorted({r["image_path"] for r in rows})
    os.remove(images / paths[0])
    (images / paths[1]).write_bytes(b"garbage")
    out = str(tmp_path / "broken")
    argv = ["--dataset", generated, "--backend", "cfar", "--output", out, "--no-progress",
            "--image-root", str(images)]
    assert cli.main(["infer", *argv]) == 1  # samples without a prediction: a failed run, however many succeeded
    preds = {p["id"]: p for p in _preds(out)}
    bad = {r["id"] for r in rows if r["image_path"] in paths[:2]}
    assert {i for i, p in preds.items() if p["error"]} == bad
    assert len(preds) == len(rows)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"sarchat infer: error: {len(bad)} of {len(rows)} selected samples have no prediction")
    first = sorted(bad, key=lambda i: (next(r["image_path"] for r in rows if r["id"] == i), i))[0]
    assert f"first errors: {first}: " in err and "rerun the same command to retry them" in err
    shutil.rmtree(images)
    shutil.copytree(image_root, images)
    assert cli.main(["infer", *argv]) == 0
    manifest = json.loads(open(os.path.join(out, "manifest.json")).read())
    counts = manifest["shards"][0]["counts"]
    assert counts["retried"] == len(bad) and counts["done"] == len(bad)
    assert not any(p["error"] for p in _preds(out))


def test_store_torn_tail_and_merge_rules(tmp_path):
    out = str(tmp_path)
    w = store.PartWriter(out, "k", 0, 1)
    w.append([store.make_record("b", None, "m", "boom", None, "k"),
              store.make_record("a", "first", "m", None, 0.1, "k")])
    w.close()
    with open(w.path, "ab") as fh:  # a killed writer's torn line
        fh.write(b'{"id": "c", "predic')
    assert [r["id"] for r in store.read_records(w.path)] == ["b", "a"]
    w = store.PartWriter(out, "k", 0, 1)
    w.append([store.make_record("c", "ok", "m", None, 0.1, "k"),
              store.make_record("a", "second", "m", None, 0.1, "k"),
              store.make_record("b", "", "m", "boom again", None, "k")])
    w.close()
    assert [r["id"] for r in store.read_records(w.path)] == ["b", "a", "c", "a", "b"]
    done, failed = store.scan(out, "k")
    assert done == {"a", "c"} and failed == {"b": "boom again"}
    rows = store.merged_rows(out, "k")
    assert [(r["id"], r["prediction"], r["error"]) for r in rows] == [
        ("a", "first", None), ("b", "", "boom again"), ("c", "ok", None)]
    # a second writer on the same part is refused while the first holds it
    w1 = store.PartWriter(out, "k", 0, 1)
    with pytest.raises(OutputError, match="another process is writing"):
        store.PartWriter(out, "k", 0, 1)
    w1.close()


def test_oracle_and_blind_backends(tmp_path):
    pytest.importorskip("sarchat.inference.baselines")
    generated, _, rows = write_fixture_dataset(str(tmp_path / "data"), n_images=4, seed=8, splits=("train", "test"))
    test_rows = {r["id"]: r for r in rows["test"]}
    out = str(tmp_path / "oracle")
    assert run(["--dataset", generated, "--backend", "oracle", "--output", out, "--no-progress"]) == 0
    preds = _preds(out)
    assert len(preds) == len(test_rows)
    assert all(p["prediction"] == test_rows[p["id"]]["answer"] and p["model"] == "oracle" for p in preds)
    out = str(tmp_path / "blind")
    # the image folder is not even needed: blind answers never read an image
    assert run(["--dataset", generated, "--backend", "blind", "--output", out, "--no-progress",
                "--image-root", str(tmp_path / "nowhere")]) == 0
    preds = _preds(out)
    assert len(preds) == len(test_rows) and not any(p["error"] for p in preds)
    manifest = json.loads(open(os.path.join(out, "manifest.json")).read())
    assert manifest["model_fingerprint"]["fit_split"] == "train" and manifest["adapter"] == "sarchat"


def _write_manifest(folder, files, **extra):
    with open(os.path.join(folder, "manifest.json"), "w") as fh:
        json.dump({"files": files, **extra}, fh)


def test_unusable_dataset_fails_with_one_clear_line(dataset, tmp_path, capsys):
    generated, _, _ = dataset
    unfinished = tmp_path / "unfinished"   # shards but no manifest: a half-written or foreign folder
    shutil.copytree(os.path.join(generated, "parquet"), unfinished / "parquet")
    broken = tmp_path / "broken"           # listed with the right size, but not Parquet
    (broken / "parquet" / "test").mkdir(parents=True)
    (broken / "parquet" / "test" / "dialogues-00000-of-00001.parquet").write_bytes(b"not parquet")
    _write_manifest(broken, [{"path": "parquet/test/dialogues-00000-of-00001.parquet", "bytes": 11}])
    resized = tmp_path / "resized"         # a shard that changed after generation
    shutil.copytree(generated, resized)
    shard = sorted((resized / "parquet" / "test").iterdir())[0]
    shard.write_bytes(shard.read_bytes() + b"x")
    cases = [
        (["--dataset", str(tmp_path / "nowhere")], 1, f"{tmp_path / 'nowhere'} has no manifest.json"),
        (["--dataset", str(unfinished)], 1, f"{unfinished} has no manifest.json"),
        (["--dataset", str(broken)], 1, f"cannot read {broken / 'parquet' / 'test'}"),
        (["--dataset", str(resized)], 1, f"{shard} has {shard.stat().st_size} bytes, manifest.json says"),
        (["--dataset", str(broken), "--backend", "oracle"], 1, "ArrowInvalid"),
        (["--dataset", generated, "--split", "val"], 1, "--split val: " + os.path.join(generated, "manifest.json")
         + " lists no parquet/val/ files (its splits: test)"),
        (["--dataset", generated, "--backend", "blind"], 1,
         "--fit-split train: " + os.path.join(generated, "manifest.json") + " lists no parquet/train/ files"),
        (["--dataset", generated, "--tasks", "count", "identify_single"], 2,
         "--tasks identify_single: selects no dialogue of split 'test'"),
    ]
    for argv, code, message in cases:
        argv = argv + (["--backend", "cfar"] if "--backend" not in argv else []) + [
            "--output", str(tmp_path / "out"), "--no-progress"]
        assert cli.main(["infer", *argv]) == code, argv
        err = capsys.readouterr().err
        assert err.startswith("sarchat infer: error: ") and err.count("\n") == 1, (argv, err)
        assert message in err and "Traceback" not in err, (argv, err)
    assert not os.path.exists(tmp_path / "out" / "store")  # nothing was started


def test_output_overlapping_the_dataset_is_refused(dataset, tmp_path, capsys):
    generated, _, _ = dataset
    before = {n: open(os.path.join(generated, n), "rb").read() for n in ("manifest.json",)}
    listing = sorted(os.listdir(generated))
    for output, where in ((generated, "is"), (os.path.join(generated, "runs"), "lies inside"),
                          (os.path.dirname(generated), "holds"), (generated + "/", "is")):
        assert cli.main(["infer", "--dataset", generated, "--backend", "cfar", "--output", output, "--no-progress"]) == 1
        err = capsys.readouterr().err
        assert err == f"sarchat infer: error: --output {output} {where} the dataset folder {generated}; " \
                      "write the run elsewhere\n"
    assert sorted(os.listdir(generated)) == listing
    assert {n: open(os.path.join(generated, n), "rb").read() for n in before} == before
    # a URL output's local work folder is checked too
    assert cli.main(["infer", "--dataset", generated, "--backend", "cfar", "--output", "memory://b/run", "--work-dir",
                os.path.join(generated, "work"), "--no-progress"]) == 1
    assert "--work-dir" in capsys.readouterr().err and not os.path.exists(os.path.join(generated, "work"))
