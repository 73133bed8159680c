"""`sarchat export vlmevalkit`: the custom-dataset table VLMEvalKit reads, and its prediction
table read back by `sarchat score` (without VLMEvalKit itself; tests/test_real_vlmeval.py runs the
real one). VLMEvalKit's side is imitated where it matters: the table is read with
pandas.read_csv(sep='\\t') as vlmeval.smp.load does, short `image` cells are references to another
row's index as ImageBaseDataset resolves them, and the prediction table is the dataset's columns
less `image` plus `prediction`, written as vlmeval.smp.dump writes a .tsv (every field quoted),
named `<model>_<dataset>.tsv`.
"""
import base64
import csv
import io
import json
import os

import pyarrow.parquet as pq
import pytest

from sarchat.transforms.adapters import get_adapter
from tests import cli_process
from tests.helpers import generated_dataset

pd = pytest.importorskip("pandas")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def sarchat(*args):
    return cli_process.run_sarchat(args, env=_env(), timeout=600)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("export_vlmeval")
    return generated_dataset(root, images=24, seed="vlmeval", extra=("--splits", "test", "--formats", "parquet"))


def split_rows(dataset):
    return pq.read_table(os.path.join(dataset, "parquet", "test")).to_pylist()


def export(dataset, out, *extra):
    proc = sarchat("export", "vlmevalkit", "--dataset", dataset, "--output", str(out), *extra)
    assert proc.returncode == 0, proc.stderr
    return str(out)


def vlmeval_table(path):
    """The table as VLMEvalKit's ImageBaseDataset holds it: image references resolved."""
    data = pd.read_csv(path, sep="\t")
    data["index"] = [str(x) for x in data["index"]]
    images = dict(zip(data["index"], [str(x) for x in data["image"]]))
    for k, v in list(images.items()):
        if len(v) <= 64:
            assert v in images and len(images[v]) > 64, (k, v)
            images[k] = images[v]
    data["image"] = [images[k] for k in data["index"]]
    return data


def write_prediction_table(data, path, respond):
    """A prediction table as VLMEvalKit's infer_data_job writes it with PRED_FORMAT=tsv."""
    out = data.drop(columns=["image"]).copy()
    out["prediction"] = [respond(row) for row in out.to_dict("records")]
    out.to_csv(path, sep="\t", index=False, encoding="utf-8", quoting=csv.QUOTE_ALL)
    return str(path)


def test_the_table_is_the_test_split_with_the_adapters_questions_and_images(dataset, tmp_path):
    from PIL import Image

    folder = export(dataset, tmp_path / "vlm", "--adapter", "qwen2.5-vl", "--name", "SARChat_test")
    assert sorted(n for n in os.listdir(folder) if n != ".sarchat-owner.json") == ["README.md", "SARChat_test.tsv", "sarchat_export.json"]
    data = vlmeval_table(os.path.join(folder, "SARChat_test.tsv"))
    rows = {r["id"]: r for r in split_rows(dataset)}
    assert sorted(data["index"]) == sorted(rows) and len(rows) > 20
    assert list(data.columns) == ["index", "image", "question", "answer", "task", "subset", "template_id",
                                  "sarchat_dataset"]
    adapter = get_adapter("qwen2.5-vl")
    shared = 0
    for rec in data.to_dict("records"):
        row = rows[rec["index"]]
        assert rec["question"] == adapter.user_text(row)
        assert rec["answer"] == row["answer"] and rec["task"] == row["task"] and rec["template_id"] == row["template_id"]
        assert rec["sarchat_dataset"] == "SARChat_test"
        with Image.open(io.BytesIO(base64.b64decode(rec["image"]))) as img:
            assert img.mode == "RGB"
            # Qwen2.5-VL's images are padded right/bottom to multiples of 28 (adapters.pad_to_multiple)
            assert img.size == (-(-row["width"] // 28) * 28, -(-row["height"] // 28) * 28)
    raw = pd.read_csv(os.path.join(folder, "SARChat_test.tsv"), sep="\t")
    shared = sum(len(str(x)) <= 64 for x in raw["image"])
    assert shared > 0 and raw["image"].map(lambda x: len(str(x)) > 64).sum() == len({r["image_path"] for r in rows.values()})
    manifest = json.load(open(os.path.join(folder, "sarchat_export.json")))
    assert manifest["rows"] == len(rows) and manifest["adapter"] == "qwen2.5-vl" and manifest["name"] == "SARChat_test"
    readme = open(os.path.join(folder, "README.md")).read()
    assert "run.py --data SARChat_test" in readme and "--adapter qwen2.5-vl" in readme


def test_the_prediction_table_scores_as_the_same_answers_given_as_jsonl(dataset, tmp_path):
    """Mixed answers (right, wrong, half) in VLMEvalKit's prediction table (.tsv and PRED_FORMAT=json's
    .json) and in a plain JSONL file: the same metrics, and the model is named after the table
    (`<model>_<dataset>.tsv`)."""
    folder = export(dataset, tmp_path / "vlm", "--adapter", "sarchat")
    data = vlmeval_table(os.path.join(folder, "SARChatBench.tsv"))

    def respond(row):
        k = int(row["index"][-2:], 16) % 3
        return row["answer"] if k == 0 else ("I cannot tell." if k == 1 else row["answer"][: len(row["answer"]) // 2])

    table = write_prediction_table(data, tmp_path / "tiny-vlm_SARChatBench.tsv", respond)
    # PRED_FORMAT=json: vlmeval.smp.dump writes the frame as one JSON array of row objects
    as_json = data.drop(columns=["image"]).copy()
    as_json["prediction"] = [respond(row) for row in as_json.to_dict("records")]
    with open(tmp_path / "tiny-json_SARChatBench.json", "w") as fh:
        json.dump(as_json.to_dict("records"), fh, indent=4, ensure_ascii=False)
    with open(tmp_path / "same.jsonl", "w") as fh:
        for row in data.to_dict("records"):
            fh.write(json.dumps({"id": row["index"], "prediction": respond(row), "model": "same"}) + "\n")
    proc = sarchat("score", "--dataset", dataset, "--predictions", table, str(tmp_path / "tiny-json_SARChatBench.json"),
                   str(tmp_path / "same.jsonl"), "--output", str(tmp_path / "scores"), "--bootstrap", "0", "--samples", "0",
                   "--plots", "none")
    assert proc.returncode == 0, proc.stderr
    same = json.load(open(tmp_path / "scores" / "same" / "metrics.json"))
    for model in ("tiny-vlm", "tiny-json"):
        got = json.load(open(tmp_path / "scores" / model / "metrics.json"))
        assert got["missing_predictions"] == 0 and got["predictions_dataset_version"] is None
        assert 0 < got["overall"] < 100
        for key in ("columns", "tasks", "overall", "overall_macro", "n", "parse_failures", "template_spread"):
            assert got[key] == same[key], (model, key)


def test_a_rerun_replaces_its_own_files_and_never_a_foreign_one(dataset, tmp_path):
    export(dataset, tmp_path / "vlm")
    (tmp_path / "vlm" / "notes.txt").write_text("mine")
    export(dataset, tmp_path / "vlm", "--name", "Other")
    assert sorted(n for n in os.listdir(tmp_path / "vlm") if n != ".sarchat-owner.json") == ["Other.tsv", "README.md", "notes.txt", "sarchat_export.json"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "SARChatBench.tsv").write_text("someone's")
    proc = sarchat("export", "vlmevalkit", "--dataset", dataset, "--output", str(tmp_path / "other"))
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "was not written by `sarchat export` (it holds SARChatBench.tsv)" in proc.stderr  # ownership.claim
    assert (tmp_path / "other" / "SARChatBench.tsv").read_text() == "someone's"


@pytest.mark.parametrize("args, code, message", [
    (["--name", "bad name"], 2, "--name 'bad name': a VLMEvalKit dataset name"),
    (["--name", "SARVideo"], 2, "contains 'video'"),
    (["--adapter", "gpt-9"], 2, "unknown adapter 'gpt-9'"),
    (["--split", "train"], 1, "lists no parquet/train/"),
    (["--image-root", "NOWHERE"], 2, "--image-root NOWHERE: no such folder"),
])
def test_bad_invocations_are_one_line(dataset, tmp_path, capsys, args, code, message):
    from sarchat.beam_pipelines import cli

    args = [a.replace("NOWHERE", str(tmp_path / "nowhere")) for a in args]
    message = message.replace("NOWHERE", str(tmp_path / "nowhere"))
    assert cli.main(["export", "vlmevalkit", "--dataset", dataset, "--output", str(tmp_path / "out"), *args]) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("sarchat export: error: ") and message in err, err
    assert not os.path.exists(tmp_path / "out")


def test_a_missing_image_is_one_line_and_leaves_no_table(dataset, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    proc = sarchat("export", "vlmevalkit", "--dataset", dataset, "--output", str(tmp_path / "out"),
                   "--image-root", str(images))
    assert proc.returncode != 0 and proc.stderr.count("\n") == 1 and "cannot read its image" in proc.stderr, proc.stderr
    assert not os.path.exists(tmp_path / "out" / "SARChatBench.tsv")
    assert not os.path.exists(tmp_path / "out" / "SARChatBench.tsv.partial")


def test_vlmevalkit_table_names_and_json_tables(tmp_path):
    from sarchat.transforms.score import external_predictions as E

    assert E.table_model("Qwen2-VL-7B-Instruct_SARChatBench", "SARChatBench") == "Qwen2-VL-7B-Instruct"
    assert E.table_model("my_model_SARChat_test", "SARChat_test") == "my_model"
    assert E.table_model("SARChatBench", "SARChatBench") == "SARChatBench"     # nothing left: the whole stem
    assert E.table_model("model_Other", "SARChatBench") == "model_Other"       # another dataset's table
    assert E.table_model("model_SARChatBench", None) == "model_SARChatBench"   # no sarchat_dataset column
    (tmp_path / "a.json").write_text('\ufeff [{"index": "x1", "prediction": "ship", "sarchat_dataset": "D"}]')
    (tmp_path / "b.json").write_text('{"id": "x1", "prediction": "ship"}\n')
    assert E.is_json_table(str(tmp_path / "a.json")) and not E.is_json_table(str(tmp_path / "b.json"))
    assert list(E.table_rows(str(tmp_path / "a.json"))) == [(0, {"id": "x1", "prediction": "ship", "model": "a"})]
    (tmp_path / "m_D.json").write_text('[{"index": 7.0, "prediction": null, "sarchat_dataset": "D"}, {"index": "y", "sarchat_dataset": "D"}]')
    rows = list(E.table_rows(str(tmp_path / "m_D.json")))
    assert rows == [(0, {"id": "7", "prediction": "", "model": "m"}), (1, {"id": "y", "prediction": "", "model": "m"})]
    (tmp_path / "bad.json").write_text('[1, 2]')
    with pytest.raises(E.InputError, match="not a JSON array of row objects"):
        list(E.table_rows(str(tmp_path / "bad.json")))
