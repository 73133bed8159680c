"""OUT/README.md, the Hugging Face dataset card: `load_dataset(OUT)` gives the Parquet rows with every
column (not the swift files), per split; the card's counts and file lists come from the manifest."""
import json
import os

import pytest

from sarchat.transforms.generate.dataset_card import render_card
from sarchat.transforms.schema import DIALOGUE_SCHEMA
from tests.helpers import generated_dataset


def _manifest(out):
    with open(os.path.join(out, "manifest.json")) as f:
        return json.load(f)


def test_card_lists_exactly_the_manifest_files(tmp_path):
    out = generated_dataset(tmp_path)
    manifest = _manifest(out)
    card = render_card(manifest)
    front = card.split("---")[1]
    listed = [line.strip()[2:].strip('"') for line in front.splitlines() if line.strip().startswith('- "')]
    expected = sorted(f["path"] for f in manifest["files"] if f["path"].startswith("parquet/"))
    assert sorted(listed) == expected
    assert "config_name: default" in front and "default: true" in front
    assert ('load_dataset("json", data_files={"train": "path/to/this/folder/swift/train/*.jsonl", '
            '"test": "path/to/this/folder/swift/test/*.jsonl"})') in card
    for field in DIALOGUE_SCHEMA.names:
        assert f"| `{field}` |" in card
    test = manifest["counts"]["test"]
    assert f"| test | {test['images']} | {test['boxes']} | {test['dialogues']} |" in card


def test_generate_writes_the_card(tmp_path):
    out = generated_dataset(tmp_path)
    with open(os.path.join(out, "README.md"), encoding="utf-8") as f:
        assert f.read() == render_card(_manifest(out))
    assert any(f["path"] == "README.md" for f in _manifest(out)["files"])


def test_load_dataset_returns_the_parquet_rows_with_every_column(tmp_path):
    datasets = pytest.importorskip("datasets")
    out = generated_dataset(tmp_path)
    ds = datasets.load_dataset(out)
    manifest = _manifest(out)
    assert set(ds) == {"train", "test"}
    for split in ("train", "test"):
        assert ds[split].column_names == DIALOGUE_SCHEMA.names
        assert ds[split].num_rows == manifest["counts"][split]["dialogues"]
    # the card's own line for the swift files
    swift = datasets.load_dataset("json", data_files={s: os.path.join(out, "swift", s, "*.jsonl") for s in ("train", "test")})
    assert set(swift["test"].column_names) == {"messages", "images"}
    assert swift["test"].num_rows == manifest["counts"]["test"]["dialogues"]


# ---- load_dataset(OUT) always reads the current files (issue 22, point 1) --------------------

def _synth(folder, images, seed):
    from sarchat.beam_pipelines import synth
    assert synth.run(["--output", folder, "--images", str(images), "--seed", str(seed), "--quiet"]) in (0, None)
    return folder


def _generate(data, out, formats):
    from sarchat.beam_pipelines import generate
    assert generate.run(["--input", data, "--output", out, "--formats", formats, "--no-progress"]) in (0, None)
    return _manifest(out)


def _on_disk(out, manifest, kind):
    """{split: sorted row keys} of the files generate wrote, read without `datasets`."""
    import pyarrow.parquet as pq
    rows = {}
    for f in manifest["files"]:
        path = f["path"]
        if kind == "parquet" and path.startswith("parquet/"):
            rows.setdefault(path.split("/")[1], []).extend(pq.read_table(os.path.join(out, path)).column("id").to_pylist())
        elif kind == "swift" and path.startswith("swift/"):
            with open(os.path.join(out, path), encoding="utf-8") as fh:
                rows.setdefault(path.split("/")[1], []).extend(json.dumps(json.loads(line)["messages"]) for line in fh)
        elif kind == "authors" and path.startswith("authors/"):
            with open(os.path.join(out, path), encoding="utf-8") as fh:
                split = path[:-len(".json")].rsplit("_", 1)[-1]
                rows.setdefault(split, []).extend(json.dumps(r["messages"]) for r in json.load(fh))
    return {split: sorted(v) for split, v in rows.items()}


def _loaded(datasets, out, cache, kind):
    ds = datasets.load_dataset(out, cache_dir=cache)
    key = (lambda r: r["id"]) if kind == "parquet" else (lambda r: json.dumps(r["messages"]))
    return {split: sorted(key(r) for r in ds[split]) for split in ds}


@pytest.mark.parametrize("formats,kind", [
    ("parquet,tfrecord,swift", "parquet"), ("swift", "swift"),
    ("authors", "authors"), ("tfrecord,authors", "authors")])
def test_load_dataset_reads_the_current_files_of_same_named_folders_and_regenerations(tmp_path, formats, kind):
    """Two folders named `out` with other data, then `out` regenerated in place from other data: each
    load_dataset(out), through one private cache, returns exactly the rows on disk now."""
    datasets = pytest.importorskip("datasets")
    cache = str(tmp_path / "hf-cache")
    data1 = _synth(str(tmp_path / "data1"), 6, 1)
    data2 = _synth(str(tmp_path / "data2"), 9, 2)
    out_a, out_b = str(tmp_path / "a" / "out"), str(tmp_path / "b" / "out")
    m_a = _generate(data1, out_a, formats)
    m_b = _generate(data2, out_b, formats)
    seen_a = _loaded(datasets, out_a, cache, kind)
    assert seen_a == _on_disk(out_a, m_a, kind) and seen_a
    seen_b = _loaded(datasets, out_b, cache, kind)
    assert seen_b == _on_disk(out_b, m_b, kind)
    assert seen_b != seen_a
    m_a2 = _generate(data2, out_a, formats)  # regenerate a/out in place from the other data
    assert _loaded(datasets, out_a, cache, kind) == _on_disk(out_a, m_a2, kind) == seen_b
    card = open(os.path.join(out_a, "README.md"), encoding="utf-8").read()
    what = {"parquet": "Parquet rows", "swift": "ms-swift rows", "authors": "the SARChat authors' rows"}[kind]
    assert f"# {what}" in card
    if kind != "parquet":
        assert "Parquet" not in card


def test_tfrecord_only_card_says_load_dataset_cannot_read_it_and_shows_what_works(tmp_path):
    datasets = pytest.importorskip("datasets")
    data = _synth(str(tmp_path / "data"), 6, 1)
    out = str(tmp_path / "out")
    manifest = _generate(data, out, "tfrecord")
    card = open(os.path.join(out, "README.md"), encoding="utf-8").read()
    assert "cannot read" in card and "tf.data.TFRecordDataset" in card and "Parquet rows" not in card
    # load_dataset fails naming the TFRecord files; it never reads manifest.json or rejects/ as data
    with pytest.raises(Exception) as err:
        datasets.load_dataset(out, cache_dir=str(tmp_path / "hf-cache"))
    assert ".tfrecord" in str(err.value)
    # what the card shows does read every row
    code = card.split("```python\n", 1)[1].split("```", 1)[0].replace("path/to/this/folder", out)
    tf = pytest.importorskip("tensorflow")
    scope = {}
    exec(code, scope)
    assert sum(1 for _ in scope["ds"]) == manifest["counts"]["test"]["dialogues"]
    del tf
