"""`sarchat infer` against raw vLLM, as ratios measured in one run (run with a python that has vLLM).

    PY=$(bash .ci/vllm_env.sh | tail -n 1)
    PYTHONPATH=. VLLM_CPU_KVCACHE_SPACE=2 $PY benchmarks/infer_vllm.py [--adapter llava-1.5]
        [--images 16] [--batch-size 32] [--repeats 3] [--max-tokens 16] [--skip-server]
        [--hidden 256 --layers 2]   # a bigger tiny model: more of each sample is the engine's
        [--engine-arg KEY=VALUE ...]
    PYTHONPATH=. python benchmarks/infer_vllm.py --fake-engine   # a run's cost besides the engine

1. Engine: `sarchat infer --backend vllm` (read Parquet, images to data URLs, the adapter's
   messages, one `LLM.chat` per batch, fsync'd store, merge into predictions.parquet) against a raw
   loop of `LLM.chat` over the same conversations in batches of the same size, with the same
   sampling -- both on ONE `vllm.LLM` (injected into our backend), so engine start-up is out of both.
2. Server: `--backend openai` against a minimal asyncio+aiohttp client posting the same
   /v1/chat/completions bodies with the same concurrency, both on one
   `python -m vllm.entrypoints.openai.api_server` on 127.0.0.1.

Each figure is samples/s over the whole split; the two sides alternate, `--repeats` times, and the
ratio of the medians is printed (>= 1.0 means ours is as fast), with `extra_s`: the seconds a run of
ours takes beyond the raw loop over the split (its fixed cost, when the per-sample work is equal). The model is a tiny random
checkpoint built here (tests.tiny_llava / tiny_qwen2vl) unless --model names one; the
data are tests.fixture_dataset's (no Beam needed in the vLLM environment).
"""
import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

TINY = {"llava-1.5": "tests.tiny_llava", "qwen2-vl": "tests.tiny_qwen2vl",
        "qwen2.5-vl": "tests.tiny_qwen25vl"}


def _cfg(dataset, out, args, backend, model, *extra):
    from sarchat.inference.run import parse_config

    # the InferenceConfig `sarchat infer` builds from these flags (what execute() and the backends take);
    # --engine-arg is the in-process engine's (the server side's engine settings are its own flags)
    engine_args = [a for kv in getattr(args, "engine_arg", []) for a in ("--engine-arg", kv)] if backend == "vllm" else []
    return parse_config([
        "--dataset", dataset, "--split", "test", "--backend", backend, "--model", model, "--adapter", args.adapter,
        "--output", out, "--max-tokens", str(args.max_tokens), "--batch-size", str(args.batch_size),
        "--no-progress", *engine_args, *extra])


def _samples(dataset, adapter):
    from sarchat.inference.dataset import BASE_COLUMNS, image_location, load_rows, resolve_image_root

    root = resolve_image_root(dataset)
    return [(r, image_location(root, r["image_path"])) for r in load_rows(dataset, "test", columns=BASE_COLUMNS)]


def _conversation(adapter, row, location):
    from sarchat.inference.dataset import image_data_url, read_image_bytes

    url = image_data_url(read_image_bytes(location), location, adapter.pad_to_multiple)
    return adapter.build_messages(row, url)


def bench_engine(args, dataset, model, workdir):
    from vllm import LLM, SamplingParams

    from sarchat.inference.backends.vllm_backend import VllmBackend
    from sarchat.inference.run import execute, resolve_adapter

    cfg0 = _cfg(dataset, os.path.join(workdir, "unused"), args, "vllm", model)
    adapter = resolve_adapter(cfg0, VllmBackend)
    probe = VllmBackend(cfg0, adapter)
    kwargs = probe.engine_kwargs()
    kwargs.setdefault("enforce_eager", True)
    llm = LLM(**kwargs)
    sp_fields = {k: v for k, v in probe.sampling().items() if k != "chat_template_sha"}
    template = probe.chat_template
    samples = _samples(dataset, adapter)
    # the runner feeds samples grouped by image, so the raw loop does too
    samples.sort(key=lambda s: (s[0]["image_path"], s[0]["id"]))

    def raw():
        t0 = time.perf_counter()
        sp = SamplingParams(**sp_fields)
        for i in range(0, len(samples), args.batch_size):
            convs = [_conversation(adapter, r, loc) for r, loc in samples[i:i + args.batch_size]]
            llm.chat(convs, sampling_params=sp, use_tqdm=False, chat_template=template)
        return len(samples) / (time.perf_counter() - t0)

    def ours(k):
        out = os.path.join(workdir, f"engine-{k}")
        cfg = _cfg(dataset, out, args, "vllm", model)
        t0 = time.perf_counter()
        assert execute(cfg, backend=VllmBackend(cfg, adapter, engine=llm)) == 0
        return len(samples) / (time.perf_counter() - t0)

    raw()  # warm-up: vLLM's multimodal caches, allocator, the first-call costs of both sides
    return _alternate(raw, ours, args.repeats, len(samples))


def bench_fake(args, dataset):
    """Seconds of a whole `sarchat infer --backend vllm` run whose engine answers at once
    (tests/fake_vllm.py): what a run costs besides the engine -- the Parquet read, the images
    (read, checked, base64'd), the store, the merge and the manifests. No vLLM needed."""
    from sarchat.inference.backends.vllm_backend import VllmBackend
    from sarchat.inference.run import execute, resolve_adapter
    from tests.fake_vllm import FakeLLM, FakeSamplingParams

    with tempfile.TemporaryDirectory(prefix="infer_fake_") as workdir:
        runs = []
        for k in range(args.repeats + 1):  # the first is a warm-up (imports, page cache)
            cfg = _cfg(dataset, os.path.join(workdir, f"fake-{k}"), args, "vllm", "Qwen/Qwen2-VL-7B-Instruct")
            backend = VllmBackend(cfg, resolve_adapter(cfg, VllmBackend), engine=FakeLLM(),
                                  sampling_params_cls=FakeSamplingParams)
            t0 = time.perf_counter()
            assert execute(cfg, backend=backend) == 0
            runs.append(time.perf_counter() - t0)
        return {"samples": len(_samples(dataset, None)), "run_s": round(statistics.median(runs[1:]), 3),
                "runs_s": [round(x, 3) for x in runs[1:]]}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_server(args, dataset, model, workdir):
    import aiohttp

    from sarchat.inference.backends.openai_backend import OpenAIBackend
    from sarchat.inference.run import execute, resolve_adapter

    port = _free_port()
    base = f"http://127.0.0.1:{port}/v1"
    cfg0 = _cfg(dataset, os.path.join(workdir, "unused"), args, "openai", "tiny", "--base-url", base,
                "--concurrency", str(args.concurrency))
    adapter = resolve_adapter(cfg0, OpenAIBackend)
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--served-model-name",
           "tiny", "--host", "127.0.0.1", "--port", str(port), "--enforce-eager", "--seed", "0",
           "--limit-mm-per-prompt", json.dumps({"image": 1}),
           # our backend sends the chat template with each request (as the raw bodies below do)
           "--trust-request-chat-template"]
    for key, value in adapter.engine_kwargs.items():
        cmd += ["--" + key.replace("_", "-")] + ([] if value is True else
                                                  [json.dumps(value) if isinstance(value, dict) else str(value)])
    if adapter.chat_template:  # what `--backend vllm` would apply; the server gets it at start-up
        path = os.path.join(workdir, "template.jinja")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(adapter.chat_template)
        cmd += ["--chat-template", path]
    log = open(os.path.join(workdir, "server.log"), "w", encoding="utf-8")
    env = dict(os.environ)
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        _wait_ready(base, server, os.path.join(workdir, "server.log"))
        samples = _samples(dataset, adapter)
        probe = OpenAIBackend(cfg0, adapter)
        sampling = probe.sampling()
        bodies = [json.dumps({"model": "tiny", "messages": _conversation(adapter, r, loc), **sampling})
                  for r, loc in samples]

        async def post_all(payloads):
            sem = asyncio.Semaphore(args.concurrency)
            async with aiohttp.ClientSession(trust_env=False) as session:
                async def one(body):
                    async with sem:
                        async with session.post(base + "/chat/completions", data=body,
                                                headers={"Content-Type": "application/json"}) as resp:
                            doc = await resp.json()
                            return doc["choices"][0]["message"]["content"]
                return await asyncio.gather(*(one(b) for b in payloads))

        def raw():
            t0 = time.perf_counter()
            # the raw client also builds its bodies (image read, base64, messages) inside the timing
            payloads = [json.dumps({"model": "tiny", "messages": _conversation(adapter, r, loc), **sampling})
                        for r, loc in samples]
            asyncio.run(post_all(payloads))
            return len(samples) / (time.perf_counter() - t0)

        def ours(k):
            out = os.path.join(workdir, f"server-{k}")
            cfg = _cfg(dataset, out, args, "openai", "tiny", "--base-url", base, "--concurrency", str(args.concurrency))
            t0 = time.perf_counter()
            assert execute(cfg, backend=OpenAIBackend(cfg, adapter)) == 0
            return len(samples) / (time.perf_counter() - t0)

        asyncio.run(post_all(bodies))  # warm-up
        return _alternate(raw, ours, args.repeats, len(samples))
    finally:
        os.killpg(server.pid, 15)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait()
        log.close()


def _wait_ready(base, proc, log_path, timeout=600):
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with opener.open(base + "/models", timeout=5):
                return
        except OSError:
            time.sleep(1)
    with open(log_path, encoding="utf-8", errors="replace") as fh:
        raise RuntimeError(f"vLLM server did not start:\n{fh.read()[-3000:]}")


def _alternate(raw, ours, repeats, n):
    raws, ourss = [], []
    for k in range(repeats):  # alternate, so drift in the machine's load hits both sides alike
        if k % 2 == 0:
            raws.append(raw())
            ourss.append(ours(k))
        else:
            ourss.append(ours(k))
            raws.append(raw())
    r, o = statistics.median(raws), statistics.median(ourss)
    # what a run costs beyond the raw loop over the split, in seconds (negative: ours is faster)
    return {"samples": n, "raw_sps": round(r, 3), "ours_sps": round(o, 3), "ratio": round(o / r, 3),
            "raw_s": round(n / r, 3), "extra_s": round(n / o - n / r, 3),
            "raw_runs": [round(x, 3) for x in raws], "ours_runs": [round(x, 3) for x in ourss]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--adapter", default="llava-1.5", choices=sorted(TINY))
    p.add_argument("--model", default=None, help="a checkpoint folder (default: a tiny random one built here)")
    p.add_argument("--dataset", default=None, help="a `sarchat generate` output (default: a fixture set)")
    p.add_argument("--images", type=int, default=16, help="fixture images (about 7 dialogues each)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--hidden", type=int, default=256, help="the tiny model's text width (its builder's --hidden)")
    p.add_argument("--layers", type=int, default=2, help="the tiny model's text layers (its builder's --layers)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--engine-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="a vllm.LLM argument for both sides (as `sarchat infer --engine-arg`); repeatable")
    p.add_argument("--skip-engine", action="store_true")
    p.add_argument("--fake-engine", action="store_true",
                   help="only time whole runs against an engine that answers at once (no vLLM needed)")
    p.add_argument("--skip-server", action="store_true")
    args = p.parse_args(argv)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from tests.fixture_dataset import write_fixture_dataset

    with tempfile.TemporaryDirectory(prefix="infer_vllm_") as workdir:
        dataset = args.dataset or write_fixture_dataset(os.path.join(workdir, "data"), n_images=args.images,
                                                        seed=1)[0]
        if args.fake_engine:
            print(json.dumps({"fake_engine": bench_fake(args, dataset)}))
            return
        model = args.model
        if model is None:
            model = os.path.join(workdir, "model")
            subprocess.run([sys.executable, "-m", TINY[args.adapter], model, "--dataset", dataset,
                            "--hidden", str(args.hidden), "--layers", str(args.layers)], check=True,
                           stdout=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=REPO))
        report = {"adapter": args.adapter, "batch_size": args.batch_size, "concurrency": args.concurrency,
                  "max_tokens": args.max_tokens, "repeats": args.repeats,
                  "model": args.model or f"tiny random, hidden {args.hidden}, {args.layers} layers"}
        if not args.skip_server:  # first: the server must not share the CPUs with an in-process engine
            report["server"] = bench_server(args, dataset, model, workdir)
            print(json.dumps({"server": report["server"]}), flush=True)
        if not args.skip_engine:
            report["engine"] = bench_engine(args, dataset, model, workdir)
        print(json.dumps(report, indent=1))
        for side, what in (("engine", "sarchat infer --backend vllm"), ("server", "sarchat infer --backend openai")):
            if side in report:
                f = report[side]
                print(f"{what}: {f['ours_sps']:.2f} samples/s; raw loop: {f['raw_sps']:.2f} samples/s; "
                      f"ratio {f['ratio']:.3f} ({f['samples']} samples, medians of {args.repeats})")


if __name__ == "__main__":
    main()
