"""Progress of long stages, on stderr only (no Beam import; docs/cli.md, "Progress").

What the user sees:
- stderr is a terminal: a tqdm bar (done / total, rate, time left);
- stderr is not a terminal (a log file, CI, a pipe): one plain line every few seconds,

      sarchat generate: writing dialogues: 12,000 of 105,000 images (11%), 830 images/s, about 1 min 52 s left

  and a closing "done" line if any line was printed (a stage shorter than the interval says nothing);
- progress turned off (`--no-progress`, or SARCHAT_NO_PROGRESS=1): nothing.

Progress never writes to stdout or to an output file, so no output byte depends on it.

Beam pipelines: a DoFn calls `worker_count(stage, n)` for what it finished. That is three things:
- on every runner a log line every minute with this worker's count (Dataflow shows it in the job's
  logs; the DoFn adds a Beam counter (Metrics.counter) of its own, shown in the Dataflow console);
- when the launcher set SARCHAT_PROGRESS_DIR (it does for the local FnApiRunner, in-process and
  --direct_running_mode=multi_processing alike: Beam starts a multi-processing worker with the
  launcher's environment and stderr, and it shares the machine's file system), the worker's running
  count goes to a small JSON file in that folder, rewritten on every call (so a DoFn calls it
  once per shard, bucket or table it finished, never per element: the last count must not wait
  for a later write, as a worker process may be stopped right after its last bundle);
- the launcher's `Watcher` sums those files into the stage's Progress while the pipeline runs.
A worker's own log records do not reach the user's terminal in multi-processing mode (Beam
forwards them to the launcher's logging at INFO, below the `sarchat` handler's WARNING), which is
why the count travels through files rather than log lines.
"""
import contextlib
import glob
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time

ENV_DIR = "SARCHAT_PROGRESS_DIR"            # where local workers write their counts (set by Watcher)
ENV_INTERVAL = "SARCHAT_PROGRESS_INTERVAL"  # seconds between plain lines (default 5; tests use less)
ENV_OFF = "SARCHAT_NO_PROGRESS"             # 1: no progress at all (the same as --no-progress)
DEFAULT_INTERVAL = 5.0
WORKER_LOG_INTERVAL = 60.0                  # a worker logs its count at most this often
TTY_DELAY = 1.0                             # a terminal's bar appears once a stage has run this long

_LOG = logging.getLogger("sarchat.progress")
_state = {"stream": None, "off": False, "leave": True}


def interval() -> float:
    try:
        return max(0.0, float(os.environ.get(ENV_INTERVAL, DEFAULT_INTERVAL)))
    except ValueError:
        return DEFAULT_INTERVAL


def enabled() -> bool:
    return not _state["off"] and os.environ.get(ENV_OFF, "").strip().lower() not in ("1", "true", "yes")


def stream():
    """Where progress goes: stderr, unless `to_stream` pointed it elsewhere (the demo keeps it on the
    terminal while a stage's own output goes to the stage's log)."""
    return _state["stream"] or sys.stderr


@contextlib.contextmanager
def to_stream(out, leave=True):
    """Progress goes to `out` meanwhile; leave=False: a finished bar is cleared (the demo prints
    its own line per stage)."""
    saved = _state["stream"], _state["leave"]
    _state["stream"], _state["leave"] = out, leave
    try:
        yield
    finally:
        _state["stream"], _state["leave"] = saved


def turn_off(off: bool = True):
    """`--no-progress`: no progress from here on in this process (and its local Beam workers)."""
    _state["off"] = bool(off)


def _isatty(out) -> bool:
    try:
        return bool(out.isatty())
    except (AttributeError, ValueError):
        return False


def format_duration(seconds: float) -> str:
    """12 s, 1 min 05 s, 2 h 03 min."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {(seconds % 3600) // 60:02d} min"


def progress_line(label, done, total, unit, elapsed) -> str:
    """The plain line: what, how far, the rate and the time left (when the total is known)."""
    rate = done / elapsed if elapsed > 0 else 0.0
    rate_text = f"{rate:,.0f} {unit}/s" if rate >= 10 else f"{rate:,.1f} {unit}/s"
    if total and done == 0:  # workers starting (multi-processing: a few seconds), nothing finished yet
        return f"{label}: 0 of {total:,} {unit} yet, starting, {format_duration(elapsed)} so far"
    if total and done >= total:  # the counted part is over; the stage's last steps (writing) are not counted
        return f"{label}: all {total:,} {unit} done, finishing (writing outputs), {format_duration(elapsed)} so far"
    if total:
        share = done / total
        left = (total - done) / rate if rate > 0 else None
        text = f"{label}: {done:,} of {total:,} {unit} ({share:.0%}), {rate_text}"
        if left is not None:
            text += ", less than 1 s left" if left < 1 else f", about {format_duration(left)} left"
        return text
    return f"{label}: {done:,} {unit}, {rate_text}, {format_duration(elapsed)} so far"


class Progress:
    """One stage's progress: `update(n)` / `set(done)`; a bar on a terminal, plain lines otherwise,
    nothing when progress is off. Thread-safe (the Watcher sets it from its own thread)."""

    def __init__(self, label, total=None, unit="items", leave=None, position=None):
        self.label, self.total, self.unit = label, (int(total) if total else None), unit
        self.extra = ""
        self.done = 0
        self.lines = 0
        self.started = time.monotonic()
        self._last_line = self.started
        self._lock = threading.Lock()
        self._closed = False
        self.active = enabled()
        self._out = stream()
        self._bar = None
        self._tty = self.active and _isatty(self._out)
        self._bar_args = {"leave": _state["leave"] if leave is None else leave, "position": position}

    def _open_bar(self):
        """The tqdm bar, opened once the stage has run TTY_DELAY seconds (a quick one shows none)."""
        from tqdm import tqdm

        self._bar = tqdm(total=self.total, desc=self.label, unit=self.unit, file=self._out, initial=self.done,
                         dynamic_ncols=True, mininterval=0.5, smoothing=0.1, **self._bar_args)
        if self.extra:
            self._bar.set_postfix_str(self.extra, refresh=False)

    def note(self, **values):
        """Figures shown after the count (e.g. failed=3)."""
        with self._lock:
            self.extra = ", ".join(f"{v} {k}" for k, v in values.items() if v)
            if self._bar is not None and self.extra:
                self._bar.set_postfix_str(self.extra, refresh=False)

    def update(self, n=1):
        with self._lock:
            self._set(self.done + n)

    def set(self, done):
        with self._lock:
            self._set(done)

    def _set(self, done):
        if self._closed or done < self.done:
            return
        step, self.done = done - self.done, done
        if not self.active:
            return
        now = time.monotonic()
        if self._tty:
            if self._bar is not None:
                self._bar.update(step)
            elif now - self.started >= TTY_DELAY:
                self._open_bar()
            return
        if now - self._last_line >= interval() and step >= 0:
            self._last_line = now
            line = progress_line(self.label, self.done, self.total, self.unit, now - self.started)
            self._write(line + (f" ({self.extra})" if self.extra else ""))

    def _write(self, text):
        self.lines += 1
        try:
            print(text, file=self._out, flush=True)
        except (OSError, ValueError):  # a closed stderr must not fail the run
            self.active = False

    def close(self, finished=True):
        """End the stage; `finished`: it completed, so the count is the total (workers' last counts
        may not have been written yet)."""
        with self._lock:
            if self._closed:
                return
            if finished and self.total and self.done < self.total:
                self._set(self.total)
            self._closed = True
            elapsed = time.monotonic() - self.started
            if self._bar is not None:
                self._bar.close()
            elif self.active and self.lines:
                state = "done" if finished else "stopped"
                self._write(f"{self.label}: {state}, {self.done:,} {self.unit} in {format_duration(elapsed)}")

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        self.close(finished=exc_type is None)


# ---------------------------------------------------------------------------------------------
# Beam workers -> launcher


_worker_lock = threading.Lock()
_worker_counts: dict[str, int] = {}  # stage -> count in this process
_worker_logged: dict[str, float] = {}  # stage -> monotonic time of the last log line


def worker_count(stage: str, n: int = 1):
    """A pipeline worker finished `n` more units of `stage` (e.g. "generate.images")."""
    if not n:
        return
    now = time.monotonic()
    with _worker_lock:
        total = _worker_counts[stage] = _worker_counts.get(stage, 0) + int(n)
        folder = os.environ.get(ENV_DIR)
        if folder:  # under the lock: a thread's older total never replaces a newer one
            _write_count(folder, stage, total)
        log = now - _worker_logged.get(stage, now - WORKER_LOG_INTERVAL - 1) >= WORKER_LOG_INTERVAL
        if log:
            _worker_logged[stage] = now
    if log:
        _LOG.info("sarchat progress: %s: %d done by this worker (pid %d)", stage, total, os.getpid())


def _write_count(folder, stage, total):
    path = os.path.join(folder, f"{stage}.{os.getpid()}.json")
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"stage": stage, "count": total}, f)
        os.replace(tmp, path)
    except OSError:  # progress is a nicety: a launcher that removed its folder, a full /tmp
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def read_counts(folder) -> dict:
    """{stage: the sum of every worker's count} of a progress folder."""
    totals = {}
    for path in glob.glob(os.path.join(glob.escape(folder), "*.json")):  # none when the folder is gone
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
            totals[doc["stage"]] = totals.get(doc["stage"], 0) + int(doc["count"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being replaced right now: the next poll reads it
    return totals


class Watcher:
    """Launcher side of a local pipeline run: sets SARCHAT_PROGRESS_DIR for the workers, polls it
    and feeds `progress` with the sum of `stage`'s counts. Use around pipeline.run()."""

    def __init__(self, progress: Progress, stage: str, poll: float = 0.5):
        self.progress, self.stage, self.poll = progress, stage, poll
        self.folder = None
        self._saved = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sarchat-progress", daemon=True)

    def _refresh(self):
        self.progress.set(read_counts(self.folder).get(self.stage, 0))

    def _loop(self):
        while not self._stop.wait(self.poll):
            self._refresh()

    def __enter__(self):
        if self.progress.active:
            self.folder = tempfile.mkdtemp(prefix="sarchat-progress-")
            self._saved = os.environ.get(ENV_DIR)
            os.environ[ENV_DIR] = self.folder
            with _worker_lock:  # in-process workers share this process's counts: start them afresh
                _worker_counts.pop(self.stage, None)
            self._thread.start()
        return self

    def __exit__(self, exc_type, *_):
        if self.folder is not None:
            self._stop.set()
            self._thread.join()
            self._refresh()  # the last counts (in-process workers wrote theirs on every call)
            if self._saved is None:
                os.environ.pop(ENV_DIR, None)
            else:
                os.environ[ENV_DIR] = self._saved
            shutil.rmtree(self.folder, ignore_errors=True)
        self.progress.close(finished=exc_type is None)


@contextlib.contextmanager
def watching(label, stage, total=None, unit="items"):
    """Progress of a pipeline stage its workers count with `worker_count(stage, n)`."""
    progress = Progress(label, total, unit)
    with Watcher(progress, stage) as watcher:
        yield watcher
