"""Golden outputs: the sha256 of every file `generate` writes (all formats) for the synthetic
default, and of the scores of `sarchat demo --tiny`. Pinned before the redesign moved any code, so
a refactor that changes one byte of output fails here. A change of output made on purpose (new
templates, a new dataset version) updates these digests in the same commit and says why.
Procedure: SARCHAT_PRINT_GOLDEN=1 pytest -s tests/test_golden.py prints the digests of this run.
Re-pinned for issue 11 (the real SARChat question forms, generator 0.2.0).
Re-pinned for issue 22: the dataset card (a data-files fingerprint in its config, the formats
written, counts as 3,267), the manifest (a relative --input recorded relative to the dataset folder,
`paths_relative_to`), and the swift files (absolute image paths; the test fixes --image-root).
"""
import hashlib
import json
import os

import pytest

from sarchat.beam_pipelines import demo, generate, synth

GENERATE_DIGESTS = {
    "README.md": "5a91b26a2cda6515f0662112d85a9e3e7e16d0e229860923ea22224fd2e1adc5",
    "manifest.json": "57fda082339543a8f1898da43be2e05c0b589387931cb72f8a2b9c953eb9b666",
    "parquet/test/dialogues-00000-of-00001.parquet": "2d9a05912ef91c4abcb65ca90c2bdc7357e676d6003ba81831342ae7400cc19e",
    "parquet/train/dialogues-00000-of-00004.parquet": "757368fce494fa9aaa6ada1c381146d725074d25892a1d5c508be67d12387eff",
    "parquet/train/dialogues-00001-of-00004.parquet": "e60e8c29b57fbbc372b86085df54aeef0ec65a345dd04883c0d3bcf5403e7b82",
    "parquet/train/dialogues-00002-of-00004.parquet": "ba4503cad4b124ba24c73e948ce4c47d1537ec608a40887e845c061be8a82213",
    "parquet/train/dialogues-00003-of-00004.parquet": "bb40c9dfca78465e037aae48439a537c194f1df3b027a8cfcd5e2f2d1eb8034f",
    "rejects/test.jsonl": "362418fe0ce5bf2fa18df6b3ebe80fbfa5d702e28428bd419d4c5c51ba93caca",
    "rejects/train.jsonl": "f58a7dc63ddf659af517c22ef32a0916dfef29a390e1db8f7e871aa884cc2c0a",
    "swift/test/classify.jsonl": "e2ad1c888c178a9d929dcd41e378a40d2a4b6d5a32dde3539194af1c42508560",
    "swift/test/count.jsonl": "d8cd2b2400116e5cbe1eec07f23f4ac9971714c7991a569e0096ed38ebff25e8",
    "swift/test/describe.jsonl": "2d1632fed928d2b8293ce7e2951a1d6db6564a65f5c6694fc9e3346dbf744523",
    "swift/test/grounding_multi.jsonl": "b09ce4a4f0714a8071ca7330237322b42d8e23c40f265533a3427ab6c142ba15",
    "swift/test/grounding_single.jsonl": "f37f5938ee0036afba848793de9f828295e51ef0414f8674e6a60a340310ef05",
    "swift/test/identify_multi.jsonl": "6a3a673775cb962f00b6f33d1f87531abd2883f6c0d3fc47c516915267d96fdb",
    "swift/test/identify_single.jsonl": "a34d205cfff24975114f36c3031de454f3a537caeacf119d819303c2de4f81b0",
    "swift/test/refer_multi.jsonl": "1245eb5a8af73fa058167042bc8dafe77b1615accd7e2ffbb59e54e76027ca40",
    "swift/test/refer_single.jsonl": "8af7dc6a3f2fad8290d9300cc2508075ab94d22df614bd2752dfe9b579788e79",
    "swift/train/classify.jsonl": "df1c8ec4701af0acf438eef30627e1cef22ef2adbcdb5d3385e5ee9c258aba3f",
    "swift/train/count.jsonl": "ca1587767b129e6a4eabb7f7a7cb022f18083de7c5b350c9710e444d29454fd7",
    "swift/train/describe.jsonl": "9c197f772a06d866fcff4e86683f2a2dd33223b1791bda178c4158efac7714b7",
    "swift/train/grounding_multi.jsonl": "aa40363a021638c1631630768eb318b6129ed7aba2ed3e21132984ee86083eb1",
    "swift/train/grounding_single.jsonl": "42f06a17ff3fb6e98ae68bc0762e4628502874062befc19b72590ad7920d2220",
    "swift/train/identify_multi.jsonl": "f98f3aa0395db0c8adf0f30636810b0686f1424fa710c00ec13b240b58e3e537",
    "swift/train/identify_single.jsonl": "9a12444164f0deeefe6c5ab9b000bbdaa5b91d8712bfed07a1bdea26f648d3cb",
    "swift/train/refer_multi.jsonl": "b766745288384a058fd344f38b0864721259bdf0242b5ef400fe9f811896c80f",
    "swift/train/refer_single.jsonl": "e80fcf93e7152a1c69d70170fdf1c7a5658b19469c3aa75b0e4ec8944becf251",
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
    # relative paths, so the manifest does not name the temp folder (it records ../data, relative
    # to the dataset folder); the swift files hold absolute image paths, so --image-root is fixed
    os.chdir(root)
    try:
        assert synth.run(["--output", "data", "--quiet"]) in (0, None)
        assert generate.run(["--input", "data", "--output", "out", "--images-per-shard", "50",
                             "--image-root", "/sarchat-golden/data"]) in (0, None)
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
