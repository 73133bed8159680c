"""Kill `sarchat infer` with SIGKILL mid-run, rerun it: exactly one prediction per sample, none lost."""
import json
import os
import signal
import time

import pyarrow.parquet as pq

from tests import cli_process
from tests.helpers import count_lines
from sarchat.inference import store
from sarchat.inference.backends.base import Backend, Result
from tests.fixture_dataset import write_fixture_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class SlowBackend(Backend):
    """A deterministic, slow stand-in for a model (loaded by `--backend tests.test_inference_resume:SlowBackend`)."""

    name = "slow"
    fixed_adapter = "sarchat"
    reads_images = False
    default_batch_size = 2

    def fingerprint(self):
        return {"kind": "test", "name": "slow"}

    def sampling(self):
        return {"deterministic": True}

    def predict(self, samples):
        time.sleep(float(os.environ.get("SLOW_BACKEND_DELAY", "0.1")))
        return [Result(f"answer to {s.id}", None, 0.1) for s in samples]


def test_sigkill_then_resume(tmp_path):
    generated, _, rows = write_fixture_dataset(str(tmp_path / "data"), n_images=5, seed=2)
    ids = sorted(r["id"] for r in rows["test"])
    assert len(ids) >= 20
    out = tmp_path / "out"
    cmd = ["infer", "--dataset", generated, "--output", str(out),
           "--backend", "tests.test_inference_resume:SlowBackend", "--model", "slow", "--no-progress"]
    env = cli_process.repo_env(dict(os.environ, SLOW_BACKEND_DELAY="0.1"))
    proc = cli_process.start_sarchat(cmd, cwd=REPO, env=env)
    deadline = time.time() + 30
    part = None
    while time.time() < deadline:
        keys = store.run_keys(str(out))
        if keys:
            parts = store.part_files(str(out), keys[0])
            if parts and count_lines(parts[0]) >= 6:
                part = parts[0]
                break
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.02)
    assert part, "the run never got going"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    written = count_lines(part)
    assert 6 <= written < len(ids)
    assert not (out / "predictions.parquet").exists()  # killed before the merge

    # a torn last line, as if the kill had landed inside a write
    with open(part, "ab") as fh:
        fh.write(b'{"id": "' + ids[-1].encode() + b'", "prediction": "half')

    env["SLOW_BACKEND_DELAY"] = "0"
    done = cli_process.run_sarchat(cmd, cwd=REPO, env=env, timeout=60)
    assert done.returncode == 0, done.stderr

    preds = pq.read_table(out / "predictions.parquet").to_pylist()
    assert [p["id"] for p in preds] == ids                        # none lost, none twice
    assert all(p["prediction"] == f"answer to {p['id']}" and p["error"] is None for p in preds)
    records = store.read_records(part)
    assert sorted(r["id"] for r in records) == ids                 # the store too: one record per id
    manifest = json.loads((out / "manifest.json").read_text())
    counts = manifest["shards"][0]["counts"]
    assert counts["skipped"] == written and counts["done"] == len(ids) - written
    history = (out / "runs" / manifest["run_key"] / "history.jsonl").read_text().splitlines()
    assert json.loads(history[-1])["status"] == "done"
