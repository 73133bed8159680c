"""Golden outputs: the sha256 of every file `generate` writes (all formats) for the synthetic
default, and of the scores of `sarchat demo --tiny`. Pinned before the redesign moved any code, so
a refactor that changes one byte of output fails here. A change of output made on purpose (new
templates, a new dataset version) updates these digests in the same commit and says why.
Procedure: SARCHAT_PRINT_GOLDEN=1 pytest -s tests/test_golden.py prints the digests of this run.
Re-pinned for issue 11 (the real SARChat question forms, generator 0.2.0), and for issue 18 (one builder:
identify's templates per box by a hash score, generator 0.3.0; every dialogue file changes through its
identify rows, the ms-swift files of the other tasks stay as they were; the demo's blind and cfar scores
change with the identify questions and shape sentences, the oracle's do not).
Re-pinned for issue 22: the dataset card (a data-files fingerprint in its config, the formats
written, counts as 3,267), the manifest (a relative --input recorded relative to the dataset folder,
`paths_relative_to`), and the swift files (absolute image paths; the test fixes --image-root).
TEMPLATE_SPREAD_DIGESTS pinned for issue 23 (metrics.json's new `template_spread`, the per-template
scores of the demo's models); SCORE_DIGESTS were left as they were (their keys do not include it).
TEMPLATE_SPREAD_DIGESTS re-pinned when issue 23 met issue 18's builder: the identify rows carry other
template ids, so the per-template scores of all three models move (their task scores do not).
"""
import hashlib
import json
import os
import shutil

import pytest

from sarchat.beam_pipelines import generate

GENERATE_DIGESTS = {
    "README.md": "a9189930593db587de28646e1368e175836d2ab60ddf35cf374629139f592bde",
    "manifest.json": "0a055398ac62e85288ce56978440b8cae22de7c91974e1e04791f0c9bb0df2c9",
    "parquet/test/dialogues-00000-of-00001.parquet": "725cfcd01bff0e02c75da60f05b076ab872dedc9249620f634c45d3b7bea0a1f",
    "parquet/train/dialogues-00000-of-00004.parquet": "0535106e84a7a3a512f618ac52d451caeaa835d20c9afd9fd152e1ee83a30036",
    "parquet/train/dialogues-00001-of-00004.parquet": "8d130c801f63cacb767d4a66512ef0f3df04ea8e5fe4bb00cdb363dc13d284f4",
    "parquet/train/dialogues-00002-of-00004.parquet": "fab4064809dd76d62049f31167b5054a3714a2988dc47a14efd4f1584bae00e5",
    "parquet/train/dialogues-00003-of-00004.parquet": "4e324329a3f99313cb760dd81628eaa5572003d7b09e98cc7c8be1c3a066b8e2",
    "rejects/test.jsonl": "362418fe0ce5bf2fa18df6b3ebe80fbfa5d702e28428bd419d4c5c51ba93caca",
    "rejects/train.jsonl": "f58a7dc63ddf659af517c22ef32a0916dfef29a390e1db8f7e871aa884cc2c0a",
    "swift/test/classify.jsonl": "e2ad1c888c178a9d929dcd41e378a40d2a4b6d5a32dde3539194af1c42508560",
    "swift/test/count.jsonl": "d8cd2b2400116e5cbe1eec07f23f4ac9971714c7991a569e0096ed38ebff25e8",
    "swift/test/describe.jsonl": "2d1632fed928d2b8293ce7e2951a1d6db6564a65f5c6694fc9e3346dbf744523",
    "swift/test/grounding_multi.jsonl": "b09ce4a4f0714a8071ca7330237322b42d8e23c40f265533a3427ab6c142ba15",
    "swift/test/grounding_single.jsonl": "f37f5938ee0036afba848793de9f828295e51ef0414f8674e6a60a340310ef05",
    "swift/test/identify_multi.jsonl": "6970b90bc1235851a6f3a5afae328a1236612d622b64de032d4ffefdf50747b3",
    "swift/test/identify_single.jsonl": "a85a1e0e337b09b4ecf9cf00f152763cabb1837f4bea7191f09817bdf4cca1cb",
    "swift/test/refer_multi.jsonl": "1245eb5a8af73fa058167042bc8dafe77b1615accd7e2ffbb59e54e76027ca40",
    "swift/test/refer_single.jsonl": "8af7dc6a3f2fad8290d9300cc2508075ab94d22df614bd2752dfe9b579788e79",
    "swift/train/classify.jsonl": "df1c8ec4701af0acf438eef30627e1cef22ef2adbcdb5d3385e5ee9c258aba3f",
    "swift/train/count.jsonl": "ca1587767b129e6a4eabb7f7a7cb022f18083de7c5b350c9710e444d29454fd7",
    "swift/train/describe.jsonl": "9c197f772a06d866fcff4e86683f2a2dd33223b1791bda178c4158efac7714b7",
    "swift/train/grounding_multi.jsonl": "aa40363a021638c1631630768eb318b6129ed7aba2ed3e21132984ee86083eb1",
    "swift/train/grounding_single.jsonl": "42f06a17ff3fb6e98ae68bc0762e4628502874062befc19b72590ad7920d2220",
    "swift/train/identify_multi.jsonl": "38a1b6bab97ed471fbab32a8f0509e221fd4a432ee4a8f9d25b48429df410145",
    "swift/train/identify_single.jsonl": "7b490dddc94bd09a4278c76826da765b6feb29f77fefa881570acb57f28b7e1a",
    "swift/train/refer_multi.jsonl": "b766745288384a058fd344f38b0864721259bdf0242b5ef400fe9f811896c80f",
    "swift/train/refer_single.jsonl": "e80fcf93e7152a1c69d70170fdf1c7a5658b19469c3aa75b0e4ec8944becf251",
    "tfrecord/test/dialogues-00000-of-00001.tfrecord": "de7f82bd1d68fe78ab4f7f1d073af48bdc1a24d7ba4a5a7c4338e55d927e7446",
    "tfrecord/train/dialogues-00000-of-00004.tfrecord": "dae1e0772803803d5b05ceb695a012313baad45923f3fc3c1970fbcd46a1f642",
    "tfrecord/train/dialogues-00001-of-00004.tfrecord": "57fa690efda11444d1dfda7f7197cf87329d538c3e8c4992d6e1b7ea004aaa35",
    "tfrecord/train/dialogues-00002-of-00004.tfrecord": "b0ca747ca475443740494588998888a75a60d297373fa7ce2f376e860d049962",
    "tfrecord/train/dialogues-00003-of-00004.tfrecord": "ab58cff5aa7adebd8b45eaa6d3b6d0f4773a6e3cc7832ab637a1c1bc809ddf0e",
}
SCORE_DIGESTS = {
    "blind": "3fe6615a9058afab151e4a0ef70971c92aa9504b132bb928efc24d3f8aedc565",
    "cfar": "cb815c351ab182a6591be1ad3c633687ca0482bb1319ce237d84bb53ee5d8091",
    "oracle": "09a3801ca73c03d153dc45d8a666c6561224b4a81a07caa92317370734240080",
}
TEMPLATE_SPREAD_DIGESTS = {
    "blind": "957cb1b40ac0d34c3f2fc6e6e26c6915634ee9dc8427cb129445e238b7339e2d",
    "cfar": "e49e015b8e739766d9292ef5728d92d5f6597dff6ff21a524ff357ba348f4057",
    "oracle": "cacfee231a6244e881befce84c2aec323cf1e0af960b744c6b6b6e165be1727c",
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


def _scores(results, keys=("columns", "tasks", "overall", "overall_macro", "overall_ci95", "n", "parse_failures")):
    """Each model's numbers (not the whole metrics.json, whose keys may grow): a sha256 per model."""
    out = {}
    for model in sorted(os.listdir(results)):
        path = os.path.join(results, model, "metrics.json")
        if not os.path.isfile(path):
            continue
        with open(path) as f:
            m = json.load(f)
        picked = {k: m[k] for k in keys}
        out[model] = hashlib.sha256(json.dumps(picked, sort_keys=True).encode()).hexdigest()
    return out


@pytest.fixture(scope="module")
def generated(tmp_path_factory, default_synth):
    cwd = os.getcwd()
    root = tmp_path_factory.mktemp("golden")
    shutil.copytree(default_synth, root / "data")
    # relative paths, so the manifest does not name the temp folder (it records ../data, relative
    # to the dataset folder); the swift files hold absolute image paths, so --image-root is fixed
    os.chdir(root)
    try:
        assert generate.run(["--input", "data", "--output", "out", "--images-per-shard", "50",
                             "--image-root", "/sarchat-golden/data"]) in (0, None)
    finally:
        os.chdir(cwd)
    return _digests(str(root / "out"))


def test_generate_all_formats_is_byte_identical(generated):
    if os.environ.get("SARCHAT_PRINT_GOLDEN"):
        print(json.dumps(generated, indent=1))
    assert generated == GENERATE_DIGESTS


def test_demo_tiny_scores_are_identical(tiny_demo):
    """The session's `sarchat demo --tiny` (the tiny_demo fixture of conftest.py)."""
    results = os.path.join(tiny_demo[0], "results")
    scores = _scores(results)
    spreads = _scores(results, keys=("template_spread",))
    if os.environ.get("SARCHAT_PRINT_GOLDEN"):
        print(json.dumps(scores, indent=1))
        print(json.dumps(spreads, indent=1))
    assert scores == SCORE_DIGESTS
    assert spreads == TEMPLATE_SPREAD_DIGESTS
