"""`sarchat infer --output URL`: a local store mirrored to object storage (inference/remote.py).

memory:// stands in for gs:// inside one process; file:// where a subprocess must see the same
"bucket" (the SIGKILL test). Each test uses its own bucket name.
"""
import io
import json
import logging
import os
import signal
import time

import fsspec
import pyarrow.parquet as pq
import pytest

from sarchat.inference import remote, store
from tests.helpers import infer as run
from tests.fixture_dataset import write_fixture_dataset
from tests import cli_process
from tests.helpers import count_lines

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("remotedata")
    generated, _, rows = write_fixture_dataset(str(root), n_images=5, seed=4)
    return generated, rows["test"]


def _remote_bytes(url):
    with fsspec.open(url, "rb") as fh:
        return fh.read()


def _remote_preds(url):
    return pq.read_table(io.BytesIO(_remote_bytes(url + "/predictions.parquet"))).to_pylist()


def _cfar(generated, url, work, *extra):
    return run(["--dataset", generated, "--backend", "cfar", "--output", url, "--work-dir", str(work),
                "--no-progress", *extra])


def test_published_to_the_url_and_resumed_on_a_fresh_node(dataset, tmp_path):
    generated, rows = dataset
    url = "memory://sarchat-remote-one/runs/cfar"
    assert _cfar(generated, url, tmp_path / "node-a") == 0
    ids = sorted(r["id"] for r in rows)
    preds = _remote_preds(url)
    assert [p["id"] for p in preds] == ids and not any(p["error"] for p in preds)
    manifest = json.loads(_remote_bytes(url + "/manifest.json"))
    key = manifest["run_key"]
    fs = fsspec.filesystem("memory")
    assert fs.exists(f"/sarchat-remote-one/runs/cfar/store/{key}/part-00000-of-00001.jsonl")
    assert fs.exists(f"/sarchat-remote-one/runs/cfar/runs/{key}/shard-00000-of-00001.json")
    # the local work folder is an ordinary run folder too
    assert pq.read_table(tmp_path / "node-a" / "predictions.parquet").to_pylist() == preds

    shard_before = manifest["shards"][0]
    # another machine, empty disk: pulls the store and has nothing left to predict; the shard keeps
    # the figures of the run that did the work
    assert _cfar(generated, url, tmp_path / "node-b") == 0
    manifest = json.loads(_remote_bytes(url + "/manifest.json"))
    assert manifest["shards"][0] == shard_before and shard_before["counts"]["done"] == len(ids)
    history = (tmp_path / "node-b" / "runs" / key / "history.jsonl").read_text().splitlines()
    assert [json.loads(h)["counts"]["skipped"] for h in history] == [len(ids)]
    assert _remote_preds(url) == preds
    assert sorted(r["id"] for r in store.read_records(store.part_files(str(tmp_path / "node-b"), key)[0])) == ids


def test_shards_on_separate_nodes_merge_to_one_complete_file(dataset, tmp_path):
    generated, rows = dataset
    url = "memory://sarchat-remote-two/run"
    ids = sorted(r["id"] for r in rows)
    assert _cfar(generated, url, tmp_path / "n0", "--num-shards", "2", "--shard-index", "0") == 0
    first = [p["id"] for p in _remote_preds(url)]
    assert 0 < len(first) < len(ids)                    # only shard 0 so far
    assert _cfar(generated, url, tmp_path / "n1", "--num-shards", "2", "--shard-index", "1") == 0
    assert [p["id"] for p in _remote_preds(url)] == ids   # the last shard to finish saw both parts
    manifest = json.loads(_remote_bytes(url + "/manifest.json"))
    assert sorted(s["shard_index"] for s in manifest["shards"]) == [0, 1]
    assert sum(s["counts"]["done"] for s in manifest["shards"]) == len(ids)
    # --merge-only from a third machine rebuilds the same file from the remote store alone
    before = _remote_preds(url)
    assert _cfar(generated, url, tmp_path / "n2", "--num-shards", "2", "--merge-only") == 0
    assert _remote_preds(url) == before


def test_merge_is_redone_when_another_node_pushes_meanwhile(tmp_path):
    url = "memory://sarchat-remote-three/run"
    fs = fsspec.filesystem("memory")
    key = "k" * 16
    mirror = remote.RemoteRun(url, str(tmp_path / "local"))
    calls = []

    def merge_local():
        calls.append(sorted(os.listdir(tmp_path / "local" / "store" / key)))
        if len(calls) == 1:  # another node publishes its part while this merge runs
            fs.pipe_file(f"/sarchat-remote-three/run/store/{key}/part-00001-of-00002.jsonl", b'{"id": "b"}\n')
        return len(calls)

    fs.pipe_file(f"/sarchat-remote-three/run/store/{key}/part-00000-of-00002.jsonl", b'{"id": "a"}\n')
    assert mirror.merge(key, merge_local) == 2
    assert calls == [["part-00000-of-00002.jsonl"], ["part-00000-of-00002.jsonl", "part-00001-of-00002.jsonl"]]


def test_a_failed_upload_is_a_clear_error_and_nothing_is_lost(dataset, tmp_path, monkeypatch, capsys):
    generated, rows = dataset
    url = "memory://sarchat-remote-four/run"
    fs = fsspec.filesystem("memory")
    real_put = type(fs).put_file
    refuse = {"suffix": ""}   # uploads whose target ends with this fail

    def flaky_put(self, lpath, rpath, **kw):
        if rpath.endswith(refuse["suffix"]):
            raise OSError("quota exceeded")
        return real_put(self, lpath, rpath, **kw)

    monkeypatch.setattr(type(fs), "put_file", flaky_put)
    # a destination that takes nothing: the run stops at its first upload, before any model work
    assert _cfar(generated, url, tmp_path / "node") == 1
    err = capsys.readouterr().err
    assert "upload to memory://sarchat-remote-four/run/runs/" in err and "quota exceeded" in err
    assert "rerun the same command" in err and "Traceback" not in err
    assert store.run_keys(str(tmp_path / "node")) == []        # no part file: nothing was predicted

    # the publication at the end fails: every prediction is kept locally, the rerun only publishes
    refuse["suffix"] = "/predictions.parquet"
    assert _cfar(generated, url, tmp_path / "node") == 1
    assert "upload to memory://sarchat-remote-four/run/predictions.parquet failed" in capsys.readouterr().err
    local = str(tmp_path / "node")
    assert len(store.scan(local, store.run_keys(local)[0])[0]) == len(rows)
    refuse["suffix"] = "/no-such-file"
    assert _cfar(generated, url, tmp_path / "node") == 0
    manifest = json.loads(_remote_bytes(url + "/manifest.json"))
    assert manifest["shards"][0]["counts"]["done"] == len(rows)      # the figures of the run that did it
    history = (tmp_path / "node" / "runs" / manifest["run_key"] / "history.jsonl").read_text().splitlines()
    assert json.loads(history[-1])["counts"]["skipped"] == len(rows)  # published, not predicted again
    assert [p["id"] for p in _remote_preds(url)] == sorted(r["id"] for r in rows)


def test_gcsfs_tracebacks_stay_out_of_the_log(tmp_path, caplog):
    # gcsfs logs every request that ran out of retries with a traceback; the RemoteError says it once
    remote.RemoteRun("memory://sarchat-remote-five/run", str(tmp_path))
    try:
        raise OSError("Cannot connect to host storage.googleapis.com:443")
    except OSError:
        logging.getLogger("gcsfs").exception("_request out of retries")
    (record,) = [r for r in caplog.records if r.name == "gcsfs"]
    assert record.getMessage() == "_request out of retries" and record.exc_info is None
    assert "Traceback" not in caplog.text


def test_default_work_dir_is_per_url(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    a = remote.default_work_dir("gs://bucket/runs/a")
    assert a.startswith(os.path.join(str(tmp_path), "sarchat", "infer"))
    assert remote.default_work_dir("gs://bucket/runs/a/") == a != remote.default_work_dir("gs://bucket/runs/b")


def test_sigkill_then_resume_on_another_node(dataset, tmp_path):
    generated, rows = dataset
    ids = sorted(r["id"] for r in rows)
    bucket = tmp_path / "bucket"
    url = "file://" + str(bucket / "run")
    cmd = ["infer", "--dataset", generated, "--output", url,
           "--backend", "tests.test_inference_resume:SlowBackend", "--model", "slow", "--no-progress",
           "--push-interval", "0"]
    env = cli_process.repo_env(dict(os.environ, SLOW_BACKEND_DELAY="0.1"))
    proc = cli_process.start_sarchat(cmd + ["--work-dir", str(tmp_path / "node-a")], cwd=REPO, env=env)
    deadline, part = time.time() + 30, None
    while time.time() < deadline and part is None:
        parts = sorted((bucket / "run" / "store").glob("*/part-*.jsonl")) if (bucket / "run" / "store").exists() else []
        if parts and count_lines(parts[0]) >= 6:
            part = parts[0]
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.02)
    assert part, "the run never pushed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    pushed = count_lines(part)
    assert 6 <= pushed < len(ids) and not (bucket / "run" / "predictions.parquet").exists()

    env["SLOW_BACKEND_DELAY"] = "0"
    done = cli_process.run_sarchat(cmd + ["--work-dir", str(tmp_path / "node-b")], cwd=REPO, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    preds = pq.read_table(bucket / "run" / "predictions.parquet").to_pylist()
    assert [p["id"] for p in preds] == ids                          # none lost, none twice
    assert sorted(r["id"] for r in store.read_records(str(part))) == ids
    counts = json.loads((bucket / "run" / "manifest.json").read_text())["shards"][0]["counts"]
    assert counts["skipped"] >= pushed and counts["skipped"] + counts["done"] == len(ids)


def test_spawned_shards_publish_one_merged_file(dataset, tmp_path):
    generated, rows = dataset
    url = "file://" + str(tmp_path / "bucket" / "run")
    assert run(["--dataset", generated, "--backend", "cfar", "--output", url, "--work-dir", str(tmp_path / "node"),
                "--no-progress", "--num-shards", "2", "--spawn-shards", "--limit", "12"]) == 0
    preds = pq.read_table(tmp_path / "bucket" / "run" / "predictions.parquet").to_pylist()
    assert len(preds) == 12 and len({p["id"] for p in preds}) == 12
    assert len(list((tmp_path / "bucket" / "run" / "store").glob("*/part-*-of-00002.jsonl"))) == 2
