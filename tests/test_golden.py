"""Golden outputs: the sha256 of every file `generate` writes (all formats) for the synthetic
default, and of the scores of `sarchat demo --tiny`. Pinned before the redesign moved any code, so
a refactor that changes one byte of output fails here. A change of output made on purpose (new
templates, a new dataset version) updates these digests in the same commit and says why.
Procedure: SARCHAT_PRINT_GOLDEN=1 pytest -s tests/test_golden.py prints the digests of this run.
Re-pinned for issue 11 (the real SARChat question forms, generator 0.2.0).
"""
import hashlib
import json
import os

import pytest

from sarchat.beam_pipelines import demo, generate, synth

GENERATE_DIGESTS = {
    "README.md": "f067567d5049978f0b3796112063468588418d22be485a2fa8e019dd6d96c089",
    "manifest.json": "4e0ea7207473b68d9d83b8ab365d181f197174765a607399d815e897a9ca7925",
    "parquet/test/dialogues-00000-of-00001.parquet": "2d9a05912ef91c4abcb65ca90c2bdc7357e676d6003ba81831342ae7400cc19e",
    "parquet/train/dialogues-00000-of-00004.parquet": "757368fce494fa9aaa6ada1c381146d725074d25892a1d5c508be67d12387eff",
    "parquet/train/dialogues-00001-of-00004.parquet": "e60e8c29b57fbbc372b86085df54aeef0ec65a345dd04883c0d3bcf5403e7b82",
    "parquet/train/dialogues-00002-of-00004.parquet": "ba4503cad4b124ba24c73e948ce4c47d1537ec608a40887e845c061be8a82213",
    "parquet/train/dialogues-00003-of-00004.parquet": "bb40c9dfca78465e037aae48439a537c194f1df3b027a8cfcd5e2f2d1eb8034f",
    "rejects/test.jsonl": "362418fe0ce5bf2fa18df6b3ebe80fbfa5d702e28428bd419d4c5c51ba93caca",
    "rejects/train.jsonl": "f58a7dc63ddf659af517c22ef32a0916dfef29a390e1db8f7e871aa884cc2c0a",
    "swift/test/classify.jsonl": "085b9a26b2c274b7c7e03e5d3d0de1651803d21b42a9a2dac3d2e62530e40fed",
    "swift/test/count.jsonl": "29f1adec566aaf590c6175d72be61dbd5c3e86490274c56c91dc28b12e205114",
    "swift/test/describe.jsonl": "b086d257131c8df75d62ab33f88649b78018a30f70eae4eec45e966b5bdb8998",
    "swift/test/grounding_multi.jsonl": "8480d3280a3658dd1cab5f2cb3cece59b053a58d286e4462a5c41746c690d0a3",
    "swift/test/grounding_single.jsonl": "9a6b6b4170b8b0287505915a22249370cfa125b6cb3b929c8e4cfa2ce25510ad",
    "swift/test/identify_multi.jsonl": "0d98081430a333a23f952d092363d042b83acd0c4585150423764ca0ea0ebd26",
    "swift/test/identify_single.jsonl": "ebdf94d648e441986a5c300c4ce45f8bef2266c3a940f7e8bd815ba23cdf37db",
    "swift/test/refer_multi.jsonl": "6ca868828fbd1c54fc5091e18d9351522532336f373985319c40c518afb2c5b8",
    "swift/test/refer_single.jsonl": "ca9e071ed1c9c47f7ade3e49a8d03745a9d4c32409224daad03ec8b49d5fe1f2",
    "swift/train/classify.jsonl": "117ecb8bb6d4330c47867af7c5aa16970e501514c4497558dfa2a73cc7978453",
    "swift/train/count.jsonl": "b7409ea0f09063b423a33d194e0d69730f99c8359deea7c1e5b5940aceeb0bc8",
    "swift/train/describe.jsonl": "776c5ca79dafcf23ad7b92096c1969a5b736e3db66a360f4e3c67609ca5d7176",
    "swift/train/grounding_multi.jsonl": "90e16c90e051e1480c25f4b2b7f14908d3fe255853b0f50e2e9a60e853e14cb2",
    "swift/train/grounding_single.jsonl": "435b136dd7fc16e8edbcf30e0d2496557700076f464ee8441742ceb943550ad7",
    "swift/train/identify_multi.jsonl": "96739be622528b907c36606458d5eb7866785d005f7dff45da82dd1b6edeeabe",
    "swift/train/identify_single.jsonl": "5f7104c2ccac9dde5c24247432e74a555c2841b82b55b8c83ba18a74a886baa1",
    "swift/train/refer_multi.jsonl": "f6d4488f010b5e3fd01d3f6f76df30a16c726a33b96af182411f453eb8b11bc8",
    "swift/train/refer_single.jsonl": "c4a5f840b796eb836ad2416746971a237a7ecbfb45c1deb5434642702e85290a",
    "tfrecord/test/dialogues-00000-of-00001.tfrecord": "41befd20c73da3f25a25d29042d7f0e9c396b1d58c3b997d5836bebd18c9eaeb",
    "tfrecord/train/dialogues-00000-of-00004.tfrecord": "f9c15e9bd32e97f50c11798c41bd1d9acf5a5bf0692b61d34cf663580ba680db",
    "tfrecord/train/dialogues-00001-of-00004.tfrecord": "4f8add2f2c32376953e8660ab771c5c6e1d8e7342537d169e1551bb60e70916d",
    "tfrecord/train/dialogues-00002-of-00004.tfrecord": "34219c1fb6c770cae84444f81bf15f1ae9545d044345dd6a5144f9c70c31beed",
    "tfrecord/train/dialogues-00003-of-00004.tfrecord": "538cc48610ea5452613327fa2ececc288866916ee77ea9580c166399299d0ca7",
}
SCORE_DIGESTS = {
    "blind": "70e9da593f42c8fb10745263a07110262e773b7f7ecb46e787665510040a85c2",
    "cfar": "97a3efde46b19af88343280f085f01c34c597910d791dc268ee8eea9d4823da8",
    "oracle": "09a3801ca73c03d153dc45d8a666c6561224b4a81a07caa92317370734240080",
}


def _digests(root):
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            if folder == root and name == ".sarchat-owner.json":
                continue  # the folder's ownership marker (transforms/ownership.py), not the dataset
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root).replace(os.sep, "/")] = hashlib.sha256(f.read()).hexdigest()
    return dict(sorted(out.items()))


def _scores(results):
    """Each model's numbers (not the whole metrics.json, whose keys may grow): a sha256 per model."""
    out = {}
    for model in sorted(os.listdir(results)):
        path = os.path.join(results, model, "metrics.json")
        if not os.path.isfile(path):
            continue
        with open(path) as f:
            m = json.load(f)
        picked = {k: m[k] for k in ("columns", "tasks", "overall", "overall_macro", "overall_ci95", "n", "parse_failures")}
        out[model] = hashlib.sha256(json.dumps(picked, sort_keys=True).encode()).hexdigest()
    return out


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    cwd = os.getcwd()
    root = tmp_path_factory.mktemp("golden")
    os.chdir(root)  # relative paths, so the manifest and swift files do not name the temp folder
    try:
        assert synth.run(["--output", "data", "--quiet"]) in (0, None)
        assert generate.run(["--input", "data", "--output", "out", "--images-per-shard", "50"]) in (0, None)
    finally:
        os.chdir(cwd)
    return _digests(str(root / "out"))


def test_generate_all_formats_is_byte_identical(generated):
    if os.environ.get("SARCHAT_PRINT_GOLDEN"):
        print(json.dumps(generated, indent=1))
    assert generated == GENERATE_DIGESTS


def test_demo_tiny_scores_are_identical(tmp_path):
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert demo.run(["--output", str(tmp_path / "demo"), "--tiny"]) == 0
    scores = _scores(str(tmp_path / "demo" / "results"))
    if os.environ.get("SARCHAT_PRINT_GOLDEN"):
        print(json.dumps(scores, indent=1))
    assert scores == SCORE_DIGESTS
