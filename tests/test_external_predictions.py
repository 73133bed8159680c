"""Predictions of other tools read by `sarchat score`: lmms-eval samples logs, VLMEvalKit tables."""
import csv
import json
import os
import sys

import pyarrow.parquet as pq
import pytest

from tests import cli_process
from sarchat.transforms.errors import InputError
from sarchat.transforms.score import external_predictions as X
from sarchat.transforms.score import prediction_files as pf
from tests.helpers import generated_dataset


def lmms_record(doc_id, sid, response, task="classify", with_doc=False):
    """A samples-log line as lmms-eval 0.7 writes it (no `doc`; our metric records carry the id)."""
    record = {"doc_id": doc_id, "target": "t", "filtered_resps": response, "input": "q",
              f"{task}.score": {"id": sid, "task": task, "subset": None, "status": "ok", "scores": {}}}
    if with_doc:  # lmms-eval versions that keep the document
        record = {"doc_id": doc_id, "doc": {"id": sid}, "filtered_resps": [response]}
    return record


def write_jsonl(path, records):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return str(path)


# ---- lmms-eval -------------------------------------------------------------------------------------

def test_lmms_eval_records_become_prediction_rows(tmp_path):
    path = write_jsonl(tmp_path / "logs" / "org__model" / "20261202_010203_samples_sarchat_classify.jsonl", [
        lmms_record(0, "a1", "  It is ship.\n"), "not json", lmms_record(1, "b2", ["There is 1 instance."], with_doc=True)])
    rows = list(pf._rows(path))
    assert rows == [(0, {"id": "a1", "prediction": "It is ship.", "model": "org__model"}), (1, None),
                    (2, {"id": "b2", "prediction": "There is 1 instance.", "model": "org__model"})]
    # every task log of one lmms-eval run is one source; the model is lmms-eval's folder
    assert pf._source_of(path) == str(tmp_path / "logs" / "org__model" / "20261202_010203")
    info = pf.scan_prediction_file(path)
    assert (info.models, info.rows, info.malformed, info.dataset_version) == (("org__model",), 2, 1, None)


def test_our_own_jsonl_is_left_as_it_is(tmp_path):
    path = write_jsonl(tmp_path / "preds.jsonl", [{"id": "a", "prediction": "x", "model": "m"}])
    assert list(pf._rows(path)) == [(0, {"id": "a", "prediction": "x", "model": "m"})]
    assert pf._source_of(path) == path


@pytest.mark.parametrize("bad, message", [
    ({"doc_id": 3, "filtered_resps": "x", "acc": 1.0}, r"line 2 \(doc_id 3\) carries no SARChat-Bench sample id"),
    ({"doc_id": 3, "doc": {"id": "z"}}, r"line 2 \(doc.id z\) has no filtered_resps"),
    ({"id": "z", "prediction": "x"}, r"line 2 is not an lmms-eval sample record"),
])
def test_a_bad_lmms_eval_record_names_the_file_and_line(tmp_path, bad, message):
    path = write_jsonl(tmp_path / "m" / "20261202_samples_sarchat_count.jsonl", [lmms_record(0, "a", "x"), bad])
    with pytest.raises(InputError, match=f"^{path}: " + message):
        pf.scan_prediction_file(path)


# ---- VLMEvalKit ------------------------------------------------------------------------------------

def write_table(path, header, rows, delimiter="\t"):
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)
    return str(path)


def test_vlmevalkit_tables(tmp_path):
    tsv = write_table(tmp_path / "Qwen2-VL-7B_SARChat.tsv", ["index", "question", "prediction"],
                      [["a1", "q?", "It is ship."], ["", "q", "orphan"], ["", "", ""], ["b2", "q", ""]])
    assert list(pf._rows(tsv)) == [
        (0, {"id": "a1", "prediction": "It is ship.", "model": "Qwen2-VL-7B_SARChat"}),
        (1, {"id": None, "prediction": "orphan", "model": "Qwen2-VL-7B_SARChat"}),   # rejected as missing_id
        (3, {"id": "b2", "prediction": "", "model": "Qwen2-VL-7B_SARChat"})]
    csv_path = write_table(tmp_path / "preds.csv", ["\ufeffindex", "prediction", "model"], [["7", "x", "m"]], ",")
    assert list(pf._rows(csv_path)) == [(0, {"id": "7", "prediction": "x", "model": "m"})]
    assert pf._source_of(tsv) == tsv and pf.scan_prediction_file(tsv).models == ("Qwen2-VL-7B_SARChat",)
    no_pred = write_table(tmp_path / "bad.tsv", ["index", "answer"], [["a", "b"]])
    with pytest.raises(InputError, match=r"bad.tsv has no 'prediction' column .*found index, answer"):
        pf.scan_prediction_file(no_pred)


def test_xlsx_needs_openpyxl(tmp_path, monkeypatch):
    path = tmp_path / "m_SARChat.xlsx"
    try:
        import openpyxl
    except ImportError:
        path.write_bytes(b"PK\x03\x04 not really")
        with pytest.raises(InputError, match=r"m_SARChat.xlsx: reading .xlsx tables needs openpyxl"):
            list(X.table_rows(str(path)))
        return
    book = openpyxl.Workbook()
    book.active.append(["index", "prediction"])
    book.active.append([12, "It is ship."])   # spreadsheets store integer-looking ids as numbers
    book.save(path)
    assert list(X.table_rows(str(path))) == [(0, {"id": "12", "prediction": "It is ship.", "model": "m_SARChat"})]
    monkeypatch.setitem(sys.modules, "openpyxl", None)
    with pytest.raises(InputError, match="needs openpyxl"):
        list(X.table_rows(str(path)))


# ---- through `sarchat score` ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("external")
    out = generated_dataset(root, images=16, seed="ext", extra=("--splits", "test", "--formats", "parquet"))
    rows = pq.read_table(os.path.join(out, "parquet", "test")).to_pylist()
    return out, sorted(rows, key=lambda r: r["id"])


def test_score_reads_both_kinds_with_the_version_unknown(dataset, tmp_path):
    out, rows = dataset
    keep = rows[:-2]    # two samples without a prediction: missing
    (tmp_path / "vlm").mkdir()
    tsv = write_table(tmp_path / "vlm" / "Oracle_SARChat.tsv", ["index", "prediction"], [[r["id"], r["answer"]] for r in keep])
    logs = tmp_path / "lmms" / "tiny__oracle"
    paths = []
    for task in sorted({r["task"] for r in rows}):
        paths.append(write_jsonl(logs / f"20261202_000000_samples_sarchat_{task}.jsonl",
                                 [lmms_record(i, r["id"], r["answer"], task) for i, r in enumerate(rows) if r["task"] == task]))
    proc = cli_process.run_sarchat(["score", "--dataset", out, "--predictions", tsv, *paths, "--output",
                                    str(tmp_path / "scores"), "--bootstrap", "0", "--samples", "0", "--plots", "none"],
                                   timeout=600)
    assert proc.returncode == 0, proc.stderr
    lmms = json.load(open(tmp_path / "scores" / "tiny__oracle" / "metrics.json"))
    vlm = json.load(open(tmp_path / "scores" / "Oracle_SARChat" / "metrics.json"))
    assert lmms["missing_predictions"] == 0 and lmms["overall"] == 100.0   # reference answers: 100
    assert vlm["missing_predictions"] == 2 and vlm["overall"] < 100.0
    assert lmms["predictions_dataset_version"] is None and vlm["predictions_dataset_version"] is None
    report = open(tmp_path / "scores" / "report.md").read()
    assert "tiny__oracle: dataset version" in report and "record no version" in report


def test_two_lmms_eval_runs_of_one_model_are_refused(dataset, tmp_path, capsys):
    from sarchat.beam_pipelines import cli

    out, rows = dataset
    logs = tmp_path / "lmms" / "m"
    a = write_jsonl(logs / "20261201_000000_samples_sarchat_classify.jsonl", [lmms_record(0, rows[0]["id"], "x")])
    b = write_jsonl(logs / "20261202_000000_samples_sarchat_classify.jsonl", [lmms_record(0, rows[0]["id"], "y")])
    assert cli.main(["score", "--dataset", out, "--predictions", a, b, "--output", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model 'm' is in two prediction sources" in err
