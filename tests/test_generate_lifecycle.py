"""The output lifecycle of `sarchat generate` (docs/rules.md section 10, issue 9 item 1): a rerun removes the
old manifest first, then what its predecessor wrote and any stale file of our naming, writes its
manifest last; only ever our own files; the same on an object store; and the dataset version."""
import glob
import json
import os

import pytest

from sarchat.beam_pipelines import cli, flags, generate
from sarchat.transforms.generate import lifecycle, pipeline
from tests import memfs
from tests.helpers import write_coco
from tests.helpers import random_dataset


def on_disk(out):
    return {os.path.relpath(p, out).replace(os.sep, "/")
            for p in glob.glob(os.path.join(out, "**", "*"), recursive=True) if os.path.isfile(p)}


def manifest_of(out):
    with open(os.path.join(out, "manifest.json")) as f:
        return json.load(f)


def gen(root, out, *extra):
    """`sarchat generate` as a user runs it (errors are one line and an exit code)."""
    return cli.main(["generate", "--input", str(root), "--output", str(out), "--splits", "test", *extra])


# ---- pure decisions


@pytest.mark.parametrize("rel,ours", [
    ("parquet/test/dialogues-00000-of-00004.parquet", True),
    ("tfrecord/train/dialogues-00012-of-00013.tfrecord", True),
    ("swift/_parts/test/identify_multi-00003.jsonl", True),
    ("rejects/_parts/train/rejects-00012.jsonl", True),
    ("rejects/train.jsonl", False),  # ours, but only removed when an old manifest lists it
    ("parquet/test/dialogues-00000-of-00004.parquet.bak", False),
    ("parquet/test/my-dialogues-00000-of-00004.parquet", False),
    ("parquet/dialogues-00000-of-00004.parquet", False),
    ("tfrecord/test/dialogues-00000-of-00004.parquet", False),
    ("notes/dialogues-00000-of-00004.parquet", False),
    ("swift/test/classify.jsonl", False),  # ours, but only removed when an old manifest lists it
])
def test_generated_names(rel, ours):
    assert lifecycle.is_generated_name(rel) is ours


@pytest.mark.parametrize("rel,safe", [
    ("swift/test/classify.jsonl", True), ("rejects/test.jsonl", True), ("authors/SARChat_classify_test.json", True),
    ("../outside.txt", False), ("/etc/passwd", False), ("swift/../../x", False), ("swift/./a.jsonl", False),
    ("manifest.json", False), ("notes/readme.txt", False), ("gs://b/x", False), ("parquet", False),
    ("swift\\..\\x", False), (None, False), (3, False),
])
def test_only_paths_inside_our_folders_may_be_removed(rel, safe):
    assert lifecycle.safe_listed_path(rel) is safe


def test_removable_unions_the_old_listing_and_stale_names():
    old = {"files": [{"path": "swift/test/classify.jsonl"}, {"path": "../../home/user/thesis.tex"}, "junk",
                     {"path": "parquet/test/dialogues-00000-of-00002.parquet"}]}
    present = ["parquet/test/dialogues-00000-of-00002.parquet", "parquet/test/dialogues-00001-of-00002.parquet",
               "parquet/test/user-notes.txt", "swift/_parts/test/count-00001.jsonl"]
    assert lifecycle.removable(old, present) == [
        "parquet/test/dialogues-00000-of-00002.parquet", "parquet/test/dialogues-00001-of-00002.parquet",
        "swift/_parts/test/count-00001.jsonl", "swift/test/classify.jsonl"]
    assert lifecycle.removable(None, present) == [
        "parquet/test/dialogues-00000-of-00002.parquet", "parquet/test/dialogues-00001-of-00002.parquet",
        "swift/_parts/test/count-00001.jsonl"]


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'{"files": []}', b'{"generator": "sarchat-bench"}',
                                 b'{"model": "qwen", "files": []}', b"\xff\xfe"])
def test_a_manifest_not_ours_is_refused(raw):
    with pytest.raises(lifecycle.OutputError, match="OUT/manifest.json exists and is not a manifest of sarchat generate"):
        lifecycle.check_own_manifest(raw, "OUT/manifest.json")


# ---- end to end, local disk


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    random_dataset(root, n_images=30)
    return root


def test_rerun_with_other_shards_and_formats_leaves_only_the_new_files(data, tmp_path):
    out = tmp_path / "out"
    assert gen(data, out, "--images-per-shard", "8") == 0
    first = manifest_of(out)
    assert first["num_shards"]["test"] == 4 and any(f["path"].startswith("tfrecord/") for f in first["files"])
    (out / "parquet" / "test" / "my-notes.txt").write_text("mine")
    (out / "README-mine.md").write_text("mine too")
    assert gen(data, out, "--images-per-shard", "100", "--formats", "parquet", "--seed", "3") == 0
    second = manifest_of(out)
    listed = {f["path"] for f in second["files"]}
    assert second["num_shards"]["test"] == 1 and all(p.startswith(("parquet/", "rejects/")) or p == "README.md" for p in listed)
    assert on_disk(out) == listed | {"manifest.json", "parquet/test/my-notes.txt", "README-mine.md"}
    assert (out / "parquet" / "test" / "my-notes.txt").read_text() == "mine"
    assert second["dataset_version"] != first["dataset_version"]
    # the format folders the second run does not write are gone, not left empty
    assert not (out / "tfrecord").exists() and not (out / "swift").exists()


def test_a_folder_holding_a_users_file_is_kept(data, tmp_path):
    out = tmp_path / "out"
    assert gen(data, out) == 0
    (out / "tfrecord" / "test" / "mine.txt").write_text("mine")
    assert gen(data, out, "--formats", "parquet") == 0
    assert on_disk(out) >= {"tfrecord/test/mine.txt"}
    assert sorted(os.listdir(out / "tfrecord" / "test")) == ["mine.txt"]
    assert not (out / "swift").exists()


def test_parent_folders_are_ours_and_deepest_first():
    removed = ["manifest.json", "README.md", "tfrecord/test/dialogues-00000-of-00001.tfrecord",
               "swift/_parts/test/count-00000.jsonl", "swift/test/count.jsonl"]
    assert lifecycle.parent_folders(removed) == ["swift/_parts/test", "swift/_parts", "swift/test", "tfrecord/test",
                                                 "swift", "tfrecord"]


def test_stale_files_of_a_killed_run_without_manifest_are_removed(data, tmp_path):
    out = tmp_path / "out"
    stale = ["parquet/test/dialogues-00002-of-00007.parquet", "tfrecord/val/dialogues-00000-of-00003.tfrecord",
             "swift/_parts/test/refer_multi-00004.jsonl"]
    for rel in stale + ["parquet/test/keep.parquet"]:
        os.makedirs(os.path.dirname(out / rel), exist_ok=True)
        (out / rel).write_bytes(b"old")
    assert gen(data, out, "--formats", "parquet,swift") == 0
    listed = {f["path"] for f in manifest_of(out)["files"]}
    assert on_disk(out) == listed | {"manifest.json", "parquet/test/keep.parquet"}


def test_a_killed_rerun_leaves_no_manifest_over_a_mix(data, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert gen(data, out, "--images-per-shard", "8") == 0
    old_files = {f["path"] for f in manifest_of(out)["files"]}
    real = pipeline.WriteShardFn.process

    def dies_after_the_first_shard(self, element, duplicates_by_split):
        (split, shard), _ = element
        if shard > 0:
            raise RuntimeError("worker killed")
        yield from real(self, element, duplicates_by_split)

    monkeypatch.setattr(pipeline.WriteShardFn, "process", dies_after_the_first_shard)
    with pytest.raises(Exception, match="worker killed"):
        gen(data, out, "--images-per-shard", "5")
    assert not (out / "manifest.json").exists()
    assert not (on_disk(out) & old_files), "files of the previous run survived beside the new shards"


def test_a_users_readme_is_never_overwritten(data, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.md").write_text("my notes")
    assert gen(data, out) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "README.md" in err[0] and err[0].startswith("sarchat generate: error: ")
    assert on_disk(out) == {"README.md"} and (out / "README.md").read_text() == "my notes"
    (out / "README.md").unlink()
    assert gen(data, out) == 0 and (out / "README.md").read_text().rstrip().endswith("replaced on every run -->")
    assert gen(data, out, "--seed", "4") == 0  # our own card is replaced on a rerun
    # a user who edits the card of a finished dataset: the rerun is refused and the dataset stays whole
    before = on_disk(out)
    (out / "README.md").write_text("my edited card")
    assert gen(data, out, "--seed", "5") == 1
    assert on_disk(out) == before and (out / "manifest.json").exists()


def test_a_foreign_manifest_is_left_alone_with_one_clear_line(data, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "manifest.json").write_text('{"model": "qwen2-vl", "dataset_version": "abc"}')
    (out / "predictions.parquet").write_bytes(b"PAR1")
    assert gen(data, out) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sarchat generate: error: ") and "manifest.json" in err[0]
    assert (out / "manifest.json").read_text() == '{"model": "qwen2-vl", "dataset_version": "abc"}'
    assert on_disk(out) == {"manifest.json", "predictions.parquet"}


# ---- end to end, object store (no directories, whole-object writes)


def test_rerun_on_an_object_store(data):
    memfs.STORE.clear()
    out = "memfs://bucket/sarchat/out"
    assert gen(data, out, "--images-per-shard", "8") == 0
    first = json.loads(memfs.STORE[out + "/manifest.json"])
    assert {k for k in memfs.STORE} == {out + "/" + f["path"] for f in first["files"]} | {out + "/manifest.json"}
    memfs.STORE[out + "/parquet/test/mine.txt"] = b"user"
    memfs.STORE[out + "/parquet/test/dialogues-00009-of-00010.parquet"] = b"stale"
    assert gen(data, out, "--images-per-shard", "100", "--formats", "parquet") == 0
    second = json.loads(memfs.STORE[out + "/manifest.json"])
    keys = set(memfs.STORE)
    assert keys == {out + "/" + f["path"] for f in second["files"]} | {out + "/manifest.json", out + "/parquet/test/mine.txt"}
    assert second["num_shards"]["test"] == 1
    memfs.STORE.clear()


def test_clear_previous_output_removes_the_manifest_first():
    memfs.STORE.clear()
    out = "memfs://b/o"
    memfs.STORE.update({out + "/manifest.json": json.dumps({"generator": "sarchat-bench", "files": [
        {"path": "swift/test/count.jsonl"}]}).encode(), out + "/swift/test/count.jsonl": b"x",
        out + "/parquet/test/dialogues-00000-of-00001.parquet": b"y", out + "/other.txt": b"z"})
    removed = lifecycle.clear_previous_output(out)
    assert removed[0] == "manifest.json"
    assert sorted(removed[1:]) == ["parquet/test/dialogues-00000-of-00001.parquet", "swift/test/count.jsonl"]
    assert set(memfs.STORE) == {out + "/other.txt"}
    memfs.STORE.clear()


# ---- dataset version


def test_dataset_version_covers_generator_templates_config_and_inputs(data, tmp_path, monkeypatch):
    def version_of(*extra):
        config = flags.parse_config(generate.build_parser(), ["--input", str(data), "--output", "x", "--splits", "test",
                                                              *extra], generate.GenerateConfig)
        return generate.prepare(config)[2]

    base = version_of()
    assert base["dataset_version"] == version_of()["dataset_version"]
    assert set(base["templates"]) == {"classify", "describe", "count", "grounding", "identify", "refer"}
    assert version_of("--seed", "1")["dataset_version"] != base["dataset_version"]
    assert version_of("--identify-variants", "3")["dataset_version"] != base["dataset_version"]
    real = generate.templates.fingerprints

    def edited_bank():
        fp = real()
        fp["refer"] = dict(fp["refer"], sha256="0" * 64)
        return fp

    monkeypatch.setattr(generate.templates, "fingerprints", edited_bank)
    edited = version_of()
    assert edited["dataset_version"] != base["dataset_version"]
    assert edited["config_hash"] == base["config_hash"]  # regenerate's folder naming is unchanged
    monkeypatch.setattr(generate, "VERSION", "9.9.9")
    assert version_of()["dataset_version"] not in (base["dataset_version"], edited["dataset_version"])
    images = json.load(open(data / "Annotations" / "test.json"))
    images["images"] = images["images"][:-1]
    write_coco(str(data), "test", images["images"], images["annotations"])
    monkeypatch.setattr(generate.templates, "fingerprints", real)
    monkeypatch.setattr(generate, "VERSION", base["version"])
    assert version_of()["dataset_version"] != base["dataset_version"]


def test_the_manifest_records_the_dataset_version(data, tmp_path):
    from sarchat.transforms import dataset_files

    out = tmp_path / "out"
    assert gen(data, out, "--formats", "parquet") == 0
    manifest = dataset_files.read_manifest(str(out))
    assert dataset_files.dataset_version(manifest) == manifest["dataset_version"] != manifest["config_hash"]
    assert len(manifest["dataset_version"]) == 16
