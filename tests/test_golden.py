"""Golden outputs: the sha256 of every file `generate` writes (all formats) for the synthetic
default, and of the scores of `sarchat demo --tiny`. Pinned before the redesign moved any code, so
a refactor that changes one byte of output fails here. A change of output made on purpose (new
templates, a new dataset version) updates these digests in the same commit and says why.
Procedure: SARCHAT_PRINT_GOLDEN=1 pytest -s tests/test_golden.py prints the digests of this run.
Re-pinned for issue 11 (the real SARChat question forms, generator 0.2.0), and for issue 18 (one builder:
identify's templates per box by a hash score, generator 0.3.0; every dialogue file changes through its
identify rows, the ms-swift files of the other tasks stay as they were; the demo's blind and cfar scores
change with the identify questions and shape sentences, the oracle's do not).
"""
import hashlib
import json
import os

import pytest

from sarchat.beam_pipelines import demo, generate, synth

GENERATE_DIGESTS = {
    "README.md": "88b00dbd0525350934eb48bb2f677f506a9db84ec8d26a859f523e34d210cc8e",
    "manifest.json": "50b2602905340bc319e4a4976369eacf29a9080cc4d2323dc67a0f81efc22a74",
    "parquet/test/dialogues-00000-of-00001.parquet": "725cfcd01bff0e02c75da60f05b076ab872dedc9249620f634c45d3b7bea0a1f",
    "parquet/train/dialogues-00000-of-00004.parquet": "0535106e84a7a3a512f618ac52d451caeaa835d20c9afd9fd152e1ee83a30036",
    "parquet/train/dialogues-00001-of-00004.parquet": "8d130c801f63cacb767d4a66512ef0f3df04ea8e5fe4bb00cdb363dc13d284f4",
    "parquet/train/dialogues-00002-of-00004.parquet": "fab4064809dd76d62049f31167b5054a3714a2988dc47a14efd4f1584bae00e5",
    "parquet/train/dialogues-00003-of-00004.parquet": "4e324329a3f99313cb760dd81628eaa5572003d7b09e98cc7c8be1c3a066b8e2",
    "rejects/test.jsonl": "362418fe0ce5bf2fa18df6b3ebe80fbfa5d702e28428bd419d4c5c51ba93caca",
    "rejects/train.jsonl": "f58a7dc63ddf659af517c22ef32a0916dfef29a390e1db8f7e871aa884cc2c0a",
    "swift/test/classify.jsonl": "085b9a26b2c274b7c7e03e5d3d0de1651803d21b42a9a2dac3d2e62530e40fed",
    "swift/test/count.jsonl": "29f1adec566aaf590c6175d72be61dbd5c3e86490274c56c91dc28b12e205114",
    "swift/test/describe.jsonl": "b086d257131c8df75d62ab33f88649b78018a30f70eae4eec45e966b5bdb8998",
    "swift/test/grounding_multi.jsonl": "8480d3280a3658dd1cab5f2cb3cece59b053a58d286e4462a5c41746c690d0a3",
    "swift/test/grounding_single.jsonl": "9a6b6b4170b8b0287505915a22249370cfa125b6cb3b929c8e4cfa2ce25510ad",
    "swift/test/identify_multi.jsonl": "7b7c6f8b7175a9114ceb2ddab91a5e6206d76a594db73db3edff4c88ae955cee",
    "swift/test/identify_single.jsonl": "4906b8fd8b026d065d0208923bd6c72e4210d309196e72407c9e7856a51f9eb6",
    "swift/test/refer_multi.jsonl": "6ca868828fbd1c54fc5091e18d9351522532336f373985319c40c518afb2c5b8",
    "swift/test/refer_single.jsonl": "ca9e071ed1c9c47f7ade3e49a8d03745a9d4c32409224daad03ec8b49d5fe1f2",
    "swift/train/classify.jsonl": "117ecb8bb6d4330c47867af7c5aa16970e501514c4497558dfa2a73cc7978453",
    "swift/train/count.jsonl": "b7409ea0f09063b423a33d194e0d69730f99c8359deea7c1e5b5940aceeb0bc8",
    "swift/train/describe.jsonl": "776c5ca79dafcf23ad7b92096c1969a5b736e3db66a360f4e3c67609ca5d7176",
    "swift/train/grounding_multi.jsonl": "90e16c90e051e1480c25f4b2b7f14908d3fe255853b0f50e2e9a60e853e14cb2",
    "swift/train/grounding_single.jsonl": "435b136dd7fc16e8edbcf30e0d2496557700076f464ee8441742ceb943550ad7",
    "swift/train/identify_multi.jsonl": "a30cb559ab59b22c4bc61bf4956b793c5fc2eded2dd7ed2d5a16e0fa4aa71aa1",
    "swift/train/identify_single.jsonl": "43e8085faea62eaacc313321d91649e15b6996932a5add093f67b870e12f1bd5",
    "swift/train/refer_multi.jsonl": "f6d4488f010b5e3fd01d3f6f76df30a16c726a33b96af182411f453eb8b11bc8",
    "swift/train/refer_single.jsonl": "c4a5f840b796eb836ad2416746971a237a7ecbfb45c1deb5434642702e85290a",
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
