"""Shared fixtures: small hand-written COCO datasets with known boxes; and the session's scratch
places, so the suite writes nothing outside pytest's temporary folder."""
import fcntl
import json
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


def _shared_tiny_demo(tmp_path_factory):
    """One `sarchat demo --output OUT --tiny` per test run, shared by pytest-xdist's workers: the
    first to ask builds it under a lock in the run's temporary folder, then runs the same command into
    the same folder again (the rerun, which test_demo checks, must happen before any test reads OUT:
    it rewrites files there); the others read its record."""
    if "record" not in _TINY_DEMO:
        shared = tmp_path_factory.getbasetemp()
        if os.environ.get("PYTEST_XDIST_WORKER"):  # each worker's basetemp is a folder of the run's
            shared = shared.parent
        record = shared / "tiny-demo.json"
        with open(shared / "tiny-demo.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not record.exists():
                out = str(shared / "tiny-demo" / "sarchat-demo")
                rc, stdout, stderr, seconds = run_demo(["--output", out] + TINY_DEMO_ARGS)
                assert rc == 0, f"demo failed:\n{stdout}\n{stderr}"
                cfar = os.path.join(out, "runs", "cfar", "predictions.parquet")
                cfar_bytes = os.path.getsize(cfar)
                rerun = run_demo(["--output", out] + TINY_DEMO_ARGS)[:3]
                record.write_text(json.dumps({"run": [out, stdout, stderr, seconds], "rerun": rerun,
                                              "cfar_bytes_before_rerun": cfar_bytes}))
        _TINY_DEMO["record"] = json.loads(record.read_text())
    return _TINY_DEMO["record"]


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    """(OUT, stdout, stderr, seconds) of the run's `sarchat demo --output OUT --tiny` (read it, never write)."""
    return tuple(_shared_tiny_demo(tmp_path_factory)["run"])


@pytest.fixture(scope="session")
def tiny_demo_rerun(tmp_path_factory):
    """The same demo command run again into OUT: {"rerun": (exit, stdout, stderr), "cfar_bytes_before_rerun"}."""
    return _shared_tiny_demo(tmp_path_factory)


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
