"""Golden outputs: the sha256 of every file `generate` writes (all formats) for the synthetic
default, and of the scores of `sarchat demo --tiny`. Pinned before the redesign moved any code, so
a refactor that changes one byte of output fails here. A change of output made on purpose (new
templates, a new dataset version) updates these digests in the same commit and says why.
"""
import hashlib
import json
import os

import pytest

from sarchat.beam_pipelines import demo, generate, synth

GENERATE_DIGESTS = {
    "README.md": "93f1dbad931e1aa7a6620cfd068b4bf3046690574a51148563a5ae9ba68a4243",
    "manifest.json": "cd3748d676ceec9c26614aace4ee32e92bba8fd09319106f70455b6dae480567",
    "parquet/test/dialogues-00000-of-00001.parquet": "4efc11fc24f6e17c69cc6feee661683cd33a14dfa3ab0359a1613588a1cab27c",
    "parquet/train/dialogues-00000-of-00004.parquet": "512d14a809fcd7ad033c1977ffa53e0307a3aaa112b4c5ecf528335fbdc02bf9",
    "parquet/train/dialogues-00001-of-00004.parquet": "f1d9aba416ba32c2024f1494d6649988b7c9c39d30ba7e79bee0f9ede40c88a0",
    "parquet/train/dialogues-00002-of-00004.parquet": "50bd592c5d8b2473ee5ac6d125c3bb1a85465dfedd0cd654593523d1bd15f041",
    "parquet/train/dialogues-00003-of-00004.parquet": "d2d2a286e9a7ed09ac788483330d2e9f03a69ad7e8aba1b8333cc12a71c2d19e",
    "rejects/test.jsonl": "362418fe0ce5bf2fa18df6b3ebe80fbfa5d702e28428bd419d4c5c51ba93caca",
    "rejects/train.jsonl": "f58a7dc63ddf659af517c22ef32a0916dfef29a390e1db8f7e871aa884cc2c0a",
    "swift/test/classify.jsonl": "733c5c80089c93228698d5d7f421fb12ad11b44f37c7ba358dc7b2bb7cbf084e",
    "swift/test/count.jsonl": "09a2fc8334ee230d52af437bcefb1099c22a3bcd6d18dbd3cd6d51b896892c94",
    "swift/test/describe.jsonl": "30eb182492a0dc91630378a61e9b34e1083a50c629b3096545a0dd8f34685a91",
    "swift/test/grounding_multi.jsonl": "b27e0f23c91c80041ef65608fc4c351e70705e9393c8c3194a01f6dc0ce3d183",
    "swift/test/grounding_single.jsonl": "045fc0432e74b15513df50212f2dfa1fe3fb353cf4fcc36253b517a4c2a7aa9a",
    "swift/test/identify_multi.jsonl": "ff257c41bb550e1c0b98d3ffd32421c07757009bc2e1190c2657942f061e74fd",
    "swift/test/identify_single.jsonl": "fbad391b40dd2112e7c2dbe7aa4725c90751e3541d7a8c9e4b04fa6ac9749974",
    "swift/test/refer_multi.jsonl": "f67845a19a92c533e6b38791308bd802bc47d63490150c3a39685d02c6fce4fd",
    "swift/test/refer_single.jsonl": "f6877f5b46d3cb6a9ccb579bcf4b3e9321aa3bd60a8b081b07dd1175fc49cee3",
    "swift/train/classify.jsonl": "450dcda7bf66103d799c110bd75498afd42d1916f9386dffef5d057bef41aca4",
    "swift/train/count.jsonl": "0a6e73b7d65ad29465065fcb0efc45202774fb9c2f1668ea2fd33493dc9a2541",
    "swift/train/describe.jsonl": "2a8f2ac576f405fa5df43bd35c932d14da010b92879d38abac72e2ac11acdc57",
    "swift/train/grounding_multi.jsonl": "f3c5838bf709d52bcfb720a3b20f8b892f7a86d5b86156c1b50c006963c39ee6",
    "swift/train/grounding_single.jsonl": "e39569052bdd9b0559f77f47876fb405f15d771709902378ba7dd9d7c04812b9",
    "swift/train/identify_multi.jsonl": "e8f532c77f08475cba49a3a11504af2c3e71d565f1719352d9682e8a1a689ac9",
    "swift/train/identify_single.jsonl": "e6cf5b8ad21c243ea54e9589d2f004b50adb28cb600673cef827dd2cafc7c0b7",
    "swift/train/refer_multi.jsonl": "fcdb2c68a352ebfb27b57cd9903c2ec9577d9dde04ff7977ad19d066791d7511",
    "swift/train/refer_single.jsonl": "1d922e3aaf5cd84bf5e3158dabfc2c2f68efe3607f94196c2ef781e5975db958",
    "tfrecord/test/dialogues-00000-of-00001.tfrecord": "2d2a1e4fc197d966db2987aab76cb4a58d2e68fba01feaa17ba25f8968736889",
    "tfrecord/train/dialogues-00000-of-00004.tfrecord": "db2b9d2bc8e163578dd819d563f9af09d892ce9ea4faf810d63384fa88d1b470",
    "tfrecord/train/dialogues-00001-of-00004.tfrecord": "11af3bfab51926f9e6fc636b37f2c1bf1bf35db0e666938b198a71c16f3f62ff",
    "tfrecord/train/dialogues-00002-of-00004.tfrecord": "73819cd1ed1d8ba3020eaf482cdde6f20ef1ceb6036dd2563c15a5e614f6c0a5",
    "tfrecord/train/dialogues-00003-of-00004.tfrecord": "4483bfd535b5da922c553703c865e2ce6d1d82cd7af30260716c98cbb6ddadcf",
}
SCORE_DIGESTS = {
    "blind": "f2a0a2977c852d04e1489002513fa7e1eeea4f174dda2ac1f7cbdeabe9da7e28",
    "cfar": "7d124c7aa109d18303eb945b0edcd44caf1da290d738bf20df1cb7532332d498",
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
        assert synth.run(["data", "--quiet"]) in (0, None)
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
        assert demo.run([str(tmp_path / "demo"), "--tiny"]) == 0
    scores = _scores(str(tmp_path / "demo" / "results"))
    if os.environ.get("SARCHAT_PRINT_GOLDEN"):
        print(json.dumps(scores, indent=1))
    assert scores == SCORE_DIGESTS
