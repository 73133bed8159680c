"""`sarchat infer --backend openai`'s own overhead, against a local server that answers at once.

    PYTHONPATH=. python benchmarks/infer_client.py [--dataset GENERATED] [--limit 5000]
        [--concurrency 16] [--repeats 3] [--adapter qwen2-vl] [--batch-size N]

A fake OpenAI-compatible server (aiohttp, its own process on 127.0.0.1) reads each request body
whole and answers a fixed completion, so what is timed is the client: building the requests
(image, base64, JSON), HTTP, and for ours also the run's own work (Parquet read, the fsync'd store,
the merge into predictions.parquet).

Three clients send the same requests (the first `--limit` test dialogues, in the runner's order:
grouped by image) at the same concurrency:

  ours           `sarchat infer --backend openai` in-process (`execute`), the whole command timed
  raw            a minimal asyncio + aiohttp client (one session) that builds each body per request
                 from the file: read the image, base64, the adapter's messages, json.dumps; no
                 image check, no store, no cache
  raw, prebuilt  the same client posting bodies built before the clock starts (the ceiling)

Before timing, one untimed round of ours and raw has the server hash every body: the two must
send the same multiset of bodies, byte for byte (the comparison is only fair if they do).
Each repeat runs the three in a rotating order; the figures are medians over `--repeats` and
the ratio is median(ours) / median(raw). Without --dataset, a SARDet-like set is made here
(`sarchat synth --images 600 --test-fraction 0.5` + `sarchat generate --splits test`: 300 test
images, 80% JPEG, about 19 dialogues per image).
"""
import argparse
import asyncio
import base64
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

MODEL = "bench-model"
ANSWER = "There is 1 ship. {<10><20><30><40>}"


# ---- the fake server (its own process) --------------------------------------------------------

def serve(port_file):
    """A bare asyncio HTTP/1.1 server (keep-alive, Content-Length bodies): an aiohttp server reads
    large bodies at about 200 MB/s here, which would cap every client below what it can send."""
    import hashlib

    state = {"hash": False, "digests": collections.Counter(), "posts": 0}

    def response(doc, status="200 OK"):
        body = json.dumps(doc).encode()
        return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Connection: keep-alive\r\n\r\n").encode() + body

    chat_reply = response({"id": "x", "object": "chat.completion", "model": MODEL,
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": ANSWER}}]})
    models_reply = response({"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    class Http(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport, self.head, self.left, self.request = transport, bytearray(), None, None

        def data_received(self, data):
            view = memoryview(data)
            while len(view):
                if self.left is None:  # reading a request head
                    self.head += view
                    view = view[len(view):]
                    end = self.head.find(b"\r\n\r\n")
                    if end < 0:
                        return
                    head, rest = bytes(self.head[:end]), bytes(self.head[end + 4:])
                    self.head = bytearray()
                    lines = head.split(b"\r\n")
                    method, path = lines[0].split(b" ")[:2]
                    length = 0
                    for line in lines[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    self.request = [method, path, hashlib.sha256() if state["hash"] else None,
                                    bytearray() if path == b"/control" else None]
                    self.left = length
                    view = memoryview(rest)
                take = min(self.left, len(view))
                if self.request[2] is not None:
                    self.request[2].update(view[:take])
                if self.request[3] is not None:
                    self.request[3] += view[:take]
                self.left -= take
                view = view[take:]
                if self.left == 0:
                    self.left = None
                    self.answer(*self.request)

        def answer(self, method, path, digest, body):
            if path == b"/v1/models":
                return self.transport.write(models_reply)
            if path == b"/control":  # {"hash": bool}: switch body hashing, answer (and reset) the counts
                doc = json.loads(bytes(body))
                out = {"posts": state["posts"], "digests": dict(state["digests"])}
                state.update(hash=bool(doc.get("hash")), digests=collections.Counter(), posts=0)
                return self.transport.write(response(out))
            state["posts"] += 1
            if state["hash"]:
                state["digests"][digest.hexdigest()] += 1
            self.transport.write(chat_reply)

    async def main():
        server = await asyncio.get_running_loop().create_server(Http, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        with open(port_file + ".tmp", "w") as fh:
            fh.write(str(port))
        os.replace(port_file + ".tmp", port_file)
        await server.serve_forever()

    asyncio.run(main())


class Server:
    def __init__(self, workdir):
        self.port_file = os.path.join(workdir, "server.port")
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", self.port_file],
                                     env=dict(os.environ, PYTHONPATH=REPO))
        deadline = time.monotonic() + 60
        while not os.path.exists(self.port_file):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the fake server did not start")
            time.sleep(0.05)
        with open(self.port_file) as fh:
            self.base = f"http://127.0.0.1:{int(fh.read())}/v1"

    def control(self, hash_bodies):
        import urllib.request

        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        req = urllib.request.Request(self.base.rsplit("/v1", 1)[0] + "/control",
                                     data=json.dumps({"hash": hash_bodies}).encode(), method="POST")
        with opener.open(req, timeout=30) as resp:
            return json.loads(resp.read())

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


# ---- the clients --------------------------------------------------------------------------------

def make_dataset(workdir):
    env = dict(os.environ, PYTHONPATH=REPO)
    cli = [sys.executable, "-m", "sarchat.beam_pipelines.cli"]
    root, out = os.path.join(workdir, "synth"), os.path.join(workdir, "generated")
    subprocess.run(cli + ["synth", root, "--images", "600", "--test-fraction", "0.5", "--quiet"], check=True, env=env)
    subprocess.run(cli + ["generate", "--input", root, "--output", out, "--splits", "test", "--formats", "parquet"],
                   check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return out


def _argv(args, dataset, base, out):
    argv = ["--dataset", dataset, "--split", "test", "--backend", "openai", "--model", MODEL,
            "--adapter", args.adapter, "--base-url", base, "--output", out, "--no-progress",
            "--limit", str(args.limit), "--concurrency", str(args.concurrency)]
    if args.batch_size:
        argv += ["--batch-size", str(args.batch_size)]
    return argv


def run_ours(args, dataset, base, out):
    from sarchat.inference.run import execute, parse_config

    cfg = parse_config(_argv(args, dataset, base, out))
    t0 = time.perf_counter()
    assert execute(cfg) == 0
    wall = time.perf_counter() - t0
    with open(os.path.join(out, "manifest.json"), encoding="utf-8") as fh:
        manifest = json.load(fh)
    shard = manifest.get("shards", [{}])[0] if isinstance(manifest.get("shards"), list) else {}
    return wall, shard.get("throughput_sps")


class RawClient:
    """What a minimal client does: the same bodies as ours, no checks, no cache, one session."""

    MIME = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}

    def __init__(self, args, dataset, base, workdir):
        from sarchat.inference.backends.openai_backend import OpenAIBackend
        from sarchat.inference.dataset import BASE_COLUMNS, image_location, load_rows, resolve_image_root
        from sarchat.inference.run import parse_config, resolve_adapter

        cfg = parse_config(_argv(args, dataset, base, os.path.join(workdir, "unused")))
        self.adapter = resolve_adapter(cfg, OpenAIBackend)
        if self.adapter.pad_to_multiple:
            raise SystemExit(f"--adapter {args.adapter} pads images; the raw client sends files as they are")
        probe = OpenAIBackend(cfg, self.adapter)
        self.fields = {**probe.sampling(), **probe._extras()}
        probe.close()
        root = resolve_image_root(dataset)
        rows = load_rows(dataset, "test", columns=BASE_COLUMNS, limit=args.limit)
        rows.sort(key=lambda r: (r["image_path"], r["id"]))  # the runner's order
        self.samples = [(r, image_location(root, r["image_path"])) for r in rows]
        self.url = base + "/chat/completions"
        self.concurrency = args.concurrency

    def body(self, row, location):
        with open(location, "rb") as fh:
            data = fh.read()
        mime = self.MIME[os.path.splitext(location)[1].lower()]
        url = f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
        doc = {"model": MODEL, "messages": self.adapter.build_messages(row, url), **self.fields}
        return json.dumps(doc).encode("utf-8")

    async def _post_all(self, make_body):
        import aiohttp

        sem = asyncio.Semaphore(self.concurrency)
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
            async def one(k):
                async with sem:
                    async with session.post(self.url, data=make_body(k),
                                            headers={"Content-Type": "application/json"}) as resp:
                        doc = await resp.json()
                        return doc["choices"][0]["message"]["content"]

            return await asyncio.gather(*(one(k) for k in range(len(self.samples))))

    def run(self, prebuilt=None):
        """Seconds to send every request; bodies built per request unless `prebuilt`."""
        t0 = time.perf_counter()
        if prebuilt is None:
            answers = asyncio.run(self._post_all(lambda k: self.body(*self.samples[k])))
        else:
            answers = asyncio.run(self._post_all(prebuilt.__getitem__))
        assert len(answers) == len(self.samples) and all(a == ANSWER for a in answers)
        return time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default=None, help="a `sarchat generate` output (default: made here)")
    p.add_argument("--limit", type=int, default=5000, help="requests per run (the first test dialogues)")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--adapter", default="qwen2-vl")
    p.add_argument("--batch-size", type=int, default=None, help="ours: --batch-size (default: the backend's)")
    p.add_argument("--serve", metavar="PORT_FILE", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        return serve(args.serve)

    with tempfile.TemporaryDirectory(prefix="infer_client_") as workdir:
        dataset = args.dataset or make_dataset(workdir)
        server = Server(workdir)
        try:
            raw = RawClient(args, dataset, server.base, workdir)
            n = len(raw.samples)
            images = len({loc for _, loc in raw.samples})
            # Untimed: both send the same bodies, byte for byte.
            server.control(True)
            run_ours(args, dataset, server.base, os.path.join(workdir, "check"))
            ours_bodies = server.control(True)["digests"]
            raw.run()
            raw_bodies = server.control(False)["digests"]
            if ours_bodies != raw_bodies or sum(raw_bodies.values()) != n:
                raise SystemExit(f"ours and raw sent different bodies ({sum(ours_bodies.values())} vs "
                                 f"{sum(raw_bodies.values())} requests): the comparison would be unfair")
            prebuilt = [raw.body(r, loc) for r, loc in raw.samples]
            sides = {
                "ours": lambda k: run_ours(args, dataset, server.base, os.path.join(workdir, f"ours-{k}")),
                "raw": lambda k: (raw.run(), None),
                "raw_prebuilt": lambda k: (raw.run(prebuilt), None),
            }
            runs, loops = collections.defaultdict(list), []
            order = list(sides)
            for k in range(args.repeats):  # rotate the order: load drift hits every side alike
                for name in order[k % 3:] + order[:k % 3]:
                    wall, loop_sps = sides[name](k)
                    runs[name].append(n / wall)
                    if loop_sps:
                        loops.append(loop_sps)
            med = {name: statistics.median(v) for name, v in runs.items()}
            report = {
                "requests": n, "images": images, "concurrency": args.concurrency, "adapter": args.adapter,
                "repeats": args.repeats, "same_bodies": True,
                "ours_rps": round(med["ours"], 1), "raw_rps": round(med["raw"], 1),
                "ratio_ours_to_raw": round(med["ours"] / med["raw"], 3),
                "raw_prebuilt_rps": round(med["raw_prebuilt"], 1),
                "ratio_ours_to_prebuilt": round(med["ours"] / med["raw_prebuilt"], 3),
                "ours_predict_loop_sps": round(statistics.median(loops), 1) if loops else None,
                "runs": {name: [round(x, 1) for x in v] for name, v in runs.items()},
            }
            print(json.dumps(report, indent=1))
        finally:
            server.close()


if __name__ == "__main__":
    main()
