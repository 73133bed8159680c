"""What `sarchat score` checks before its job starts: the dataset's files from its manifest, every
prediction file scanned once, one source per model, dataset versions (docs/rules.md section 10). The pure
functions directly, then the command as a user runs it (a subprocess): one line, the exit code,
no traceback, nothing written."""
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests import cli_process
from sarchat.transforms import adapters
from sarchat.transforms.errors import DatasetError, InputError, UsageError
from sarchat.transforms.score import prediction_files as pf
from sarchat.transforms.score import score_inputs as si
from sarchat.transforms.score.box_format_choice import FormatChooser


def make_dataset(root, version="v1", ids=("a", "b", "c")):
    """A tiny generated-dataset folder: one test shard and a manifest listing it with its size."""
    shard = root / "parquet" / "test" / "dialogues-00000-of-00001.parquet"
    shard.parent.mkdir(parents=True)
    pq.write_table(pa.table({"id": list(ids), "split": ["test"] * len(ids), "task": ["classify"] * len(ids),
                             "subset": [None] * len(ids)}), str(shard))
    manifest = {"generator": "sarchat-bench", "config_hash": version,
                "files": [{"path": "parquet/test/dialogues-00000-of-00001.parquet", "bytes": shard.stat().st_size}]}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root, shard


def write_parquet(path, rows, metadata=None, schema=None):
    table = pa.Table.from_pylist(rows, schema=schema)
    if metadata:
        table = table.replace_schema_metadata(metadata)
    pq.write_table(table, str(path))
    return path


def write_jsonl(path, lines, bom=False):
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


ROWS = [{"id": "a", "prediction": "ship", "model": "m"}, {"id": "b", "prediction": "car", "model": "m"}]


# ---------------------------------------------------------------------------------------------
# Prediction files


def test_a_run_folder_means_its_predictions_parquet(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write_parquet(run / "predictions.parquet", ROWS)
    write_jsonl(run / "predictions.jsonl", ROWS)           # infer writes both; one is read
    (run / "manifest.json").write_text(json.dumps({"model": "m", "dataset_version": "v1"}))
    assert pf.expand_prediction_inputs([str(run)]) == [(str(run / "predictions.parquet"), str(run))]
    # a glob over the folder never takes its manifest.json for predictions
    got = [p for p, _ in pf.expand_prediction_inputs([str(run / "*")])]
    assert got == sorted([str(run / "predictions.jsonl"), str(run / "predictions.parquet")])
    with pytest.raises(InputError, match="a run manifest, not predictions"):
        pf.expand_prediction_inputs([str(run / "manifest.json")])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=f"--predictions {empty}: the folder has no predictions.parquet"):
        pf.expand_prediction_inputs([str(empty)])
    with pytest.raises(UsageError, match="no such file or folder"):
        pf.expand_prediction_inputs([str(tmp_path / "nope.parquet")])


def test_a_runinference_folder_means_its_part_files_one_source(tmp_path):
    run = tmp_path / "beamrun"
    (run / "predictions").mkdir(parents=True)
    for k in range(2):
        write_parquet(run / "predictions" / f"part-{k:05d}.parquet", [dict(ROWS[k])])
    (run / "manifest.json").write_text(json.dumps({"model": "m", "predictions": {"parquet_glob": "predictions/part-*.parquet"}}))
    found = pf.expand_prediction_inputs([str(run)])
    assert [os.path.basename(p) for p, _ in found] == ["part-00000.parquet", "part-00001.parquet"]
    scanned = [pf.scan_prediction_file(p, s) for p, s in found]
    pf.check_model_sources(scanned)  # parts of one run: one source, no clash
    # the part files named by a glob are still one run
    by_glob = pf.expand_prediction_inputs([str(run / "predictions" / "part-*.parquet")])
    assert {s for _, s in by_glob} == {str(run)}
    pf.check_model_sources([pf.scan_prediction_file(p, s) for p, s in by_glob])


def test_scan_counts_rows_models_malformed_lines_and_accepts_a_bom(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", ROWS[:1] + ["{oops", "[1]", "\xff not json"] + ROWS[1:], bom=True)
    f = pf.scan_prediction_file(str(path))
    assert (f.models, f.rows, f.malformed, f.dataset_version) == (("m",), 2, 3, None)
    assert pf.model_of_malformed(f) == "m"
    rows, bad = next(pf.iter_prediction_batches(str(path)))
    assert [r["id"] for r in rows] == ["a", "b"] and bad == [1, 2, 3]   # the BOM'd first line is a row
    # invalid UTF-8 is a malformed line, not text with replacement characters
    raw = tmp_path / "bin.jsonl"
    raw.write_bytes(json.dumps(ROWS[0]).encode() + b"\n" + b'{"id": "b", "prediction": "\xff", "model": "m"}\n')
    assert pf.scan_prediction_file(str(raw)).malformed == 1
    # rows without a model take the file's name; a file of two models sends malformed lines nowhere
    two = write_jsonl(tmp_path / "two.jsonl", [{"id": "a", "prediction": "x"}, ROWS[0], "{bad"])
    f = pf.scan_prediction_file(str(two))
    assert f.models == ("m", "two") and pf.model_of_malformed(f) is None


@pytest.mark.parametrize("name, content, message", [
    ("empty.jsonl", b"", "holds no prediction rows"),
    ("blank.jsonl", b"\n\n", "holds no prediction rows"),
    ("junk.jsonl", b"{x\n{y\n", r"holds no prediction rows \(2 malformed lines\)"),
    ("noid.jsonl", b'{"prediction": "x"}\n', "no row has 'id'"),
    ("nopred.jsonl", b'{"id": "a", "text": "x"}\n', "no row has 'prediction'"),
])
def test_unusable_jsonl_files_are_errors_naming_them(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as e:
        pf.scan_prediction_file(str(path))
    assert str(path) in str(e.value)


def test_unusable_parquet_files_are_errors_naming_them(tmp_path):
    nopred = write_parquet(tmp_path / "nopred.parquet", [{"id": "a", "answer": "x"}])
    with pytest.raises(InputError, match=f"{nopred} has no 'prediction' column"):
        pf.scan_prediction_file(str(nopred))
    empty = write_parquet(tmp_path / "empty.parquet", [], schema=pa.schema([("id", pa.string()),
                                                                           ("prediction", pa.string())]))
    with pytest.raises(InputError, match=f"{empty} holds no prediction rows"):
        pf.scan_prediction_file(str(empty))
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"PAR1 no")
    with pytest.raises(InputError, match=f"cannot read predictions file {junk}"):
        pf.scan_prediction_file(str(junk))


def test_the_dataset_version_a_file_records(tmp_path):
    meta = write_parquet(tmp_path / "meta.parquet", ROWS, {"sarchat.dataset_version": "v7"})
    assert pf.scan_prediction_file(str(meta)).dataset_version == "v7"
    run = tmp_path / "run"
    run.mkdir()
    write_parquet(run / "predictions.parquet", ROWS)
    (run / "manifest.json").write_text(json.dumps({"model": "m", "dataset_version": "v8"}))
    (path, source), = pf.expand_prediction_inputs([str(run)])
    assert pf.scan_prediction_file(path, source).dataset_version == "v8"
    # a dataset's manifest beside a file (no `model`) is not a run manifest
    (tmp_path / "manifest.json").write_text(json.dumps({"config_hash": "v9", "files": []}))
    plain = write_parquet(tmp_path / "plain.parquet", ROWS)
    assert pf.scan_prediction_file(str(plain)).dataset_version is None


def test_one_model_in_two_sources_is_an_error(tmp_path):
    a = pf.scan_prediction_file(str(write_parquet(tmp_path / "a.parquet", ROWS)))
    b = pf.scan_prediction_file(str(write_jsonl(tmp_path / "b.jsonl", ROWS)))
    with pytest.raises(InputError, match=r"model 'm' is in two prediction sources, .*a\.parquet and .*b\.jsonl"):
        pf.check_model_sources([a, b])


# ---------------------------------------------------------------------------------------------
# Dataset files, versions, formats


def test_the_test_files_come_from_the_manifest(tmp_path):
    root, shard = make_dataset(tmp_path / "ds")
    (shard.parent / "dialogues-00000-of-00003.parquet").write_bytes(shard.read_bytes())   # stale, unlisted
    files, manifest = si.test_split_files(str(root), "test")
    assert files == [str(shard)] and manifest["config_hash"] == "v1"
    with pytest.raises(DatasetError, match="lists no parquet/train/ files"):
        si.test_split_files(str(root), "train")
    with open(shard, "ab") as f:
        f.write(b"x")
    with pytest.raises(DatasetError, match="bytes, manifest.json says"):
        si.test_split_files(str(root), "test")
    (root / "manifest.json").unlink()
    with pytest.raises(DatasetError, match="has no manifest.json"):
        si.test_split_files(str(root), "test")
    # ad hoc: a Parquet file or glob of test rows, version unknown
    assert si.test_split_files(str(shard.parent / "*.parquet"), "test")[1] is None
    with pytest.raises(UsageError, match="no such folder"):
        si.test_split_files(str(tmp_path / "nowhere"), "test")


def test_predictions_of_another_version_are_refused_unless_allowed(tmp_path):
    same = pf.PredictionFile("s.parquet", "s.parquet", ("s",), 1, 0, "v1")
    other = pf.PredictionFile("o.parquet", "o.parquet", ("o",), 1, 0, "v0")
    unknown = pf.PredictionFile("u.jsonl", "u.jsonl", ("u",), 1, 0, None)
    with pytest.raises(InputError, match="o.parquet holds predictions made on dataset version v0, but DS is version v1"):
        si.provenance_of([same, other, unknown], "v1", dataset="DS")
    prov = si.provenance_of([same, other, unknown], "v1", allow_mismatch=True)
    assert prov == {"s": si.ModelProvenance("v1", False), "o": si.ModelProvenance("v0", True),
                    "u": si.ModelProvenance(None, False)}
    assert si.provenance_of([other], None) == {"o": si.ModelProvenance("v0", False)}  # ad-hoc dataset: no check


def test_auto_bucket_count_is_one_per_8192_prediction_rows_from_1_to_64():
    from sarchat.transforms.score.id_buckets import auto_bucket_count

    assert [auto_bucket_count(n) for n in (0, 1, 8192, 8193, 453_272, 524_288, 524_289, 10**9)] == \
        [1, 1, 1, 2, 56, 64, 64, 64]


def test_adapter_flags():
    chooser = FormatChooser.from_flags(["qwen2-vl", "b=internvl"], {"c": "json-bbox2d:1000"})
    assert [chooser.for_model(m).spec for m in ("a", "b", "c")] == ["qwen2-vl", "internvl", "qwen2-vl"]
    assert FormatChooser.from_flags(None, {"c": "json-bbox2d:1000"}).for_model("c").spec == "json-bbox2d:1000"
    # a model adapter's declared format (NAME:BOXSPEC too, which is not a bare box format spec)
    assert FormatChooser.from_flags(["qwen2.5-vl"]).for_model("x") == adapters.get_adapter("qwen2.5-vl").box_format
    assert FormatChooser.from_flags(["qwen2-vl:canonical"]).for_model("x").spec == "canonical"
    with pytest.raises(UsageError, match="--adapter: unknown adapter or box format 'nope'"):
        FormatChooser.from_flags(["nope"])


# ---------------------------------------------------------------------------------------------
# The command as a user runs it


def _case_files(tmp_path):
    ds, shard = make_dataset(tmp_path / "ds")
    good = write_parquet(tmp_path / "good.parquet", ROWS)
    return ds, shard, good


def _cases():
    """(name, setup(tmp_path) -> argv after `score`, exit code, message fragment)."""
    def no_manifest(t):
        ds, _, good = _case_files(t)
        (ds / "manifest.json").unlink()
        return ["--dataset", str(ds), "--predictions", str(good)]

    def resized_shard(t):
        ds, shard, good = _case_files(t)
        with open(shard, "ab") as f:
            f.write(b"\0\0")
        return ["--dataset", str(ds), "--predictions", str(good)]

    def empty_folder(t):
        ds, _, _ = _case_files(t)
        (t / "run").mkdir()
        return ["--dataset", str(ds), "--predictions", str(t / "run")]

    def empty_file(t):
        ds, _, _ = _case_files(t)
        (t / "empty.jsonl").write_bytes(b"")
        return ["--dataset", str(ds), "--predictions", str(t / "empty.jsonl")]

    def all_malformed(t):
        ds, _, _ = _case_files(t)
        (t / "bad.jsonl").write_bytes(b"\xef\xbb\xbf{no\nnot json\n")
        return ["--dataset", str(ds), "--predictions", str(t / "bad.jsonl")]

    def no_prediction_column(t):
        ds, _, _ = _case_files(t)
        write_parquet(t / "ids.parquet", [{"id": "a", "model": "m"}])
        return ["--dataset", str(ds), "--predictions", str(t / "ids.parquet")]

    def same_model_twice(t):
        ds, _, good = _case_files(t)
        write_jsonl(t / "again.jsonl", ROWS)
        return ["--dataset", str(ds), "--predictions", str(good), str(t / "again.jsonl")]

    def other_version(t):
        ds, _, _ = _case_files(t)
        write_parquet(t / "old.parquet", ROWS, {"sarchat.dataset_version": "v0"})
        return ["--dataset", str(ds), "--predictions", str(t / "old.parquet")]

    def unknown_adapter(t):
        ds, _, good = _case_files(t)
        return ["--dataset", str(ds), "--predictions", str(good), "--adapter", "nope"]

    def negative_samples(t):
        ds, _, good = _case_files(t)
        return ["--dataset", str(ds), "--predictions", str(good), "--samples", "-1"]

    def bucket_word(t):
        ds, _, good = _case_files(t)
        return ["--dataset", str(ds), "--predictions", str(good), "--num-buckets", "many"]

    return [
        ("no_manifest", no_manifest, 1, "has no manifest.json: not a generated dataset"),
        ("resized_shard", resized_shard, 1, "bytes, manifest.json says"),
        ("empty_folder", empty_folder, 1, "the folder has no predictions.parquet"),
        ("empty_file", empty_file, 1, "empty.jsonl holds no prediction rows"),
        ("all_malformed", all_malformed, 1, "bad.jsonl holds no prediction rows (2 malformed lines)"),
        ("no_prediction_column", no_prediction_column, 1, "ids.parquet has no 'prediction' column"),
        ("same_model_twice", same_model_twice, 1, "model 'm' is in two prediction sources"),
        ("other_version", other_version, 1, "made on dataset version v0, but"),
        ("unknown_adapter", unknown_adapter, 2, "--adapter: unknown adapter or box format 'nope'"),
        ("negative_samples", negative_samples, 2, "argument --samples: expected a non-negative integer, got '-1'"),
        ("bucket_word", bucket_word, 2, "expected a positive integer or auto, got 'many'"),
    ]


@pytest.mark.parametrize("name, setup, code, message", _cases(), ids=[c[0] for c in _cases()])
def test_score_command_bad_input_is_one_line(tmp_path, name, setup, code, message):
    argv = setup(tmp_path) + ["--output", str(tmp_path / "out")]
    proc = cli_process.run_sarchat(["score", *argv], cwd=str(tmp_path), timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in lines if line.startswith("sarchat score: error: ")]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert not (tmp_path / "out").exists()
