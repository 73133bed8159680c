"""OUT/README.md, the Hugging Face dataset card: `load_dataset(OUT)` gives the Parquet rows with every
column (not the swift files), per split; the card's counts and file lists come from the manifest."""
import hashlib
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


@pytest.mark.parametrize("formats,kind", [  # (authors alone reads as with TFRecord files beside it)
    ("parquet,tfrecord,swift", "parquet"), ("swift", "swift"), ("tfrecord,authors", "authors")])
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


# ---- the card's exact text for every format combination (pinned before it moved to a template) -----

FORMATS = ("parquet", "tfrecord", "swift", "authors")


def _card_manifest(formats, i):
    """A manifest naming the files of `formats`; i varies the optional parts (image root, gzip,
    category map, inputs, a val split, a missing dataset_version)."""
    splits = ("train", "test", "val") if i % 5 == 4 else ("train", "test")
    gz = ".gz" if i % 3 == 1 else ""
    files = [{"path": "README.md", "bytes": 10}, {"path": "rejects/test.jsonl", "bytes": 0, "rows": 0}]
    for s in splits:
        shards = 2 if s == "train" else 1
        by_kind = {"parquet": [f"parquet/{s}/dialogues-{k:05d}-of-{shards:05d}.parquet" for k in range(shards)],
                   "tfrecord": [f"tfrecord/{s}/dialogues-{k:05d}-of-{shards:05d}.tfrecord{gz}" for k in range(shards)],
                   "swift": [f"swift/{s}/{t}.jsonl" for t in ("count", "classify", "refer_multi")],
                   "authors": [f"authors/SARChat_{t}_{s}.json" for t in ("total_task", "classify")]}
        for kind in formats:
            files += [{"path": p, "bytes": 100 + len(p), "rows": 7 * len(p)} for p in by_kind[kind]]
    counts = {s: {"images": 1000 * n + 3, "boxes": 2345 * n, "dialogues": 12345 * n,
                  "by_task": {"classify": {"all": 5 * n}, "grounding": {"single": 2, "multi": 1000 * n},
                              "identify": {"single": 14}}}
              for n, s in enumerate(splits, 1)}
    config = {"formats": list(formats), "seed": i, "identify_variants": 7, "splits": list(splits)}
    if i % 2 == 0:
        config["image_root"] = f"/data/sar {i}"
    if gz:
        config["tfrecord_compression"] = "gzip"
    if i % 4 == 3:
        config["category_map"] = {"boat": "ship", "plane": "aircraft"}
    manifest = {"generator": "sarchat-bench", "version": "0.3.0", "config_hash": f"c0ffee{i:02d}", "config": config,
                "counts": counts, "files": files[::-1] if i % 2 else files}
    if i % 6 != 5:
        manifest["dataset_version"] = f"dv{i:02d}"
    if i % 3 == 0:
        manifest["inputs"] = {s: {"path": f"/in/{s}.json", "sha256": "ab" * 4, "images": 3} for s in splits}
    return manifest


# every combination of formats, then two with gzip TFRecords, a val split and a category map
CARD_CASES = [(mask, tuple(f for k, f in enumerate(FORMATS) if mask >> k & 1)) for mask in range(16)]
CARD_CASES += [(16, ("tfrecord",)), (19, FORMATS)]
CARD_DIGESTS = {
    "0:none": "1c3b7f83e5b74cda661fab4175547e77b32f9126e4023a678b851f531ddfc6ca",
    "1:parquet": "5e754cca2b22f40e899edaba7468e8870e6c6266f82274e8f5829cf4746bf5fc",
    "2:tfrecord": "8d4f3a9d5cb52720becd65f273a49ff323fa7091a088bd36e4d5c2d2ed7e89ac",
    "3:parquet+tfrecord": "8507e7377abe61403a55007c405146570a758139bdb1dc4761d4bd13eb4207c6",
    "4:swift": "1f0ed4932bbf50a93c83eb329b0074cc7080d0fc63be418c5f04829c4ad30c8f",
    "5:parquet+swift": "6c90e00ef4a5bbab56b082fbfd208ad19a4a41d24c9605e3f402f4e328dab96b",
    "6:tfrecord+swift": "3dbc88bfc215e79e7083e5475f841b3e2ec2afb5e702dcb83897cbcd3851df7e",
    "7:parquet+tfrecord+swift": "2d13e5197a97c81fe3e875ba56a0a8171402dd985c0f9eb46e99b95e84ad499b",
    "8:authors": "681b8a8d5a68e7b6041a9971f039ea74c583a0a908f611c5066d0d70383043c7",
    "9:parquet+authors": "238cfc6e73c703ee7395fe6e4ec166348665f71269ec1ef8969fee3186e204fa",
    "10:tfrecord+authors": "f4b410cf46237e26af5b67d2d94c529bd4f919a4430ec91eb4a4eefa453f4dd9",
    "11:parquet+tfrecord+authors": "433a7774fab33152167247f47e3853592ff83ba6f25263dbd738fa8875894844",
    "12:swift+authors": "8409df1decdaee08452bc84fef4dbf03f13efb9a68f2e166f7ad4eeefc3e42e7",
    "13:parquet+swift+authors": "a623072b073ebae451e58560f11f6cd8d635827b9046a3b0e7eeee9c1df400bd",
    "14:tfrecord+swift+authors": "7c9a28306cf375f801b1832c0a19a5d4264aefe0419d3707eb3000ae14d39049",
    "15:parquet+tfrecord+swift+authors": "3d14a05e5904de54ab7de178b8f688b47ba17bdf1d01ee36c98c922aa526c110",
    "16:tfrecord": "0aee2565aa99829eea6e31134b31c6912cd6a573ba6145e10ceecf244c5770b9",
    "19:parquet+tfrecord+swift+authors": "d6f9b69d5f399434478365d1780c7ca16545e093f517507dfafa2e159fc2cb4a",
}


def _case_id(i, formats):
    return f"{i}:{'+'.join(formats) or 'none'}"


@pytest.mark.parametrize("i,formats", CARD_CASES, ids=[_case_id(*c) for c in CARD_CASES])
def test_card_text_is_pinned_for_every_format_combination(i, formats):
    """The card's bytes for each case, pinned from the string-built card before it moved to the
    Jinja2 template: the template must say exactly what the old code said. Re-pin on purpose only:
    SARCHAT_PRINT_GOLDEN=1 pytest -s -k pinned prints this run's digests."""
    card = render_card(_card_manifest(formats, i))
    digest = hashlib.sha256(card.encode("utf-8")).hexdigest()
    if os.environ.get("SARCHAT_PRINT_GOLDEN"):
        print(f'    "{_case_id(i, formats)}": "{digest}",')
    assert digest == CARD_DIGESTS[_case_id(i, formats)], card
