"""`sarchat infer`: run a model over one split of a generated dataset, resumably.

    sarchat infer --dataset GENERATED_OUT --split test --backend vllm \
        --model Qwen/Qwen2-VL-7B-Instruct --adapter qwen2-vl --output runs/qwen2vl

Backends: vllm (in-process vLLM), openai (any OpenAI-compatible endpoint), cfar (classical CPU
baseline), oracle and blind (inference/baselines.py), or `package.module:Class`.

Nothing lost, nothing twice: every batch's predictions are appended to this shard's JSONL part file
and fsync'd before the next batch starts; a rerun with the same settings (the same run key, which
covers everything that can change an answer, the dataset version included: inference/manifest.py)
skips the ids already answered and retries the failed ones. At the end the shard merges every part
file of the run key into DIR/predictions.parquet (PREDICTION_SCHEMA, one row per id, the dataset
version in its metadata) and writes DIR/manifest.json. See inference/store.py.
The command exits 1 when any selected sample is left without a prediction (the failures stay in
the store, and the next run retries them).

Several GPUs: `--num-shards K --shard-index I` in K processes (sha256-of-id sharding), or
`--num-shards K --spawn-shards` to start the K processes here, one per GPU (CUDA_VISIBLE_DEVICES).
`--merge-only` rewrites predictions.parquet from the store.

`--output gs://bucket/run` (any fsspec URL): the store stays on local disk (`--work-dir`) and is
mirrored to the URL, see inference/remote.py.
"""
import copy
import datetime as _dt
import functools
import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from sarchat.inference import remote, store
from sarchat.inference.backends.base import Sample, predict_batch
from sarchat.inference.config import (InferenceConfig, OneLineParser, add_baseline_flags, add_dataset_flags,
                                      add_model_flags, add_openai_flags, add_run_flags, add_sampling_flags,
                                      add_vllm_flags, get_backend_class)
from sarchat.inference.dataset import (BASE_COLUMNS, dataset_version, image_location, load_rows, read_manifest,
                                       resolve_image_root)
from sarchat.inference.manifest import (model_column, redact, redact_argv, resolve_adapter, run_identity,
                                        run_manifest)
from sarchat.transforms import ownership, progress
from sarchat.transforms.adapters import get_adapter
from sarchat.transforms.errors import RunFailed

COMMAND = "infer"
# How many failed samples the closing error line quotes.
FIRST_ERRORS = 3


def _now():
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def build_parser():
    p = OneLineParser(prog="sarchat infer", description=__doc__.split("\n\n")[0])
    add_dataset_flags(p, output_help="run folder: store/, runs/, predictions.parquet, manifest.json; "
                                     "local or a URL (gs://...)")
    for add_flags in (add_run_flags, add_model_flags, add_sampling_flags, add_vllm_flags, add_openai_flags,
                      add_baseline_flags):
        add_flags(p)
    return p


def parse_config(argv) -> InferenceConfig:
    """The run's InferenceConfig from `sarchat infer`'s flags (argparse exits 2 on a bad flag)."""
    return InferenceConfig.from_args(build_parser().parse_args(list(argv)))


def _adapter(cfg, backend_cls):
    adapter = resolve_adapter(cfg, backend_cls)
    if cfg.adapter and get_adapter(cfg.adapter).name != adapter.name:
        print(f"sarchat infer: the {cfg.backend} backend answers in canonical boxes; "
              f"using adapter {adapter.name!r} instead of {cfg.adapter!r}", file=sys.stderr)
    return adapter


class Runner:
    """One invocation for one shard: select, skip what is done, predict, append, merge."""

    def __init__(self, cfg: InferenceConfig, backend=None, argv=None):
        self.cfg = cfg
        self.argv = list(argv or [])
        self.dataset_manifest = read_manifest(cfg.dataset)
        self.dataset_version = dataset_version(cfg.dataset, self.dataset_manifest)
        backend_cls = type(backend) if backend is not None else get_backend_class(cfg.backend)
        self.adapter = backend.adapter if backend is not None else _adapter(cfg, backend_cls)
        self.backend = backend if backend is not None else backend_cls(cfg, self.adapter)
        self.identity = run_identity(self.backend, self.dataset_version)
        self.key = self.identity.key
        self.model_name = model_column(cfg, self.backend)
        self.remote = remote.RemoteRun(cfg.remote_output, cfg.output) if cfg.remote_output else None
        self.manifest_name = f"shard-{cfg.shard_index:05d}-of-{cfg.num_shards:05d}.json"
        self.failures = []
        self.verify_read = None

    def location(self, name):
        """Where the run's file `name` is published: under the URL for a remote run."""
        return f"{self.remote.url}/{name}" if self.remote else os.path.join(self.cfg.output, name)

    def push_part(self):
        if self.remote:
            part = store.part_name(self.cfg.shard_index, self.cfg.num_shards)
            self.remote.upload(f"store/{self.key}/{part}.jsonl", missing_ok=True)

    # ---- manifests -----------------------------------------------------------------------------
    @functools.cached_property
    def _base_manifest(self):
        # built once per invocation (the installed versions it lists cost importlib.metadata scans of
        # sys.path, tens of milliseconds), copied for each manifest written
        return run_manifest(self.cfg, self.identity, self.backend, "sarchat infer")

    def base_manifest(self):
        return copy.deepcopy(self._base_manifest)

    def _runs_file(self, name):
        """The path of `name` in runs/<run key>/ (the folder made)."""
        folder = store.runs_dir(self.cfg.output, self.key)
        os.makedirs(folder, exist_ok=True)
        return os.path.join(folder, name)

    def _summary(self, status, **more):
        """This invocation's figures, for its history line and its shard manifest."""
        return {"status": status, "started_at": self.started, "finished_at": _now(), "image_root": self.root,
                "counts": self.counts, **more}

    def write_shard_manifest(self, extra):
        self._publish_shard_manifest({**self.base_manifest(), "shard_index": self.cfg.shard_index,
                                      "num_shards": self.cfg.num_shards, "host": socket.gethostname(),
                                      "argv": redact_argv(self.argv), **extra})

    def _publish_shard_manifest(self, m):
        store.atomic_write_json(self._runs_file(self.manifest_name), m)
        if self.remote:
            self.remote.upload(f"runs/{self.key}/{self.manifest_name}")

    def _merge_local(self):
        shards = store.shard_manifests(self.cfg.output, self.key)
        manifest = {**self.base_manifest(),
                    "started_at": min((s["started_at"] for s in shards if s.get("started_at")), default=None),
                    "finished_at": max((s["finished_at"] for s in shards if s.get("finished_at")), default=None)}
        return store.merge(self.cfg.output, self.key, manifest, self.dataset_version)

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
                         num_shards=cfg.num_shards, shard_index=cfg.shard_index, manifest=self.dataset_manifest)
        root = resolve_image_root(cfg.dataset, cfg.image_root, self.dataset_manifest) \
            if getattr(self.backend, "reads_images", True) else ""
        # the image-path rule (realpath checks) once per image, not once per dialogue
        location = functools.cache(lambda path: image_location(root, path) if root else path)
        return [Sample(r, location(r["image_path"])) for r in rows], root

    def run(self):
        self.started = _now()
        samples, self.root = self.samples()
        if self.verify_read is not None:  # the rows read belong to the manifest the run started from
            self.verify_read()
        if self.remote:
            self.remote.pull(self.key, own_manifest=self.manifest_name)
        done, failed_before = store.scan(self.cfg.output, self.key)
        # Grouped by image: detection caches and vLLM's multimodal cache hit, reads are local.
        pending = sorted((s for s in samples if s.id not in done), key=lambda s: (s.row["image_path"], s.id))
        self.counts = counts = {"selected": len(samples), "skipped": len(samples) - len(pending),
                                "retried": sum(1 for s in pending if s.id in failed_before),
                                "done": 0, "failed": 0, "remaining": len(pending)}
        if not pending:
            self._nothing_to_do()
            return counts
        bs = int(self.cfg.batch_size or self.backend.default_batch_size)
        batches = [pending[i:i + bs] for i in range(0, len(pending), bs)]
        prefetch = ThreadPoolExecutor(max_workers=1)
        # A backend whose prepare needs no engine gets its first batch ready while the engine loads.
        first = prefetch.submit(self.backend.prepare, batches[0]) \
            if getattr(self.backend, "prepare_before_setup", False) else None
        # The backend starts (engine loaded, endpoint checked) before anything is written: one that
        # cannot start leaves no trace in the run folder.
        t_loop = time.perf_counter()
        try:
            self.backend.setup()
        except BaseException:
            prefetch.shutdown(wait=False, cancel_futures=True)
            raise
        self.timing = {"setup_s": time.perf_counter() - t_loop, "predict_s": 0.0}
        self.write_shard_manifest(self._summary("running", finished_at=None))
        status = "crashed"
        try:
            with prefetch:
                self._predict_all(batches, prefetch, first)
            status = "done"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            attempted = counts["done"] + counts["failed"]
            busy = self.timing["predict_s"]
            extra = self._summary(status, wall_s=round(time.perf_counter() - t_loop, 3),
                                  setup_s=round(self.timing["setup_s"], 3), predict_s=round(busy, 3),
                                  # samples per second once the model is loaded (setup excluded)
                                  throughput_sps=round(attempted / busy, 3) if busy > 0 and attempted else None)
            self._append_history(extra)
            self.push_part()
            self.write_shard_manifest(extra)
            self._close_and_merge()
        return counts

    def _close_and_merge(self):
        try:
            self.backend.close()
        except Exception:
            pass
        if not self.cfg.no_merge:
            self.merge()

    def _append_history(self, extra):
        with open(self._runs_file("history.jsonl"), "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"shard_index": self.cfg.shard_index, "num_shards": self.cfg.num_shards,
                                 **extra}) + "\n")

    def _nothing_to_do(self):
        """Every selected id is answered: the shard's manifest keeps the figures of the run that
        did the work (a rerun must not replace them with zeros); only the history says we looked."""
        self._append_history(self._summary("nothing to do"))
        try:
            with open(self._runs_file(self.manifest_name), encoding="utf-8") as fh:
                previous = json.load(fh)
        except (OSError, ValueError):
            previous = None
        if not isinstance(previous, dict):  # the work was done under another shard count, or the file was lost
            self.write_shard_manifest(self._summary("done"))
        elif previous.get("status") != "done":  # e.g. killed after its last batch was stored
            previous["status"] = "done"
            self._publish_shard_manifest(previous)
        self._close_and_merge()

    def _predict_all(self, batches, prefetch, first=None):
        """Answer and store every batch; batch k+1 is prepared in `prefetch` while batch k is
        answered (`first`: batch 0's preparation, when it was started before the backend's setup)."""
        cfg, counts = self.cfg, self.counts
        writer = store.PartWriter(cfg.output, self.key, cfg.shard_index, cfg.num_shards)
        bar = None
        last_push = time.monotonic()
        try:
            t_predict = time.perf_counter()
            desc = self.backend.name if self.model_name == self.backend.name else \
                f"{self.backend.name}:{os.path.basename(str(self.model_name).rstrip('/'))}"[:40]
            if cfg.num_shards > 1:
                desc += f" [{cfg.shard_index}/{cfg.num_shards}]"
            if not cfg.no_progress:  # samples answered, their rate and the time left
                bar = progress.Progress(f"sarchat infer: {desc}", sum(map(len, batches)), "samples",
                                        position=cfg.progress_position)
            future = first or prefetch.submit(self.backend.prepare, batches[0])
            for k, batch in enumerate(batches):
                try:
                    prepared = future.result()
                except Exception as exc:
                    prepared = exc
                if k + 1 < len(batches):
                    future = prefetch.submit(self.backend.prepare, batches[k + 1])
                results = list(zip(batch, predict_batch(self.backend, batch, prepared)))
                failed = [(sample.id, res.error) for sample, res in results if res.error is not None]
                self.failures.extend(failed)
                writer.append([store.make_record(sample.id, res.prediction, self.model_name, res.error, res.latency_s,
                                                 self.key) for sample, res in results])  # fsync'd: now durable
                counts["failed"] += len(failed)
                counts["done"] += len(batch) - len(failed)
                counts["remaining"] -= len(batch)
                if bar is not None:
                    bar.note(failed=counts["failed"])
                    bar.update(len(batch))
                if self.remote and time.monotonic() - last_push >= cfg.push_interval:
                    # A failed periodic upload costs nothing yet: the batches are safe on local disk and
                    # the next push (or the one at the end) sends the whole part again.
                    try:
                        self.push_part()
                    except remote.RemoteError as exc:
                        print(f"sarchat infer: warning: {exc}; will retry", file=sys.stderr)
                    last_push = time.monotonic()
                self.timing["predict_s"] = time.perf_counter() - t_predict
        finally:
            if bar is not None:
                bar.close(finished=bar.total is not None and bar.done >= bar.total)
            writer.close()


def failure_summary(n_failed, n_selected, first_errors, key):
    """The closing error line of a run that left samples without a prediction."""
    quoted = "; ".join(f"{sid}: {redact(err)[:200]}" for sid, err in first_errors[:FIRST_ERRORS])
    missing = [err for _, err in first_errors if str(err).startswith("missing image")]
    line = (f"{n_failed:,} of {n_selected:,} selected samples have no prediction (run key {key}); "
            f"first errors: {quoted}.")
    if not missing or len(missing) < len(first_errors):  # rerunning as it is cannot find missing images
        line += " They stay recorded; rerun the same command to retry them."
    if missing:
        line += " Images are missing: rerun with --image-root FOLDER, the folder the rows' image_path is relative to"
    return line


def _spawn(cfg, argv):
    """Start one child per shard (CUDA_VISIBLE_DEVICES per child), wait, merge."""
    k = cfg.num_shards
    tp = cfg.tensor_parallel_size
    gpus = [g for g in (cfg.gpus.split(",") if cfg.gpus else [str(i) for i in range(k * tp)]) if g != ""]
    child_argv, args = [], iter(argv)
    for a in args:
        if a in ("--shard-index", "--gpus", "--progress-position"):
            next(args, None)  # and its value
        elif a != "--spawn-shards" and not a.startswith(("--shard-index=", "--gpus=", "--progress-position=")):
            child_argv.append(a)
    procs = []
    for i in range(k):
        first = (i * tp) % len(gpus) if gpus else 0
        group = gpus[first:first + tp]  # a vllm shard's GPUs; None: the environment as it is
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(group)} if cfg.backend == "vllm" and group else None
        cmd = [sys.executable, "-m", "sarchat.beam_pipelines.cli", "infer", *child_argv,
               "--shard-index", str(i), "--no-merge", "--progress-position", str(i)]
        procs.append(subprocess.Popen(cmd, env=env))
    codes = [p.wait() for p in procs]
    runner = Runner(cfg, argv=argv)
    n, n_err = _merge_and_report(runner)
    bad = [i for i, c in enumerate(codes) if c != 0]
    if bad:
        raise RunFailed(f"shards {bad} exited with errors; rerun the same command to resume")
    if n_err:
        raise RunFailed(f"{n_err:,} of {n:,} samples have no prediction (run key {runner.key}); "
                        "rerun the same command to retry them")
    return 0


def _merge_and_report(runner):
    n, n_err = runner.merge()
    print(f"sarchat infer: merged {n:,} predictions ({n_err:,} failed) into "
          f"{runner.location(store.PREDICTIONS_PARQUET)}", file=sys.stderr)
    return n, n_err


def execute(cfg: InferenceConfig, backend=None, argv=None, verify_read=None):
    """Run (or merge) with a config; `backend` injects a ready backend (tests). Raises SarchatError
    (RunFailed when samples are left without a prediction). `verify_read()` is called once the
    dataset's rows are read (ownership.ConsistentRead.verify)."""
    runner = Runner(cfg, backend=backend, argv=argv)
    runner.verify_read = verify_read
    if cfg.merge_only:
        if runner.remote:
            runner.remote.pull(runner.key)
        if not store.part_files(cfg.output, runner.key):
            keys = store.run_keys(cfg.output)
            raise RunFailed(f"no predictions for run key {runner.key} under {runner.location('store')} "
                            f"(keys there: {', '.join(keys) or 'none'}); pass the same --dataset/--backend/"
                            "--model/--adapter/sampling/engine flags as the run")
        n, n_err = _merge_and_report(runner)
        if n_err:
            raise RunFailed(f"{n_err} of {n} merged samples have no prediction (run key {runner.key}); "
                            "rerun the shards to retry them")
        return 0
    counts = runner.run()
    print(f"sarchat infer: {counts['done']:,} done, {counts['failed']:,} failed, {counts['skipped']:,} already done "
          f"(run key {runner.key}); predictions: {runner.location(store.PREDICTIONS_PARQUET)}",
          file=sys.stderr)
    if counts["failed"]:
        raise RunFailed(failure_summary(counts["failed"], counts["selected"], runner.failures, runner.key))
    return 0


def own_older_output(folder, files):
    """A run folder written before the ownership marker existed: its manifest.json is a `sarchat
    infer` run manifest, or (a killed first run) it holds only the store. None: not ours."""
    if "manifest.json" in files:
        try:
            with open(os.path.join(folder, "manifest.json"), encoding="utf-8") as f:
                tool = json.load(f).get("tool")
        except (OSError, ValueError, AttributeError, RecursionError):
            return None
        return [] if isinstance(tool, str) and tool.startswith("sarchat infer") else None
    ours = all(f.split("/", 1)[0] in ("store", "runs") or f.startswith("predictions.") for f in files)
    return [] if ours and any(f.split("/", 1)[0] in ("store", "runs") for f in files) else None


def infer(cfg: InferenceConfig, argv=()):
    """The infer stage: answer `cfg`'s split into its run folder (or merge, or start the shards).
    `argv`: the command line the run manifests record (and spawned shards repeat). Raises
    SarchatError (RunFailed when samples are left without a prediction)."""
    reading = ownership.reading(cfg.dataset)  # one dataset version, checked again at the end
    # One writer per run folder; the shards of one run share it (their parent holds the lock).
    try:
        with ownership.claim(cfg.output, COMMAND, legacy=own_older_output, record=False,
                             lock=cfg.num_shards == 1 or cfg.spawn_shards):
            if cfg.spawn_shards and not cfg.merge_only:
                return _spawn(cfg, list(argv))
            return execute(cfg, argv=argv, verify_read=reading.verify)
    except remote.RemoteError as exc:
        raise remote.RemoteError(f"{exc}; what is done is kept in {cfg.output}; rerun the same command to "
                                 "resume and publish") from exc


def run(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = parse_config(argv)
    progress.turn_off(cfg.no_progress)
    return infer(cfg, argv)


if __name__ == "__main__":
    sys.exit(run())
