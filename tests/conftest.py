"""Shared fixtures: small hand-written COCO datasets with known boxes; and the session's scratch
places, so the suite writes nothing outside pytest's temporary folder."""
import fcntl
import json
import os
import sys
import tempfile

import pytest

from sarchat.beam_pipelines import synth
from tests.helpers import TINY_DEMO_ARGS, known_dataset, run_demo, write_coco  # noqa: F401

@pytest.fixture
def known_root(tmp_path):
    images, annotations = known_dataset()
    root = tmp_path / "data"
    write_coco(str(root), "test", images, annotations)
    write_coco(str(root), "train", images[:1], annotations[:3])
    return root


_SHARED = {}


def shared_once(tmp_path_factory, name, build):
    """What `build(folder)` returns (a JSON value), built once per test run and shared by pytest-xdist's
    workers: the first to ask builds it in `folder` under a lock in the run's temporary folder, the
    others read its record. `folder` is for reading only once built."""
    if name not in _SHARED:
        shared = tmp_path_factory.getbasetemp()
        if os.environ.get("PYTEST_XDIST_WORKER"):  # each worker's basetemp is a folder of the run's
            shared = shared.parent
        record = shared / f"{name}.json"
        with open(shared / f"{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not record.exists():
                record.write_text(json.dumps(build(shared / name)))
        _SHARED[name] = json.loads(record.read_text())
    return _SHARED[name]


def _build_tiny_demo(folder):
    """`sarchat demo --output OUT --tiny`, then the same command into the same folder again (the
    rerun, which test_demo checks, must happen before any test reads OUT: it rewrites files there)."""
    out = str(folder / "sarchat-demo")
    rc, stdout, stderr, seconds = run_demo(["--output", out] + TINY_DEMO_ARGS)
    assert rc == 0, f"demo failed:\n{stdout}\n{stderr}"
    cfar_bytes = os.path.getsize(os.path.join(out, "runs", "cfar", "predictions.parquet"))
    rerun = run_demo(["--output", out] + TINY_DEMO_ARGS)[:3]
    return {"run": [out, stdout, stderr, seconds], "rerun": rerun, "cfar_bytes_before_rerun": cfar_bytes}


def _shared_tiny_demo(tmp_path_factory):
    return shared_once(tmp_path_factory, "tiny-demo", _build_tiny_demo)


@pytest.fixture(scope="session")
def default_synth(tmp_path_factory):
    """The folder of `sarchat synth` with its default settings (the demo's dataset), made once per
    test run (read it, never write; copy it to change it)."""
    def build(folder):
        data = str(folder / "data")
        assert synth.run(["--output", data, "--quiet"]) in (0, None)
        return data
    return shared_once(tmp_path_factory, "default-synth", build)


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
