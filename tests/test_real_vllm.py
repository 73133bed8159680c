"""`sarchat infer` against real vLLM: the in-process engine and vLLM's OpenAI-compatible server.

vLLM is not a dependency of the test suite, so this runs where an interpreter with vLLM is named:
SARCHAT_VLLM_PYTHON=/path/to/python (`.ci/vllm_env.sh` builds one for CPUs and prints it;
`.ci/vllm_checks.sh` builds it and runs this file). Elsewhere it is skipped; tests/test_inference_*.py
check the same plumbing against a fake engine in every run.

Everything is built here, nothing is downloaded: a dataset from `sarchat synth` + `sarchat generate`
(5 test images, 30 dialogues), tiny random checkpoints with tokenizers trained locally
(tests/tiny_*.py). Every `sarchat infer` runs as a user runs it, in a
subprocess of the vLLM interpreter with this checkout on PYTHONPATH; the tests read only the run's
user-facing files (RUN/predictions.parquet, RUN/manifest.json) and, to kill a run mid-batch, watch
for the first batch to reach the store.

The engine settings are chosen for start-up time on a 2-core CPU and are the same for both backends:
`enforce_eager=true` (no torch.compile, about 110 s saved per start), the uni-process executor and
VLLM_ENABLE_V1_MULTIPROCESSING=0 for `--backend vllm` (one process, about 40 s saved, and a SIGKILL
of the run kills the engine with it). Greedy answers do not depend on them (checked: the same 30
answers compiled, eager and in-process).
"""
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import re

import pyarrow.parquet as pq
import pytest

from sarchat.transforms.adapters import get_adapter
from tests import cli_process

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_TOKENS = "12"
BATCH = "6"
ENGINE_ARGS = ["--engine-arg", "enforce_eager=true", "--engine-arg", "distributed_executor_backend=uni"]
SERVER_START_S = 300
RUN_TIMEOUT_S = 600

# adapter -> the module that builds its tiny checkpoint (today's families: test-only builders in tests/)
TINY_MODELS = {"qwen2-vl": "tests.tiny_qwen2vl", "llava-1.5": "tests.tiny_llava",
               "qwen2.5-vl": "tests.tiny_qwen25vl", "qwen3-vl": "tests.tiny_qwen3vl",
               "llava-onevision": "tests.tiny_llava_onevision", "gemma-3": "tests.tiny_gemma3"}


def _vllm_python():
    explicit = os.environ.get("SARCHAT_VLLM_PYTHON")
    if explicit:
        return explicit
    import importlib.util

    return sys.executable if importlib.util.find_spec("vllm") is not None else None


VLLM_PYTHON = _vllm_python()
pytestmark = pytest.mark.skipif(VLLM_PYTHON is None,
                                reason="no vLLM here: set SARCHAT_VLLM_PYTHON (bash .ci/vllm_env.sh prints one)")


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update({"VLLM_CPU_KVCACHE_SPACE": "2", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "TOKENIZERS_PARALLELISM": "false",
                "VLLM_ENABLE_V1_MULTIPROCESSING": "0"})
    env.update(extra)
    return env


def _check(proc, what):
    assert proc.returncode == 0, f"{what} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    return proc


def _sarchat_here(*args):
    """A Beam stage (synth, generate) with this interpreter, which has Beam (forked from its warm process)."""
    return _check(cli_process.run_sarchat(list(args), env=_env(), timeout=RUN_TIMEOUT_S), args[0])


def infer_cmd(dataset, model, adapter, output, *extra, backend="vllm"):
    cmd = [VLLM_PYTHON, "-m", "sarchat.beam_pipelines.cli", "infer", "--dataset", dataset, "--split", "test",
           "--backend", backend, "--model", model, "--adapter", adapter, "--output", str(output),
           "--max-tokens", MAX_TOKENS, "--batch-size", BATCH, "--no-progress"]
    if backend == "vllm":
        cmd += ENGINE_ARGS
    return cmd + list(extra)


def infer(*args, **kw):
    proc = subprocess.run(infer_cmd(*args, **kw), capture_output=True, text=True, env=_env(), timeout=RUN_TIMEOUT_S)
    return _check(proc, "sarchat infer")


def predictions(run):
    return {r["id"]: r for r in pq.read_table(os.path.join(run, "predictions.parquet")).to_pylist()}


def manifest(run):
    with open(os.path.join(run, "manifest.json"), encoding="utf-8") as fh:
        return json.load(fh)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("real_vllm")
    _sarchat_here("synth", "--output", str(root / "raw"), "--images", "40", "--seed", "real-vllm", "--quiet")
    _sarchat_here("generate", "--input", str(root / "raw"), "--output", str(root / "out"), "--splits", "test",
                  "--formats", "parquet", "--identify-variants", "1")
    dataset = str(root / "out")
    ids = sorted(r["id"] for path in glob.glob(os.path.join(dataset, "parquet", "test", "*.parquet"))
                 for r in pq.read_table(path, columns=["id"]).to_pylist())
    assert len(ids) >= 20 and len(set(ids)) == len(ids)
    return {"root": root, "dataset": dataset, "ids": ids, "models": TinyModels(root / "models", dataset), "runs": {}}


class TinyModels(dict):
    """adapter -> its tiny checkpoint's folder, built on first use with the others of its xdist
    group, in one process (tests/tiny_checkpoints.py build_many): each worker builds only the
    models of the tests it runs."""

    def __init__(self, root, dataset):
        super().__init__()
        self.root, self.dataset = root, dataset

    def __missing__(self, adapter):
        group = [a for a in TINY_MODELS if _group(a) == _group(adapter) and a not in self]
        _check(subprocess.run([VLLM_PYTHON, "-m", "tests.tiny_checkpoints", str(self.root), "--dataset", self.dataset,
                               *(f"{a}={TINY_MODELS[a]}" for a in group)],
                              capture_output=True, text=True, env=_env(), timeout=RUN_TIMEOUT_S), "tiny checkpoints")
        self.update({a: str(self.root / a) for a in group})
        return self[adapter]


def full_run(work, adapter):
    """The whole test split through `--backend vllm` once per adapter (shared by the tests)."""
    if adapter not in work["runs"]:
        run = work["root"] / "runs" / f"vllm-{adapter}"
        proc = infer(work["dataset"], work["models"][adapter], adapter, run)
        work["runs"][adapter] = (str(run), proc)
    return work["runs"][adapter]


def _group(adapter):
    """xdist groups for `-n 2 --dist loadgroup` (docs/cpu_vllm.md: worth it only with cores to spare):
    every test of the tiny LLaVA-1.5 (kill and resume, run keys, the server) on one worker, the other
    five families on the other; about the same time each."""
    return "llava" if adapter == "llava-1.5" else "families"


@pytest.mark.parametrize("adapter", [pytest.param(a, marks=pytest.mark.xdist_group(_group(a))) for a in TINY_MODELS])
def test_vllm_backend_answers_every_test_id_once_and_a_rerun_does_nothing(work, adapter):
    run, _ = full_run(work, adapter)
    table = pq.read_table(os.path.join(run, "predictions.parquet"))
    ids = table.column("id").to_pylist()
    assert sorted(ids) == work["ids"]  # every test id, exactly once
    rows = predictions(run)
    assert all(r["error"] is None for r in rows.values()), [r["error"] for r in rows.values() if r["error"]][:3]
    m = manifest(run)
    assert (m["backend"], m["adapter"], m["split"]) == ("vllm", adapter, "test")
    assert m["box_format"] == get_adapter(adapter).box_format.spec  # what the scorer will read with
    assert m["predictions"]["rows"] == len(work["ids"]) and m["predictions"]["errors"] == 0
    # the answers come from the model: they differ between inputs (a random model, not a constant)
    assert len({r["prediction"] for r in rows.values()}) > 1

    again = infer(work["dataset"], work["models"][adapter], adapter, run)
    assert f"0 done, 0 failed, {len(work['ids'])} already done" in again.stderr
    assert predictions(run) == rows  # latencies included: nothing was recomputed
    assert manifest(run)["run_key"] == m["run_key"]


@pytest.mark.xdist_group("families")
def test_manifest_records_the_real_vllm_version(work):
    run, _ = full_run(work, "qwen2-vl")
    version = subprocess.run([VLLM_PYTHON, "-c", "import vllm; print(vllm.__version__)"], capture_output=True,
                             text=True, env=_env(), timeout=120).stdout.strip().splitlines()[-1]
    assert manifest(run)["versions"]["vllm"] == version


def _store_lines(run):
    n = 0
    for path in glob.glob(os.path.join(run, "store", "**", "*.jsonl"), recursive=True):
        with open(path, "rb") as fh:
            n += fh.read().count(b"\n")
    return n


@pytest.mark.xdist_group("llava")
def test_sigkill_mid_run_resumes_to_the_same_predictions(work):
    adapter = "llava-1.5"  # its random answers differ between inputs the most
    reference, _ = full_run(work, adapter)
    run = str(work["root"] / "runs" / "killed")
    cmd = infer_cmd(work["dataset"], work["models"][adapter], adapter, run, "--batch-size", "2")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(),
                            start_new_session=True)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while _store_lines(run) == 0 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed:\n" + proc.stderr.read()[-3000:]
        os.killpg(proc.pid, signal.SIGKILL)  # the engine and every thread with it, no clean-up
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    written = _store_lines(run)
    assert 0 < written < len(work["ids"]), f"killed after {written} of {len(work['ids'])}: not mid-run"

    resumed = infer(work["dataset"], work["models"][adapter], adapter, run, "--batch-size", "2")
    assert f"{len(work['ids']) - written} done, 0 failed, {written} already done" in resumed.stderr
    got, want = predictions(run), predictions(reference)
    assert sorted(got) == work["ids"]
    assert {i: r["prediction"] for i, r in got.items()} == {i: r["prediction"] for i, r in want.items()}


def _merge_only_key(work, model, name, *extra):
    """The run key of a configuration, without starting an engine: `--merge-only` on an empty run
    folder refuses (exit 1) with one line that names the key it looked for. Read once per name."""
    known = work.setdefault("keys", {})
    if name not in known:
        known[name] = _read_merge_only_key(work, model, name, *extra)
    return known[name]


def _read_merge_only_key(work, model, name, *extra):
    out = work["root"] / "keys" / name
    proc = subprocess.run(infer_cmd(work["dataset"], model, "llava-1.5", out, "--merge-only", *extra),
                          capture_output=True, text=True, env=_env(), timeout=RUN_TIMEOUT_S)
    found = re.search(r"no predictions for run key ([0-9a-f]{8,})", proc.stderr)
    assert proc.returncode == 1 and found, proc.stderr[-2000:]
    return found.group(1)


@pytest.mark.xdist_group("llava")
def test_run_key_follows_what_decides_the_answers(work):
    """The same flags give the same key; a different template or engine setting gives a new one.
    Read without starting an engine: `--merge-only` on an empty folder names the run key in its
    manifest."""
    model = work["models"]["llava-1.5"]
    template = work["root"] / "other-template.jinja"
    template.write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")

    def key(name, *extra):
        return _merge_only_key(work, model, name, *extra)

    base = key("base")
    assert key("base-again") == base
    assert key("template", "--chat-template", str(template)) != base
    assert key("max-tokens", "--max-tokens", "5") != base


@pytest.mark.xdist_group("llava")
@pytest.mark.parametrize("flags", [["--engine-arg", "max_num_seqs=7"], ["--max-model-len", "2048"]],
                         ids=["engine-arg", "max-model-len"])
def test_run_key_follows_engine_settings(work, flags):
    model = work["models"]["llava-1.5"]
    base = _merge_only_key(work, model, "base")  # the same flags as the other test's base: read once
    assert _merge_only_key(work, model, "engine-" + flags[0].strip("-"), *flags) != base


# ---- the real vLLM OpenAI-compatible server -------------------------------------------------------

def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_args(adapter_name):
    """The vLLM server flags equal to what `--backend vllm` passes to vllm.LLM for this adapter."""
    from sarchat.transforms.adapters import get_adapter

    args = ["--seed", "0", "--limit-mm-per-prompt", json.dumps({"image": 1}), "--enforce-eager",
            "--distributed-executor-backend", "uni"]
    for key, value in get_adapter(adapter_name).engine_kwargs.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        else:
            args += [flag, json.dumps(value) if isinstance(value, (dict, list)) else str(value)]
    return args


class Server:
    """`python -m vllm.entrypoints.openai.api_server` on 127.0.0.1 (`vllm serve` crashes on vllm-cpu
    0.32.0); bounded start-up wait, always killed with its whole process group."""

    def __init__(self, model, name, args, log_path):
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log = open(log_path, "w", encoding="utf-8")
        cmd = [VLLM_PYTHON, "-m", "vllm.entrypoints.openai.api_server", "--model", model,
               "--served-model-name", name, "--host", "127.0.0.1", "--port", str(self.port),
               # vLLM refuses a chat template sent with a request unless told to trust it; the openai
               # backend sends the adapter's (or --chat-template's) so both backends prompt alike.
               "--trust-request-chat-template", *args]
        env = _env()
        env.pop("VLLM_ENABLE_V1_MULTIPROCESSING")  # the server runs its engine in its own process
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.log_path = log_path

    def wait_ready(self, timeout=SERVER_START_S):
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with opener.open(self.base_url + "/models", timeout=5) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(1)
        self.stop()
        with open(self.log_path, encoding="utf-8", errors="replace") as fh:
            tail = fh.read()[-4000:]
        raise AssertionError(f"vLLM server not ready in {timeout} s (exit {self.proc.returncode}):\n{tail}")

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def servers(work):
    started = {}
    try:
        def get(adapter):
            if adapter not in started:
                started[adapter] = Server(work["models"][adapter], f"tiny-{adapter}", server_args(adapter),
                                          str(work["root"] / f"server-{adapter}.log")).wait_ready()
            return started[adapter]
        yield get
    finally:
        for server in started.values():
            server.stop()


def _openai_run(work, server, adapter, name, *extra):
    run = work["root"] / "runs" / name
    proc = infer(work["dataset"], f"tiny-{adapter}", adapter, run, "--base-url", server.base_url,
                 "--concurrency", "4", "--max-retries", "1", *extra, backend="openai")
    return str(run), proc


def _answers(run):
    return {i: r["prediction"] for i, r in predictions(run).items()}


def _same_answers(got_run, want_run, ids):
    got, want = predictions(got_run), predictions(want_run)
    assert sorted(got) == ids
    assert all(r["error"] is None for r in got.values()), [r["error"] for r in got.values() if r["error"]][:3]
    differ = [i for i in ids if got[i]["prediction"] != want[i]["prediction"]]
    assert not differ, f"{len(differ)}/{len(ids)} answers differ, e.g. {got[differ[0]]['prediction']!r} " \
                       f"vs {want[differ[0]]['prediction']!r}"


@pytest.mark.xdist_group("llava")
def test_same_template_same_answers_on_both_backends(work, servers):
    """LLaVA with one template, the checkpoint's, on both backends: `--chat-template FILE` for
    `--backend vllm`; for `--backend openai` the server applies its checkpoint's template (today the
    backend sends none) or the one `--chat-template` names (once it sends it) -- the same either way."""
    from tests.tiny_llava import CHAT_TEMPLATE

    template = work["root"] / "llava-checkpoint-template.jinja"
    template.write_text(CHAT_TEMPLATE)
    vllm_run = str(work["root"] / "runs" / "vllm-llava-checkpoint-template")
    infer(work["dataset"], work["models"]["llava-1.5"], "llava-1.5", vllm_run, "--chat-template", str(template))
    default_run, _ = full_run(work, "llava-1.5")
    assert manifest(vllm_run)["run_key"] != manifest(default_run)["run_key"]  # another template, another key
    # (The two templates differ by one token before "ASSISTANT:", too little to move a random tiny
    # model's greedy answers; that the template is sent is checked against a local fake server in
    # tests/test_inference_openai.py.)
    run, _ = _openai_run(work, servers("llava-1.5"), "llava-1.5", "openai-llava-checkpoint-template",
                         "--chat-template", str(template))
    _same_answers(run, vllm_run, work["ids"])
    m = manifest(run)
    assert m["backend"] == "openai" and m["predictions"]["rows"] == len(work["ids"])
    before = predictions(run)
    _, again = _openai_run(work, servers("llava-1.5"), "llava-1.5", "openai-llava-checkpoint-template",
                           "--chat-template", str(template))
    assert f"0 done, 0 failed, {len(work['ids'])} already done" in again.stderr
    assert predictions(run) == before


@pytest.mark.xdist_group("llava")
def test_openai_backend_sends_the_adapters_template(work, servers):
    default_run, _ = full_run(work, "llava-1.5")
    run, _ = _openai_run(work, servers("llava-1.5"), "llava-1.5", "openai-llava-adapter-template")
    _same_answers(run, default_run, work["ids"])


@pytest.mark.xdist_group("llava")
def test_vllm_server_answers_an_image_it_cannot_decode_so_the_client_must_check(work, servers, tmp_path):
    """Why the openai backend decodes (a JPEG at 1/8 scale) what it sends: this vLLM's server
    answers, with HTTP 200, a JPEG whose header opens but whose Huffman table is garbage (the
    decode error is swallowed inside exif_transpose; the model sees a blank image). Our client
    records that image's samples as errors and sends nothing for them."""
    import base64
    import shutil
    import urllib.request

    images = work["root"] / "raw-garbled"
    if not images.exists():
        shutil.copytree(work["root"] / "raw", images)
    rows = [r for path in sorted(glob.glob(os.path.join(work["dataset"], "parquet", "test", "*.parquet")))
            for r in pq.read_table(path, columns=["id", "image_path"]).to_pylist()]
    garbled = sorted(r["image_path"] for r in rows if r["image_path"].endswith(".jpg"))[0]
    path = images / garbled
    data = path.read_bytes()
    at = data.find(b"\xff\xc4")
    path.write_bytes(data[:at + 5] + b"\xff" * 16 + data[at + 21:])
    server = servers("llava-1.5")
    body = {"model": "tiny-llava-1.5", "max_tokens": 2, "temperature": 0.0, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode()}},
        {"type": "text", "text": "What is in the image?"}]}]}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(server.base_url + "/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with opener.open(req, timeout=RUN_TIMEOUT_S) as resp:
        assert resp.status == 200  # if this ever fails, vLLM has started to refuse such images itself
    run = work["root"] / "runs" / "openai-garbled-image"
    proc = subprocess.run(infer_cmd(work["dataset"], "tiny-llava-1.5", "llava-1.5", run, "--base-url",
                                    server.base_url, "--concurrency", "4", "--max-retries", "1",
                                    "--image-root", str(images), backend="openai"),
                          capture_output=True, text=True, env=_env(), timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 1, proc.stderr[-3000:]
    bad = sorted(r["id"] for r in rows if r["image_path"] == garbled)
    got = predictions(str(run))
    assert sorted(got) == work["ids"]  # nothing missing
    failed = sorted(i for i, r in got.items() if r["error"])
    assert failed == bad, [got[i]["error"] for i in failed][:3]
    assert all(got[i]["error"].startswith("corrupt image ") for i in bad), got[bad[0]]["error"]
