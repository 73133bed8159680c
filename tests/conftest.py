"""Shared fixtures: small hand-written COCO datasets with known boxes; and the session's scratch
places, so the suite writes nothing outside pytest's temporary folder."""
import os
import sys
import tempfile

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
    """(OUT, stdout, stderr, seconds) of one `sarchat demo --output OUT --tiny` per session (pytest-xdist: per worker)."""
    if "run" not in _TINY_DEMO:
        out = str(tmp_path_factory.mktemp("demo") / "sarchat-demo")
        rc, stdout, stderr, seconds = run_demo(["--output", out] + TINY_DEMO_ARGS)
        assert rc == 0, f"demo failed:\n{stdout}\n{stderr}"
        _TINY_DEMO["run"] = (out, stdout, stderr, seconds)
    return _TINY_DEMO["run"]


# ---- nothing outside pytest's temporary folder -------------------------------------------------
# Code under test (and the libraries it drives: Beam's local job service, Hugging Face `datasets`,
# TensorFlow, matplotlib) puts scratch files in the system temp folder and caches under the home
# folder. For the whole session these point into pytest's own temporary folder (`--basetemp`, else
# pytest-of-<user>/pytest-<n>, which pytest prunes), so a run leaves nothing anywhere else. A test that
# needs its own place still sets it (monkeypatch.setenv, or a subprocess env).
SCRATCH_ENV = {
    "TMPDIR": "tmp", "TEMP": "tmp", "TMP": "tmp",
    "HF_HOME": "hf-home", "HF_DATASETS_CACHE": "hf-home/datasets", "HF_HUB_CACHE": "hf-home/hub",
    "XDG_CACHE_HOME": "xdg-cache", "XDG_CONFIG_HOME": "xdg-config", "MPLCONFIGDIR": "matplotlib",
    "TORCH_HOME": "torch", "KERAS_HOME": "keras", "TFHUB_CACHE_DIR": "tfhub",
}


@pytest.hookimpl(trylast=True)  # after pytest's tmp_path plugin has set up its factory
def pytest_configure(config):
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is None:
        return
    root = factory.mktemp("session-scratch", numbered=True)
    for name, rel in SCRATCH_ENV.items():
        path = root / rel
        path.mkdir(parents=True, exist_ok=True)
        os.environ[name] = str(path)
    tempfile.tempdir = os.environ["TMPDIR"]  # tempfile caches the folder it found first
    if "datasets" in sys.modules:  # imported already (a plugin): its cache paths were read at import
        import datasets.config as hf_config

        hf_config.HF_DATASETS_CACHE = os.environ["HF_DATASETS_CACHE"]
