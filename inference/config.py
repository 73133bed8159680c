"""The inference stage's settings: one frozen `InferenceConfig`, built once from the flags.

Both entry points, `sarchat infer` (inference/run.py) and the RunInference pipeline
`sarchat infer-beam` (beam_pipelines/infer_beam.py), declare their flags with the groups below and
turn the parsed flags into an InferenceConfig with `InferenceConfig.from_args`; backends read its
fields directly. A flag's default is the dataclass field's default, declared once.

Flags are validated when parsed (argparse type functions): counts are positive, seeds
non-negative, --backend/--adapter/--tasks name something that exists, --chat-template is a
readable file. `OneLineParser` raises such an error as a UsageError, which `sarchat` prints as the
one line `sarchat <command>: error: argument --flag: ...` (exit 2). Checks that need several flags or
the dataset (an --output overlapping the dataset, --shard-index in range, a --tasks entry that
selects no dialogue) raise sarchat.transforms.errors classes from `InferenceConfig.from_args` or
later, naming the flag.
"""
import argparse
import dataclasses
import importlib
import json
from dataclasses import dataclass
from typing import Optional, Tuple

from sarchat.transforms.adapters import ADAPTERS, get_adapter
from sarchat.transforms.dataset_files import is_url
from sarchat.transforms.errors import UsageError
from sarchat.transforms import fileio
from sarchat.transforms.fileio import check_output_location
from sarchat.transforms.flag_types import non_negative_float, non_negative_int, positive_float, positive_int, unit_float
from sarchat.transforms.tasks import SPECS, TASKS

# The known backends; the module is imported only when the backend is used (vLLM stays unimported).
BACKENDS = {
    "vllm": ("sarchat.inference.backends.vllm_backend", "VllmBackend"),
    "openai": ("sarchat.inference.backends.openai_backend", "OpenAIBackend"),
    "cfar": ("sarchat.inference.backends.cfar_backend", "CfarBackend"),
    "oracle": ("sarchat.inference.backends.baselines_backend", "OracleBackend"),
    "blind": ("sarchat.inference.backends.baselines_backend", "BlindBackend"),
}

# Decoded images larger than this are refused per sample before decoding (a small PNG can declare
# 81 Mpx and cost gigabytes); SAR tiles are far below it.
DEFAULT_MAX_IMAGE_PIXELS = 1 << 25


@dataclass(frozen=True)
class InferenceConfig:
    """Every setting of one inference run (the flags of `sarchat infer` / `sarchat infer-beam`)."""

    # dataset and selection
    dataset: Optional[str] = None
    split: str = "test"
    tasks: Optional[Tuple[str, ...]] = None
    limit: Optional[int] = None
    image_root: Optional[str] = None
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    # where the run goes: `output` is the local run folder; for a URL --output it is the local
    # work folder and `remote_output` the URL it is mirrored to
    output: Optional[str] = None
    remote_output: Optional[str] = None
    work_dir: Optional[str] = None
    push_interval: float = 60.0
    # model
    backend: str = "vllm"
    model: Optional[str] = None
    model_name: Optional[str] = None
    adapter: Optional[str] = None
    # sampling
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 512
    seed: int = 0
    no_format_hint: bool = False
    # vllm engine
    revision: Optional[str] = None
    tensor_parallel_size: int = 1
    gpu_memory_utilization: Optional[float] = None
    max_model_len: Optional[int] = None
    trust_remote_code: bool = False
    engine_arg: Tuple[str, ...] = ()
    chat_template: Optional[str] = None        # the --chat-template file, as given
    chat_template_text: Optional[str] = None   # its text, read once when the flags are parsed
    io_workers: int = 8
    # openai endpoint
    base_url: Optional[str] = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 16
    max_retries: int = 6
    retry_base: float = 1.0
    retry_max_wait: float = 60.0
    request_timeout: float = 300.0
    no_vllm_extras: bool = False
    # baselines
    fit_split: str = "train"
    blind_question_box: bool = False
    # sharding and run control
    num_shards: int = 1
    shard_index: int = 0
    spawn_shards: bool = False
    gpus: Optional[str] = None
    batch_size: Optional[int] = None
    merge_only: bool = False
    no_merge: bool = False
    no_progress: bool = False
    progress_position: Optional[int] = None

    @classmethod
    def from_args(cls, args) -> "InferenceConfig":
        """The config of parsed flags (fields without a flag keep their default), checked as a whole."""
        given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
        if given.get("tasks") is not None:
            given["tasks"] = tuple(given["tasks"])
        given["engine_arg"] = tuple(given.get("engine_arg") or ())
        if given.get("chat_template"):
            given["chat_template_text"] = read_chat_template(given["chat_template"])
        cfg = cls(**given)
        if cfg.output and is_url(cfg.output) and not cfg.remote_output:
            from sarchat.inference.remote import default_work_dir

            url = cfg.output.rstrip("/")
            cfg = dataclasses.replace(cfg, remote_output=url, output=cfg.work_dir or default_work_dir(url))
        cfg.check()
        return cfg

    def check(self):
        if not 0 <= self.shard_index < self.num_shards:
            raise UsageError(f"--shard-index {self.shard_index} must be in 0..{self.num_shards - 1} "
                             f"(--num-shards {self.num_shards})")
        if self.backend in ("vllm", "openai") and not self.model:
            raise UsageError(f"--model is required for the {self.backend} backend")
        if self.dataset:
            for flag, out in (("--output", self.remote_output or self.output), ("--work-dir", self.output)):
                # the run writes manifest.json and predictions there, which would overwrite or mix
                # with the dataset: OutputError when the run folder is, lies in or holds it
                if out:
                    fileio.check_no_overlap([("the dataset folder", self.dataset)], out, flag, what="run")


# ---- validation -----------------------------------------------------------------------------------


def read_chat_template(path) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise UsageError(f"cannot read the chat template {path} ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise UsageError(f"the chat template {path} is not UTF-8 text") from None


def get_backend_class(name: str):
    """The backend class of a registry name or `package.module:Class` (UsageError when none; the
    --backend flag's type function reports it as `argument --backend: ...`)."""
    if name in BACKENDS:
        module, attr = BACKENDS[name]
    elif ":" in name:
        module, attr = name.split(":", 1)
        if not module or not attr:
            raise UsageError(f"{name!r}: expected package.module:Class")
    else:
        raise UsageError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)} "
                         "(or package.module:Class for a custom one)")
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise UsageError(f"{name}: cannot import {module} ({exc})") from None
    try:
        return getattr(mod, attr)
    except AttributeError:
        raise UsageError(f"{name}: {module} has no {attr}") from None


def parse_tasks(spec):
    """'count,refer_single grounding' -> {('count', None), ('refer', 'single'), ('grounding', None)};
    None selects every task. UsageError naming the entry that names no task or subset."""
    if not spec:
        return None
    try:
        return {task_entry(entry) for entry in task_entries(spec)}
    except UsageError as exc:
        raise UsageError(f"--tasks: {exc}") from None


def task_entries(spec):
    """The entries of --tasks values: separated by spaces or commas."""
    parts = spec if isinstance(spec, (list, tuple)) else [spec]
    return " ".join(map(str, parts)).replace(",", " ").split()


def task_entry(entry):
    """('refer', 'single') for 'refer_single'; UsageError for an entry that selects nothing."""
    task, _, subset = entry.partition("_")
    if task not in TASKS:
        raise UsageError(f"unknown task {entry!r}; tasks: {', '.join(TASKS)} (or TASK_single / TASK_multi)")
    if subset and subset not in SPECS[task].subsets:
        has = f"has the subsets {', '.join(SPECS[task].subsets)}" if SPECS[task].subsets else "has no subsets"
        raise UsageError(f"{entry!r} selects nothing: {task} {has}")
    return task, subset or None


def parse_engine_args(items):
    """['max_num_seqs=128', 'enforce_eager=true', 'hf_overrides={"a": 1}'] -> dict (JSON values,
    else the text)."""
    out = {}
    for item in items or ():
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--engine-arg wants KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


def _argtype(check):
    """An argparse type function: the text, once `check(text)` accepts it (its UsageError or
    ValueError is the flag's error)."""
    def parse(text):
        try:
            check(text)
        except (UsageError, ValueError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text
    return parse


tasks_arg = _argtype(lambda text: [task_entry(entry) for entry in task_entries(text)])
adapter_arg = _argtype(get_adapter)
backend_arg = _argtype(get_backend_class)
engine_arg = _argtype(lambda text: parse_engine_args([text]))
chat_template_arg = _argtype(read_chat_template)


class OneLineParser(argparse.ArgumentParser):
    """argparse whose parse errors raise UsageError: `sarchat` prints the one line
    `sarchat <command>: error: MESSAGE` and exits 2 (beam_pipelines/cli.py)."""

    def error(self, message):
        raise UsageError(message)


# ---- flag groups, shared by both entry points -------------------------------------------------

_D = {f.name: f.default for f in dataclasses.fields(InferenceConfig)}


def _flags(target, underscore_aliases=False):
    """add_argument of a parser or group; with `underscore_aliases`, `--max-tokens` is also
    `--max_tokens` (the Beam entry point, whose other flags are Beam's underscore options)."""
    def add(*names, **kw):
        if underscore_aliases:
            names += tuple("--" + n[2:].replace("-", "_") for n in names if n.startswith("--") and "-" in n[2:])
        return target.add_argument(*names, **kw)
    return add


def add_dataset_flags(p, underscore_aliases=False, output_help=None):
    a = _flags(p, underscore_aliases)
    a("--dataset", required=True,
      help="output folder of `sarchat generate` (its manifest.json lists the files; local or a URL)")
    a("--split", default=_D["split"], help="split of the dataset to run over (default %(default)s)")
    a("--output", required=True, type=lambda text: check_output_location(text, "--output"),
      help=output_help or "run folder")
    a("--tasks", nargs="+", type=tasks_arg, default=None,
      help="tasks to run (classify describe count grounding identify refer, or TASK_single/TASK_multi)")
    a("--image-root", default=None, help="dataset root for image_path (default: the manifest's input_root)")
    a("--max-image-pixels", type=positive_int, default=_D["max_image_pixels"],
      help="refuse (per sample) images with more pixels than this, before decoding them (default %(default)s)")


def add_model_flags(p, underscore_aliases=False, model_required=False):
    a = _flags(p, underscore_aliases)
    a("--model", required=model_required, default=None,
      help="checkpoint path or hub id (vllm), served model name (openai)")
    a("--model-name", default=None, help="name written in the predictions' model column")
    a("--adapter", type=adapter_arg, default=None,
      help=f"{', '.join(ADAPTERS)} or NAME:BOXFORMAT; default: guessed from --model")


def add_sampling_flags(p, underscore_aliases=False):
    a = _flags(p, underscore_aliases)
    a("--temperature", type=non_negative_float, default=_D["temperature"],
      help="sampling temperature; 0 is greedy, deterministic decoding (default %(default)s)")
    a("--top-p", type=unit_float, default=_D["top_p"], help="nucleus sampling probability mass, in (0, 1] (default %(default)s)")
    a("--max-tokens", type=positive_int, default=_D["max_tokens"], help="most tokens generated per answer (default %(default)s)")
    a("--seed", type=non_negative_int, default=_D["seed"], help="sampling seed, recorded in the run manifest (default %(default)s)")
    a("--no-format-hint", action="store_true", help="do not append the box-format sentence for zero-shot adapters")


def add_vllm_flags(p, underscore_aliases=False):
    g = p.add_argument_group("vllm engine")
    a = _flags(g, underscore_aliases)
    a("--revision", default=None, help="model revision (hub branch, tag or commit; default: the hub's default)")
    a("--tensor-parallel-size", type=positive_int, default=_D["tensor_parallel_size"],
      help="GPUs one engine spans (default %(default)s)")
    a("--gpu-memory-utilization", type=unit_float, default=None,
      help="fraction of GPU memory vLLM may use, in (0, 1] (default: vLLM's own)")
    a("--max-model-len", type=positive_int, default=None,
      help="context length in tokens (default: the model's own)")
    a("--trust-remote-code", action="store_true", help="let vLLM run the model repository's own Python code")
    a("--engine-arg", action="append", type=engine_arg, default=[], metavar="KEY=JSON",
      help="extra vllm.LLM argument, repeatable (e.g. max_num_seqs=128); part of the run key")
    a("--chat-template", type=chat_template_arg, default=None,
      help="jinja chat template file overriding the adapter's (sent to the openai endpoint too)")
    a("--io-workers", type=positive_int, default=_D["io_workers"], help="threads reading and encoding images (default %(default)s)")


def add_openai_flags(p):
    g = p.add_argument_group("openai backend")
    g.add_argument("--base-url", default=None, help="e.g. http://127.0.0.1:8000/v1 (default $OPENAI_BASE_URL)")
    g.add_argument("--api-key-env", default=_D["api_key_env"], help="environment variable holding the API key (default %(default)s)")
    g.add_argument("--concurrency", type=positive_int, default=_D["concurrency"], help="requests in flight at most (default %(default)s)")
    g.add_argument("--max-retries", type=non_negative_int, default=_D["max_retries"],
                   help="retries of a request that timed out, lost its connection or got HTTP 408/429/5xx "
                        "(default %(default)s)")
    g.add_argument("--retry-base", type=positive_float, default=_D["retry_base"],
                   help="first backoff in seconds, doubling per retry (default %(default)s)")
    g.add_argument("--retry-max-wait", type=positive_float, default=_D["retry_max_wait"],
                   help="longest backoff in seconds (default %(default)s)")
    g.add_argument("--request-timeout", type=positive_float, default=_D["request_timeout"],
                   help="seconds one request may take in all (connect, send, wait, read; default %(default)s)")
    g.add_argument("--no-vllm-extras", action="store_true",
                   help="send only standard OpenAI fields (no skip_special_tokens, chat_template, "
                        "mm_processor_kwargs): for endpoints that are not vLLM")


def add_baseline_flags(p):
    p.add_argument("--fit-split", default=_D["fit_split"], help="split the blind prior is fitted on (default %(default)s)")
    p.add_argument("--blind-question-box", action="store_true",
                   help="blind prior reads the box an identify question names (still never the image)")


def add_run_flags(p):
    """`sarchat infer` only: backend choice, the store, sharding and run control."""
    p.add_argument("--backend", type=backend_arg, default=_D["backend"],
                   help=f"{', '.join(BACKENDS)} or package.module:Class (default %(default)s)")
    p.add_argument("--work-dir", default=None,
                   help="local folder for the store when --output is a URL (default ~/.cache/sarchat/infer/<hash>)")
    p.add_argument("--push-interval", type=non_negative_float, default=_D["push_interval"],
                   help="seconds between uploads of this shard's part file when --output is a URL "
                        "(0: every batch; default %(default)s)")
    p.add_argument("--limit", type=positive_int, default=None, help="first N selected dialogues (before sharding)")
    p.add_argument("--num-shards", type=positive_int, default=_D["num_shards"],
                   help="split the selected dialogues into this many shards, one process each (default %(default)s)")
    p.add_argument("--shard-index", type=non_negative_int, default=_D["shard_index"],
                   help="the shard this process runs, 0 .. --num-shards - 1 (default %(default)s)")
    p.add_argument("--spawn-shards", action="store_true",
                   help="start --num-shards processes here (one GPU each), wait, merge")
    p.add_argument("--gpus", default=None, help="GPU ids for --spawn-shards, e.g. 0,1,2,3 (default 0..K*TP-1)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="samples per batch (and per fsync)")
    p.add_argument("--merge-only", action="store_true", help="only rewrite predictions.parquet from the store")
    p.add_argument("--no-merge", action="store_true", help="do not merge at the end (spawned shards)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    p.add_argument("--progress-position", type=non_negative_int, default=None, help=argparse.SUPPRESS)
