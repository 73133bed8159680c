"""Shared fixtures: small hand-written COCO datasets with known boxes."""

import pytest

from tests.helpers import TINY_DEMO_ARGS, known_dataset, run_demo, write_coco  # noqa: F401

@pytest.fixture
def known_root(tmp_path):
    images, annotations = known_dataset()
    root = tmp_path / "data"
    write_coco(str(root), "test", images, annotations)
    write_coco(str(root), "train", images[:1], annotations[:3])
    return root


_TINY_DEMO = {}


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    """(OUT, stdout, stderr, seconds) of one `sarchat demo --output OUT --images 30 --tiny` per session."""
    if "run" not in _TINY_DEMO:
        out = str(tmp_path_factory.mktemp("demo") / "sarchat-demo")
        rc, stdout, stderr, seconds = run_demo(["--output", out] + TINY_DEMO_ARGS)
        assert rc == 0, f"demo failed:\n{stdout}\n{stderr}"
        _TINY_DEMO["run"] = (out, stdout, stderr, seconds)
    return _TINY_DEMO["run"]
