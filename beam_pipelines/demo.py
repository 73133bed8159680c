"""`sarchat demo [--output OUT]`: the whole toolkit on bundled synthetic data, on a CPU, in one command.

    sarchat demo [--output OUT] [--images N] [--seed S] [--tiny] [--verbose] [--no-progress]

(`sarchat demo OUT`, the folder as a positional argument, is the old spelling: accepted with a
note until 0.3.0.)

Stages, each its subcommand's stage function (synth, generate, ...) called in this process:

  1. synth      OUT/data        synthetic SAR images in the SARDet-100K layout (default 200 images)
  2. generate   OUT/dataset     the six tasks' dialogues (Parquet, TFRecord, ms-swift JSONL)
  3. stats      OUT/stats       the paper's dataset analysis (stats.json, stats.md, plots)
  4-6. infer    OUT/runs/<b>    three baselines on the test split: cfar (a classical detector that
                                looks at the image), blind (training-set priors, no image) and
                                oracle (the reference answers: the upper bound)
  7. score      OUT/results     one leaderboard of the three, metrics, report.md and report.html
                                (with the dataset section and marked samples with their images)

One line per stage (name, what it made, seconds); while a long stage runs, its progress (a bar on
a terminal, a line every few seconds otherwise; --no-progress: none) goes to stderr. Each stage's
own output goes to OUT/logs/<stage>.log (--verbose shows it). Re-running into the same OUT reuses it: inference
resumes (nothing is answered twice) and the other stages overwrite their files with identical ones.
Other settings (--images, --seed, --tiny) start the folder's stages afresh. --tiny is for tests
and CI: fewer identify variants, Parquet only, no stats plots files, fewer bootstrap replicates.

What the demo deletes: only files it wrote itself. OUT/demo.json lists every file the demo's stages
wrote (path, size, sha256) and is signed with HMAC-SHA256 under a key private to this user
(~/.config/sarchat/demo.key, created on first use) over the folder's real path, a random token of
the folder and the list. Starting afresh deletes the listed files whose content is still what was
listed, and the listed folders left empty; a file the user added or changed is kept. A demo.json
that does not verify (forged, copied from another folder, edited, another user's) means the folder
is not ours: the demo refuses it and deletes nothing.
"""
import argparse
import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import secrets
import sys
import time
import traceback
from typing import Any, Callable, NamedTuple, Optional

from sarchat.beam_pipelines import flags
from sarchat.beam_pipelines.cli import error_line, failure_line, one_line
from sarchat.transforms import progress
from sarchat.transforms.errors import OutputError, RunFailed

DEFAULT_OUT = "sarchat-demo"
DEFAULT_IMAGES = 200
TINY_IMAGES = 40
MARKER = "demo.json"
MARKER_FORMAT = "sarchat-demo/2"
KEY_FILE_ENV = "SARCHAT_DEMO_KEY_FILE"  # where the signing key lives (tests point it elsewhere)
SUBDIRS = ("data", "dataset", "stats", "runs", "results", "logs")
BACKENDS = ("cfar", "blind", "oracle")
ABOUT = {
    "oracle": "answers with the reference answers (the upper bound)",
    "cfar": "CA-CFAR detector plus hand-set shape rules tuned on the synthetic scenes (a CPU baseline)",
    "blind": "training-set priors from the question alone, never sees the image",
}


class StageFailed(RunFailed):
    """A stage of the demo failed; the message says which, and where its log is."""


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """The settings of `sarchat demo`, one field per flag."""
    output: str = DEFAULT_OUT
    images: Optional[int] = None
    seed: str = "0"
    tiny: bool = False
    verbose: bool = False
    no_progress: bool = False


def build_parser():
    p = flags.ArgumentParser(prog="sarchat demo", description=__doc__.split("\n\n")[0],
                             formatter_class=argparse.RawDescriptionHelpFormatter,
                             epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--output", default=DEFAULT_OUT, type=flags.output_folder("--output"),
                   help=f"output folder (default ./{DEFAULT_OUT})")
    p.add_renamed("OUT", "--output", positional=True, type=flags.output_folder("OUT"))
    p.add_argument("--images", type=flags.at_least(10), default=None,
                   help=f"synthetic images, train + test, at least 10 (default {DEFAULT_IMAGES}; {TINY_IMAGES} with --tiny)")
    p.add_argument("--seed", default="0", help="seed of the synthetic data (default 0)")
    p.add_argument("--tiny", action="store_true", help="smallest useful setting (tests, CI)")
    p.add_argument("--verbose", action="store_true", help="show every stage's own output")
    flags.add_progress_flag(p)
    return p


# ---------------------------------------------------------------------------------------------
# The output folder


def signing_key() -> bytes:
    """This user's demo key: 32 random bytes in a file only the user can read, made on first use."""
    config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    path = os.environ.get(KEY_FILE_ENV) or os.path.join(config_home, "sarchat", "demo.key")
    try:
        with open(path, "rb") as f:
            return f.read().strip()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise OutputError(f"cannot read the demo's signing key {path}: {exc.strerror or exc}") from None
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # a concurrent demo made it first
        with open(path, "rb") as f:
            return f.read().strip()
    except OSError as exc:
        raise OutputError(f"cannot create the demo's signing key {path}: {exc.strerror or exc}") from None
    key = secrets.token_hex(32).encode("ascii")
    with os.fdopen(fd, "wb") as f:
        f.write(key + b"\n")
    return key


def _digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return [os.path.getsize(path), h.hexdigest()]


def _walk(out):
    """({relative path: absolute path} of the files, set of relative folders) under the stage folders."""
    files, dirs = {}, set()
    for sub in SUBDIRS:
        top = os.path.join(out, sub)
        if not os.path.isdir(top) or os.path.islink(top):
            continue
        dirs.add(sub)
        for folder, subdirs, names in os.walk(top):
            rel_folder = os.path.relpath(folder, out).replace(os.sep, "/")
            dirs.update(f"{rel_folder}/{d}" for d in subdirs)
            for name in names:
                files[f"{rel_folder}/{name}"] = os.path.join(folder, name)
    return files, dirs


class Ledger:
    """The signed list of what this demo folder's stages wrote (OUT/demo.json, see the module doc)."""

    def __init__(self, out, config, token, files=None, dirs=None, foreign=()):
        self.out, self.config, self.token = out, config, token
        self.files = dict(files or {})     # relative path -> [size, sha256]
        self.dirs = set(dirs or ())        # relative folders the demo made
        self.foreign = set(foreign)        # files (and folders) present before that are not ours
        self._seen = {}                    # relative path -> (size, mtime_ns) when last hashed

    def document(self) -> dict:
        """demo.json, signed (HMAC-SHA256 of the list, its settings and token, and the folder's real path)."""
        doc = {"format": MARKER_FORMAT, "config": self.config, "token": self.token, "files": self.files,
               "dirs": sorted(self.dirs)}
        payload = json.dumps({**doc, "folder": os.path.realpath(self.out)}, sort_keys=True)
        return {**doc, "signature": hmac.new(signing_key(), payload.encode("utf-8"), hashlib.sha256).hexdigest()}

    @classmethod
    def load(cls, out):
        """The verified ledger of `out`, or None when demo.json is missing, unreadable or not signed
        by this user's key for this folder."""
        try:
            with open(os.path.join(out, MARKER), encoding="utf-8") as f:
                doc = json.load(f)
            ledger = cls(out, doc["config"], doc["token"], doc["files"], doc["dirs"])
            signed = (doc["format"] == MARKER_FORMAT
                      and hmac.compare_digest(doc["signature"], ledger.document()["signature"]))
        except (OSError, KeyError, TypeError, ValueError):  # unreadable, not JSON, not a ledger
            return None
        return ledger if signed else None

    def save(self):
        from sarchat.transforms.fileio import write_text

        write_text(os.path.join(self.out, MARKER), json.dumps(self.document(), indent=1, sort_keys=True) + "\n")

    def split_present(self):
        """Compare the folder with the list: listed files still as written stay ours, everything
        else under the stage folders (added or changed since) becomes foreign."""
        files, dirs = _walk(self.out)
        self.files = {rel: self.files[rel] for rel, path in files.items()
                      if rel in self.files and not os.path.islink(path) and _digest(path) == self.files[rel]}
        self.foreign.update(set(files) - set(self.files), dirs - self.dirs)

    def record(self):
        """Add every file and folder under the stage folders that is not foreign, and save."""
        files, dirs = _walk(self.out)
        for rel, path in files.items():
            if rel in self.foreign or os.path.islink(path):
                continue
            st = os.stat(path)
            if self._seen.get(rel) != (st.st_size, st.st_mtime_ns) or rel not in self.files:
                self.files[rel] = _digest(path)
                self._seen[rel] = (st.st_size, st.st_mtime_ns)
        self.files = {rel: v for rel, v in self.files.items() if rel in files}
        self.dirs = {d for d in dirs if d not in self.foreign}
        self.save()

    def delete_listed(self):
        """Delete the listed files (checked by split_present) and the listed folders left empty."""
        for rel in sorted(self.files):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.out, *rel.split("/")))
        for rel in sorted(self.dirs, key=lambda d: d.count("/"), reverse=True):
            with contextlib.suppress(OSError):  # not empty: something of the user's is inside
                os.rmdir(os.path.join(self.out, *rel.split("/")))


def prepare_out(out, config):
    """Create OUT, or reuse a demo folder made with the same settings; a demo folder made with other
    settings loses the files its stages wrote. A non-empty folder without a valid signed demo.json
    is refused and nothing in it is touched. Returns (state, ledger)."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise OutputError(f"OUT {out} exists and is not a folder")
    if os.path.isdir(out) and os.listdir(out):
        if not os.path.isfile(os.path.join(out, MARKER)):
            raise OutputError(f"{out} exists, is not empty and was not made by `sarchat demo`; "
                              "give a new folder (or an earlier demo's)")
        ledger = Ledger.load(out)
        if ledger is None:
            raise OutputError(f"{os.path.join(out, MARKER)} is not a demo.json signed by your `sarchat demo` "
                              f"for this folder (forged, copied, edited or older); nothing was deleted: "
                              "give a new folder")
        ledger.split_present()
        if ledger.config == config:
            state = "reused"
        else:
            ledger.delete_listed()
            ledger = Ledger(out, config, secrets.token_hex(16), foreign=ledger.foreign)
            state = "restarted"
    else:
        ledger = Ledger(out, config, secrets.token_hex(16))
        state = "new"
    os.makedirs(out, exist_ok=True)
    ledger.record()
    return state, ledger


# ---------------------------------------------------------------------------------------------
# Running one stage


@contextlib.contextmanager
def _captured(log_path, verbose):
    """Send the stage's stdout, stderr and logging to its log file (and nowhere else unless verbose)."""
    if verbose:
        yield None
        return
    with open(log_path, "w", encoding="utf-8") as log:
        root = logging.getLogger()
        saved = root.handlers[:]
        handler = logging.StreamHandler(log)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.handlers = [handler]
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                yield log
        finally:
            root.handlers = saved


def _tail(path, n=25):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line for line in lines[-n:])


class Stage(NamedTuple):
    """One stage of the demo: its name, its stage function's config, what its command prints after
    it (into the stage's log) and what it made in one line."""
    name: str
    config: Any
    call: Callable[[Any], Any]                # the stage function, called with config
    describe: Callable[[Any], str]            # the stage function's result -> the stage's line
    summary: Optional[Callable[[Any, Any, float], None]] = None  # (config, result, seconds): the
    #                                          subcommand's own summary, as `sarchat <stage>` prints it

    @property
    def command(self) -> str:
        return " ".join(["sarchat", self.name.split()[0], *flags.command_words(self.config)])


def run_stage(index, total, stage, logs, verbose):
    """Run one stage; print one line with its name, what it made and its seconds; raise StageFailed.
    Its log gets its output, then the subcommand's own summary (as `sarchat <stage>` prints it) or
    its error line (a bug: its traceback)."""
    log_path = os.path.join(logs, stage.name.replace(" ", "-") + ".log")
    label = f"[{index}/{total}] {stage.name:<13}"
    # With progress on, the stage's progress (stderr) says what runs; the stage's line comes whole at
    # its end, so that a bar or progress line never lands in the middle of it.
    whole_line = progress.enabled() and not verbose
    if not whole_line:
        print(label + ("\n" if verbose else ""), end="", flush=True)
    t0 = time.perf_counter()
    error = None
    with progress.to_stream(sys.stderr, leave=verbose), _captured(log_path, verbose) as log:
        if log is not None:
            print(f"$ {stage.command}", file=log, flush=True)
        try:
            result = stage.call(stage.config)
            if stage.summary is not None:
                stage.summary(stage.config, result, time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001 - reported below, with the log
            error, failure = exc, failure_line(exc)
            if failure is None:
                traceback.print_exc()
            else:
                print(error_line(stage.name.split()[0], failure[0]), file=sys.stderr)
    seconds = time.perf_counter() - t0
    if error is not None:
        print((label if verbose or whole_line else "") + f" FAILED after {seconds:.1f} s", flush=True)
        detail = one_line(failure[0]) if failure else f"{type(error).__name__}: {one_line(error)}"
        tail = "" if verbose else _tail(log_path)
        if tail:  # the progress stream shows what went wrong; the error line stays one line
            print(f"  last lines of its output ({log_path}):\n{tail}", flush=True)
        raise StageFailed(f"stage '{stage.name}' failed ({detail}); log: {log_path}; command: {stage.command}")
    try:
        what = stage.describe(result)
    except Exception:  # a summary is a nicety
        what = ""
    line = f"{what:<52} {seconds:6.1f} s"
    print((label + " " + line) if verbose or whole_line else (" " + line), flush=True)


# ---------------------------------------------------------------------------------------------
# One-line summaries of what each stage made


def _describe_synth(summary):
    splits = summary["splits"].items()
    per = ", ".join(f"{c['images']} {split}" for split, c in splits)
    return f"{sum(c['images'] for _, c in splits)} SAR images, {sum(c['boxes'] for _, c in splits)} boxes ({per})"


def _describe_generate(manifest):
    per = {split: c["dialogues"] for split, c in manifest["counts"].items()}
    order = {"train": 0, "val": 1, "test": 2}
    splits = sorted(per, key=lambda k: (order.get(k, 3), k))
    return f"{sum(per.values()):,} dialogues ({', '.join(f'{per[k]:,} {k}' for k in splits)}), 6 tasks"


def _describe_stats(doc):
    boxes = sum(v.get("boxes", 0) for v in (doc.get("boxes") or {}).values())
    return f"stats.json, stats.md ({boxes} boxes, {len(doc.get('splits') or [])} splits)"


def _describe_infer(run_dir, backend):
    import pyarrow.parquet as pq

    t = pq.read_table(os.path.join(run_dir, "predictions.parquet"), columns=["id", "error"])
    n_err = t.num_rows - t.column("error").null_count
    return f"{t.num_rows} test answers" + (f", {n_err} failed" if n_err else "") + f" ({backend})"


def _describe_score(scored):
    board = scored.leaderboard
    return f"{len(board)} models: " + ", ".join(f"{r['model']} {r['overall']:.1f}" for r in board)


def stages(out, images, seed, tiny, no_progress):
    """The demo's stages into the folder `out`: each stage function with its config."""
    from sarchat.beam_pipelines import generate, score, stats, synth
    from sarchat.inference.config import InferenceConfig
    from sarchat.inference.run import infer

    data, dataset, stats_dir, runs, results, _ = (os.path.join(out, d) for d in SUBDIRS)
    generating = generate.GenerateConfig(data, dataset, no_progress=no_progress)
    found = [
        Stage("synth", synth.SynthConfig(data, images=images, seed=seed, quiet=True, no_progress=no_progress),
              synth.synth, _describe_synth, synth.print_summary),
        Stage("generate", dataclasses.replace(generating, formats="parquet", identify_variants=2) if tiny else generating,
              generate.generate, _describe_generate, generate.print_summary),
        Stage("stats", stats.StatsConfig(dataset, stats_dir, plots="none" if tiny else "png", no_progress=no_progress),
              stats.stats, _describe_stats, stats.print_summary),
    ]
    for b in BACKENDS:
        cfg = InferenceConfig(dataset=dataset, split="test", backend=b, output=os.path.join(runs, b),
                              image_root=data, no_progress=no_progress)
        cfg.check()
        found.append(Stage(f"infer {b}", cfg, lambda c: infer(c, flags.command_words(c)),
                           lambda _, d=cfg.output, b=b: _describe_infer(d, b)))
    predictions = tuple(os.path.join(runs, b, "predictions.parquet") for b in BACKENDS)
    scoring = score.ScoreConfig(dataset, predictions, results, image_root=data, stats=stats_dir,
                                no_progress=no_progress)
    found.append(Stage("score", dataclasses.replace(scoring, bootstrap=200, samples=1) if tiny else scoring,
                       score.score, _describe_score, score.print_summary))
    return found


# ---------------------------------------------------------------------------------------------


def demo(config: DemoConfig) -> list:
    """The whole demo into config.output, one line per stage on stdout; the leaderboard."""
    images = config.images if config.images is not None else (TINY_IMAGES if config.tiny else DEFAULT_IMAGES)
    out = os.path.abspath(config.output)
    settings = {"images": images, "seed": str(config.seed), "tiny": bool(config.tiny)}
    state, ledger = prepare_out(out, settings)  # OutputError: not our folder, nothing touched
    logs, results = os.path.join(out, "logs"), os.path.join(out, "results")
    os.makedirs(logs, exist_ok=True)
    note = {"new": "", "reused": " (reusing the earlier run here)",
            "restarted": " (other settings than the earlier run here: starting afresh)"}[state]
    print(f"SARChat-Bench demo: {images:,} synthetic SAR images -> dialogues -> statistics -> 3 baseline models "
          f"-> scores and report. No GPU, no download.\nOutput: {out}{note}\n", flush=True)
    t0 = time.perf_counter()
    todo = stages(out, images, str(config.seed), config.tiny, config.no_progress)
    for i, stage in enumerate(todo, 1):
        try:
            run_stage(i, len(todo), stage, logs, config.verbose)
        finally:  # what a stage wrote is listed even when it failed, so a restart can remove it
            ledger.record()
    total = time.perf_counter() - t0
    with open(os.path.join(results, "leaderboard.json"), encoding="utf-8") as f:
        board = json.load(f)
    report = os.path.join(results, "report.html")
    print(f"\nDone in {total:.1f} s. Leaderboard (scores in %, overall = the paper's Eq. 4):\n")
    from sarchat.beam_pipelines.score import leaderboard_text

    print("\n".join(leaderboard_text(board, ABOUT).splitlines()[1:]))  # the demo's own heading says the rest
    print(f"\nReport (one self-contained HTML file: tables, charts, dataset statistics, samples with boxes):\n"
          f"  {report}\n  open file://{report} in a browser\n"
          f"Everything else is under {out}: data/ (images), dataset/ (dialogues), stats/, runs/ (predictions), "
          f"results/ (metrics), logs/.")
    return board


def run(argv=None):
    demo(flags.parse_config(build_parser(), argv, DemoConfig))
    return 0


if __name__ == "__main__":
    sys.exit(run())
