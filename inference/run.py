"""`sarchat infer`: run a model over one split of a generated dataset, resumably.

    sarchat infer --dataset GENERATED_OUT --split test --backend vllm \
        --model Qwen/Qwen2-VL-7B-Instruct --adapter qwen2-vl --output runs/qwen2vl

Backends: vllm (in-process vLLM), openai (any OpenAI-compatible endpoint), cfar (classical CPU
baseline), oracle and blind (inference/baselines.py), or `package.module:Class`.

Nothing lost, nothing twice: every batch's predictions are appended to this shard's JSONL part file
and fsync'd before the next batch starts; a rerun with the same settings (same run key: model
fingerprint, backend, adapter, sampling) skips the ids already answered and retries the failed
ones. At the end the shard merges every part file of the run key into DIR/predictions.parquet
(PREDICTION_SCHEMA, one row per id) and writes DIR/manifest.json. See inference/store.py.

Several GPUs: `--num-shards K --shard-index I` in K processes (sha256-of-id sharding), or
`--num-shards K --spawn-shards` to start the K processes here, one per GPU (CUDA_VISIBLE_DEVICES).
`--merge-only` rewrites predictions.parquet from the store.

`--output gs://bucket/run` (any fsspec URL): the store stays on local disk (`--work-dir`) and is
mirrored to the URL, see inference/remote.py.
"""
import argparse
import datetime as _dt
import json
import os
import platform
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from sarchat.inference import remote, store
from sarchat.transforms.fileio import check_output_location
from sarchat.transforms.adapters import ADAPTERS, get_adapter, guess_adapter
from sarchat.inference.backends import BACKENDS, get_backend_class
from sarchat.inference.backends.base import Result, Sample
from sarchat.inference.dataset import (BASE_COLUMNS, DatasetError, image_location, is_url, load_rows, parse_tasks,
                               resolve_image_root)
from sarchat.inference.fingerprint import run_key as make_run_key
from sarchat.inference.fingerprint import stable_hash


def package_version(name):
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover
        return None
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _redact_argv(argv):
    """The command line for the manifest, with any user:password@ of a URL removed."""
    import re

    return [re.sub(r"(://)[^/@\s]{1,200}@", r"\1***@", str(a)) for a in argv]


def _now():
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def build_parser():
    p = argparse.ArgumentParser(prog="sarchat infer", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", help="output folder of `sarchat generate` (holds parquet/ and manifest.json)")
    p.add_argument("--split", default="test")
    p.add_argument("--output", required=True, type=lambda text: check_output_location(text, "--output"),
                   help="run folder: store/, runs/, predictions.parquet, manifest.json; local or a URL (gs://...)")
    p.add_argument("--work-dir", default=None,
                   help="local folder for the store when --output is a URL (default ~/.cache/sarchat/infer/<hash>)")
    p.add_argument("--push-interval", type=float, default=60.0,
                   help="seconds between uploads of this shard's part file when --output is a URL")
    p.add_argument("--backend", default="vllm", help=f"{', '.join(BACKENDS)} or package.module:Class")
    p.add_argument("--model", default=None, help="checkpoint path or hub id (vllm), served model name (openai)")
    p.add_argument("--model-name", default=None, help="name written in the predictions' model column")
    p.add_argument("--adapter", default=None,
                   help=f"{', '.join(ADAPTERS)} or NAME:BOXFORMAT; default: guessed from --model")
    p.add_argument("--tasks", nargs="*", default=None,
                   help="tasks to run (classify describe count grounding identify refer, or TASK_single/TASK_multi)")
    p.add_argument("--limit", type=int, default=None, help="first N selected dialogues (before sharding)")
    p.add_argument("--num-shards", type=int, default=1)
    p.add_argument("--shard-index", type=int, default=0)
    p.add_argument("--spawn-shards", action="store_true",
                   help="start --num-shards processes here (one GPU each), wait, merge")
    p.add_argument("--gpus", default=None, help="GPU ids for --spawn-shards, e.g. 0,1,2,3 (default 0..K*TP-1)")
    p.add_argument("--batch-size", type=int, default=None, help="samples per batch (and per fsync)")
    p.add_argument("--image-root", default=None, help="dataset root for image_path (default: manifest input_root)")
    p.add_argument("--io-workers", type=int, default=8, help="threads reading and encoding images")
    # sampling
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-tokens", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-format-hint", action="store_true",
                   help="do not append the box-format sentence for zero-shot adapters")
    # vllm
    g = p.add_argument_group("vllm backend")
    g.add_argument("--revision", default=None)
    g.add_argument("--tensor-parallel-size", type=int, default=1)
    g.add_argument("--gpu-memory-utilization", type=float, default=None)
    g.add_argument("--max-model-len", type=int, default=None)
    g.add_argument("--trust-remote-code", action="store_true")
    g.add_argument("--engine-arg", action="append", default=[], metavar="KEY=JSON",
                   help="extra vllm.LLM argument, repeatable (e.g. max_num_seqs=128)")
    g.add_argument("--chat-template", default=None, help="jinja chat template file overriding the adapter's")
    # openai
    g = p.add_argument_group("openai backend")
    g.add_argument("--base-url", default=None, help="e.g. http://127.0.0.1:8000/v1 (default $OPENAI_BASE_URL)")
    g.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    g.add_argument("--concurrency", type=int, default=16, help="requests in flight at most")
    g.add_argument("--max-retries", type=int, default=6)
    g.add_argument("--retry-base", type=float, default=1.0, help="first backoff in seconds (doubles)")
    g.add_argument("--retry-max-wait", type=float, default=60.0)
    g.add_argument("--request-timeout", type=float, default=300.0)
    g.add_argument("--no-vllm-extras", action="store_true",
                   help="send only standard OpenAI fields (no skip_special_tokens)")
    # baselines
    p.add_argument("--fit-split", default="train", help="split the blind prior is fitted on")
    p.add_argument("--blind-question-box", action="store_true",
                   help="blind prior reads the box an identify question names (still never the image)")
    # run control
    p.add_argument("--merge-only", action="store_true", help="only rewrite predictions.parquet from the store")
    p.add_argument("--no-merge", action="store_true", help="do not merge at the end (spawned shards)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--progress-position", type=int, default=None, help=argparse.SUPPRESS)
    return p


class _Progress:
    """tqdm with samples/s and ETA; a no-op when disabled."""

    def __init__(self, total, desc, disable, position=None):
        self.bar = None
        if not disable:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="sample", dynamic_ncols=True, smoothing=0.1,
                            file=sys.stderr, position=position, mininterval=0.5)

    def update(self, n, failed):
        if self.bar is not None:
            self.bar.update(n)
            if failed:
                self.bar.set_postfix(failed=failed, refresh=False)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def resolve_adapter(cfg, backend_cls):
    fixed = getattr(backend_cls, "fixed_adapter", None)
    if fixed:
        if cfg.adapter and get_adapter(cfg.adapter).name != get_adapter(fixed).name:
            print(f"sarchat infer: the {cfg.backend} backend answers in canonical boxes; "
                  f"using adapter {fixed!r} instead of {cfg.adapter!r}", file=sys.stderr)
        return get_adapter(fixed)
    return get_adapter(cfg.adapter or guess_adapter(cfg.model or ""))


class Runner:
    """One invocation for one shard: select, skip what is done, predict, append, merge."""

    def __init__(self, cfg, backend=None, argv=None):
        self.cfg = cfg
        self.argv = list(argv or [])
        backend_cls = type(backend) if backend is not None else get_backend_class(cfg.backend)
        self.adapter = backend.adapter if backend is not None else resolve_adapter(cfg, backend_cls)
        self.backend = backend if backend is not None else backend_cls(cfg, self.adapter)
        self.fingerprint = self.backend.fingerprint()
        self.sampling = self.backend.sampling()
        self.key = make_run_key(self.backend.name, self.fingerprint, self.adapter.spec, self.sampling)
        self.model_name = cfg.model_name or cfg.model or self.backend.name
        remote_url = getattr(cfg, "remote_output", None)
        self.remote = remote.RemoteRun(remote_url, cfg.output) if remote_url else None

    def location(self, name):
        """Where the run's file `name` is published: under the URL for a remote run."""
        return f"{self.remote.url}/{name}" if self.remote else os.path.join(self.cfg.output, name)

    def _part_rel(self):
        return f"store/{self.key}/{store.part_name(self.cfg.shard_index, self.cfg.num_shards)}.jsonl"

    def _manifest_name(self):
        return f"shard-{self.cfg.shard_index:05d}-of-{self.cfg.num_shards:05d}.json"

    def push_part(self):
        if self.remote:
            self.remote.upload(self._part_rel(), missing_ok=True)

    # ---- manifests -----------------------------------------------------------------------------
    def base_manifest(self):
        cfg = self.cfg
        versions = {"python": platform.python_version(), "sarchat-bench": package_version("sarchat-bench"),
                    "numpy": package_version("numpy"), "scipy": package_version("scipy"),
                    "pyarrow": package_version("pyarrow"), "pillow": package_version("pillow"),
                    "tqdm": package_version("tqdm")}
        versions.update(self.backend.versions() or {})
        return {
            "tool": "sarchat infer",
            "model": self.model_name,
            "model_path": cfg.model,
            "model_fingerprint": self.fingerprint,
            "adapter": self.adapter.name,
            "box_format": self.adapter.box_format.spec,
            "prompt_spec": self.adapter.spec,
            "backend": self.backend.name,
            "backend_info": self.backend.info(),
            "sampling": self.sampling,
            "sampling_hash": stable_hash(self.sampling),
            "run_key": self.key,
            "dataset": cfg.dataset,
            "split": cfg.split,
            "tasks": cfg.tasks,
            "limit": cfg.limit,
            "versions": versions,
        }

    def _shard_manifest_path(self):
        folder = store.runs_dir(self.cfg.output, self.key)
        os.makedirs(folder, exist_ok=True)
        return os.path.join(folder, self._manifest_name())

    def write_shard_manifest(self, extra):
        m = self.base_manifest()
        m.update({"shard_index": self.cfg.shard_index, "num_shards": self.cfg.num_shards,
                  "host": socket.gethostname(), "argv": _redact_argv(self.argv)})
        m.update(extra)
        store.atomic_write_json(self._shard_manifest_path(), m)
        if self.remote:
            self.remote.upload(f"runs/{self.key}/{self._manifest_name()}")
        return m

    def _merge_local(self):
        manifest = self.base_manifest()
        shards = store.shard_manifests(self.cfg.output, self.key)
        starts = [s["started_at"] for s in shards if s.get("started_at")]
        ends = [s["finished_at"] for s in shards if s.get("finished_at")]
        manifest["started_at"] = min(starts) if starts else None
        manifest["finished_at"] = max(ends) if ends else None
        return store.merge(self.cfg.output, self.key, manifest)

    def merge(self):
        """Merge every part of the run key into predictions.parquet; (rows, errors)."""
        if self.remote:
            return self.remote.merge(self.key, self._merge_local)
        return self._merge_local()

    # ---- the run ---------------------------------------------------------------------------------
    def samples(self):
        cfg = self.cfg
        columns = tuple(BASE_COLUMNS) + tuple(self.backend.columns or ())
        rows = load_rows(cfg.dataset, cfg.split, columns=columns, tasks=cfg.tasks, limit=cfg.limit,
                         num_shards=cfg.num_shards, shard_index=cfg.shard_index)
        root = resolve_image_root(cfg.dataset, cfg.image_root) if getattr(self.backend, "reads_images", True) else ""
        return [Sample(r, image_location(root, r["image_path"]) if root else r["image_path"]) for r in rows], root

    def run(self):
        cfg = self.cfg
        started = _now()
        samples, root = self.samples()
        if self.remote:
            self.remote.pull(self.key, own_manifest=self._manifest_name())
        done, failed_before = store.scan(cfg.output, self.key)
        pending = [s for s in samples if s.id not in done]
        # Grouped by image: detection caches and vLLM's multimodal cache hit, reads are local.
        pending.sort(key=lambda s: (s.row["image_path"], s.id))
        counts = {"selected": len(samples), "skipped": len(samples) - len(pending),
                  "retried": sum(1 for s in pending if s.id in failed_before),
                  "done": 0, "failed": 0, "remaining": len(pending)}
        self.write_shard_manifest({"status": "running", "started_at": started, "finished_at": None,
                                   "image_root": root, "counts": counts})
        status, t_loop, elapsed = "done", time.perf_counter(), 0.0
        self.timing = {"setup_s": 0.0, "predict_s": 0.0}
        try:
            if pending:
                status = self._predict_all(pending, counts)
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        except BaseException:
            status = "crashed"
            raise
        finally:
            elapsed = time.perf_counter() - t_loop
            attempted = counts["done"] + counts["failed"]
            busy = self.timing["predict_s"]
            extra = {"status": status, "started_at": started, "finished_at": _now(), "image_root": root,
                     "counts": counts, "wall_s": round(elapsed, 3),
                     "setup_s": round(self.timing["setup_s"], 3), "predict_s": round(busy, 3),
                     # samples per second once the model is loaded (setup excluded)
                     "throughput_sps": round(attempted / busy, 3) if busy > 0 and attempted else None}
            with open(os.path.join(store.runs_dir(cfg.output, self.key), "history.jsonl"), "a",
                      encoding="utf-8") as fh:
                fh.write(json.dumps({"shard_index": cfg.shard_index, "num_shards": cfg.num_shards, **extra}) + "\n")
            self.push_part()
            self.write_shard_manifest(extra)
            try:
                self.backend.close()
            except Exception:
                pass
            if not cfg.no_merge:
                self.merge()
        return counts

    def _predict_all(self, pending, counts):
        cfg = self.cfg
        bs = max(1, int(cfg.batch_size or self.backend.default_batch_size))
        batches = [pending[i:i + bs] for i in range(0, len(pending), bs)]
        writer = store.PartWriter(cfg.output, self.key, cfg.shard_index, cfg.num_shards)
        progress = None
        last_push = time.monotonic()
        try:
            t0 = time.perf_counter()
            self.backend.setup()
            self.timing["setup_s"] = time.perf_counter() - t0
            t_predict = time.perf_counter()
            desc = self.backend.name if self.model_name == self.backend.name else \
                f"{self.backend.name}:{os.path.basename(str(self.model_name).rstrip('/'))}"[:40]
            if cfg.num_shards > 1:
                desc += f" [{cfg.shard_index}/{cfg.num_shards}]"
            progress = _Progress(len(pending), desc, cfg.no_progress, cfg.progress_position)
            with ThreadPoolExecutor(max_workers=1) as prefetch:
                future = prefetch.submit(self.backend.prepare, batches[0])
                for k, batch in enumerate(batches):
                    try:
                        prepared = future.result()
                    except Exception as exc:
                        prepared = exc
                    if k + 1 < len(batches):
                        future = prefetch.submit(self.backend.prepare, batches[k + 1])
                    results = self._predict_batch(batch, prepared)
                    records = []
                    n_fail = 0
                    for sample, res in zip(batch, results):
                        if res.error is not None:
                            n_fail += 1
                        records.append(store.make_record(sample.id, res.prediction, self.model_name,
                                                         res.error, res.latency_s, self.key))
                    writer.append(records)  # flushed and fsync'd: the batch is now durable
                    counts["failed"] += n_fail
                    counts["done"] += len(batch) - n_fail
                    counts["remaining"] -= len(batch)
                    progress.update(len(batch), counts["failed"])
                    if self.remote and time.monotonic() - last_push >= cfg.push_interval:
                        self._push_part_quietly()
                        last_push = time.monotonic()
                    self.timing["predict_s"] = time.perf_counter() - t_predict
        finally:
            if progress is not None:
                progress.close()
            writer.close()
        return "done"

    def _push_part_quietly(self):
        # A failed periodic upload costs nothing yet: the batches are safe on local disk and the
        # next push (or the one at the end) sends the whole part again.
        try:
            self.push_part()
        except remote.RemoteError as exc:
            print(f"sarchat infer: warning: {exc}; will retry", file=sys.stderr)

    def _predict_batch(self, batch, prepared):
        if isinstance(prepared, Exception):
            return [Result.failure(f"prepare failed: {type(prepared).__name__}: {prepared}")] * len(batch)
        try:
            results = list(self.backend.predict(prepared))
            if len(results) != len(batch):
                raise RuntimeError(f"backend returned {len(results)} results for {len(batch)} samples")
        except Exception as exc:
            return [Result.failure(f"batch failed: {type(exc).__name__}: {exc}")] * len(batch)
        return [r if isinstance(r, Result) else Result.failure(f"bad result {r!r}") for r in results]


def _spawn(cfg, argv):
    """Start one child per shard (CUDA_VISIBLE_DEVICES per child), wait, merge."""
    k = cfg.num_shards
    tp = max(1, cfg.tensor_parallel_size)
    gpus = [g for g in (cfg.gpus.split(",") if cfg.gpus else [str(i) for i in range(k * tp)]) if g != ""]
    child_argv, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--spawn-shards":
            continue
        if a in ("--shard-index", "--gpus", "--progress-position"):
            skip = True
            continue
        if a.startswith(("--shard-index=", "--gpus=", "--progress-position=")):
            continue
        child_argv.append(a)
    procs = []
    for i in range(k):
        env = dict(os.environ)
        if cfg.backend == "vllm":
            group = gpus[(i * tp) % len(gpus):(i * tp) % len(gpus) + tp] if gpus else []
            if group:
                env["CUDA_VISIBLE_DEVICES"] = ",".join(group)
        cmd = [sys.executable, "-m", "sarchat.beam_pipelines.cli", "infer", *child_argv,
               "--shard-index", str(i), "--no-merge", "--progress-position", str(i)]
        procs.append(subprocess.Popen(cmd, env=env))
    codes = [p.wait() for p in procs]
    runner = Runner(cfg, argv=argv)
    n, n_err = runner.merge()
    print(f"sarchat infer: merged {n} predictions ({n_err} failed) into "
          f"{runner.location(store.PREDICTIONS_PARQUET)}", file=sys.stderr)
    bad = [i for i, c in enumerate(codes) if c != 0]
    if bad:
        print(f"sarchat infer: shards {bad} exited with errors; rerun the same command to resume", file=sys.stderr)
        return 1
    return 0


def execute(cfg, backend=None, argv=None):
    """Run (or merge) with a parsed config; `backend` injects a ready backend (tests)."""
    if cfg.num_shards < 1 or not 0 <= cfg.shard_index < cfg.num_shards:
        raise SystemExit(f"--shard-index must be in 0..{cfg.num_shards - 1}")
    use_remote_output(cfg)
    runner = Runner(cfg, backend=backend, argv=argv)
    if cfg.merge_only:
        if runner.remote:
            runner.remote.pull(runner.key)
        if not store.part_files(cfg.output, runner.key):
            keys = store.run_keys(cfg.output)
            print(f"sarchat infer: no predictions for run key {runner.key} under {runner.location('store')} "
                  f"(keys there: {', '.join(keys) or 'none'}); pass the same --backend/--model/--adapter/"
                  "sampling flags as the run", file=sys.stderr)
        n, n_err = runner.merge()
        print(f"sarchat infer: merged {n} predictions ({n_err} failed) into "
              f"{runner.location(store.PREDICTIONS_PARQUET)}", file=sys.stderr)
        return 0
    if not cfg.dataset:
        raise SystemExit("--dataset is required")
    counts = runner.run()
    print(f"sarchat infer: {counts['done']} done, {counts['failed']} failed, {counts['skipped']} already done "
          f"(run key {runner.key}); predictions: {runner.location(store.PREDICTIONS_PARQUET)}",
          file=sys.stderr)
    return 0 if counts["remaining"] == 0 else 1


def use_remote_output(cfg):
    """For a URL --output, point cfg.output at the local work folder and keep the URL aside."""
    if is_url(cfg.output) and not getattr(cfg, "remote_output", None):
        cfg.remote_output = cfg.output.rstrip("/")
        cfg.output = cfg.work_dir or remote.default_work_dir(cfg.remote_output)
    return cfg


def run(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = build_parser().parse_args(argv)
    if cfg.backend in ("vllm", "openai") and not cfg.model:
        raise SystemExit(f"--model is required for the {cfg.backend} backend")
    try:
        parse_tasks(cfg.tasks)
    except ValueError as exc:
        raise SystemExit(f"sarchat infer: --tasks: {exc}") from None
    use_remote_output(cfg)
    try:
        if cfg.spawn_shards and not cfg.merge_only:
            if not cfg.dataset:
                raise SystemExit("--dataset is required")
            return _spawn(cfg, argv)
        return execute(cfg, argv=argv)
    except DatasetError as exc:
        print(f"sarchat infer: {exc}", file=sys.stderr)
        return 2
    except remote.RemoteError as exc:
        print(f"sarchat infer: {exc}\nwhat is done is kept in {cfg.output}; rerun the same command to "
              "resume and publish", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(run())
