"""The `sarchat` console command: one subcommand per stage.

Each subcommand lives in its own module: `build_parser()`, a frozen config dataclass, the stage
function that takes it (`generate(config)`, `score(config)`, ...) and `run(argv)`, which turns the
command line into the config (flags.parse_config), calls the stage and prints its summary. Modules
are imported lazily so that `sarchat synth` does not pay for importing Beam, and `sarchat infer`
only imports vLLM when asked.

Errors (docs/cli.md): a subcommand raises a SarchatError (sarchat.transforms.errors) whose message
names the file, record or flag; this module (report_errors, the only place) prints it once, on one line,

    sarchat <command>: error: <message>

and exits with its exit_code (2: a usage error, 1: anything else). A disk that fills up is one such
line too, however deep in a pipeline it happened. Other exceptions are bugs and keep their traceback.
"""
import errno
import importlib
import re
import sys

from sarchat.transforms.errors import SarchatError

# subcommand -> (module, one-line help)
SUBCOMMANDS = {
    "synth": ("sarchat.beam_pipelines.synth", "write a small synthetic SAR dataset in the SARDet-100K layout"),
    "generate": ("sarchat.beam_pipelines.generate", "Beam pipeline: COCO SAR detections -> SARChat dialogues"),
    "regenerate": ("sarchat.beam_pipelines.regenerate", "generate into BASE/v-<hash> once per input+config; LATEST pointer"),
    "infer": ("sarchat.inference.run", "run a model (vllm, openai, cfar, oracle, blind) over a split"),
    "infer-beam": ("sarchat.beam_pipelines.infer_beam", "Beam RunInference pipeline: vLLM over a split (Dataflow GPUs)"),
    "score": ("sarchat.beam_pipelines.score", "Beam pipeline: score predictions, write metrics and report"),
    "stats": ("sarchat.beam_pipelines.stats", "Beam pipeline: dataset statistics (the paper's tables)"),
    "export": ("sarchat.beam_pipelines.export", "write a task folder or dataset table for another evaluation tool (lmms-eval, VLMEvalKit)"),
    "demo": ("sarchat.beam_pipelines.demo", "synth, generate, stats, infer, score and report in one go"),
}

EXIT_USAGE = 2
EXIT_RUNTIME = 1
EXIT_INTERRUPTED = 130
# "[Errno 28] No space left on device: '/path'" as Beam re-raises a worker's OSError in its text.
_ERRNO_TEXT = re.compile(r"\[Errno (\d+)\] ([^:\n\]]+)(?:: '([^'\n]+)')?")


def usage() -> str:
    return "\n".join(["usage: sarchat SUBCOMMAND [options]", "       sarchat --version", "", "subcommands:",
                      *(f"  {name:<10} {text}" for name, (_, text) in SUBCOMMANDS.items()), "",
                      "`sarchat SUBCOMMAND --help` lists a subcommand's options. Exit status: 0 done, "
                      "1 failed (bad input, full disk, failed run), 2 bad command line."])


_BEAM_STEP = re.compile(r" \[while running '[^']*'\]")


def one_line(text) -> str:
    """The first line of a message (Beam appends the worker's traceback to re-raised errors), without
    Beam's " [while running 'Step']" tags."""
    text = _BEAM_STEP.sub("", str(text)).strip()
    return text.splitlines()[0].strip() if text else "failed (no message)"


def _chain(exc):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _errno_line(exc, errnos, line):
    """line(what, path or None) for the first OS error in `exc`'s chain whose errno is one of
    `errnos`, also when Beam re-raised it as text; None without one."""
    for e in _chain(exc):
        if isinstance(e, SarchatError):
            continue
        if isinstance(e, OSError) and e.errno in errnos:
            return line(e.strerror or e, e.filename)
        for m in _ERRNO_TEXT.finditer(str(e)):
            if int(m.group(1)) in errnos:
                return line(m.group(2).strip(), m.group(3))
    return None


def disk_full_message(exc):
    """A one-line message when `exc` (or what caused it) is a full disk or file size limit, else None."""
    from sarchat.transforms.fileio import DISK_FULL_ERRNOS

    return _errno_line(exc, DISK_FULL_ERRNOS, lambda what, path: f"{what}{f' writing {path}' if path else ''} "
                                                                 "(disk full or file size limit): free some space and run again")


# OS errors of the machine rather than of the program: a read-only or protected folder, a name that
# is a folder or under a file, too many open files, an I/O error. One line naming the path.
_ENVIRONMENT_ERRNOS = frozenset(e for e in (errno.EACCES, errno.EPERM, errno.EROFS, errno.EISDIR, errno.ENOTDIR,
                                            errno.EMFILE, errno.ENFILE, errno.EIO, errno.ENOENT,
                                            getattr(errno, "ETXTBSY", None)) if e)


def interrupted_in(exc) -> bool:
    """Whether `exc` is a Ctrl-C, also when Beam re-raised it from inside a step (as a RuntimeError
    "KeyboardInterrupt [while running 'Step']")."""
    return any(isinstance(e, KeyboardInterrupt) or str(e).startswith("KeyboardInterrupt") for e in _chain(exc))


def _not_reported_here(record) -> bool:
    """Logging filter: drop a log record carrying an exception that `sarchat` reports itself (Beam
    logs a failing DoFn's exception with its traceback before re-raising it), so the user sees the
    failure once, as the error line."""
    exc = record.exc_info[1] if record.exc_info else None
    return exc is None or (failure_line(exc) is None and not interrupted_in(exc))


def _install_log_handler():
    """One stderr handler for the whole run (warnings and errors, one line each), unless the
    process has configured logging already (then its handlers get the filter)."""
    import logging

    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setLevel(logging.WARNING)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    for handler in root.handlers:
        handler.addFilter(_not_reported_here)  # a filter already there is not added twice


def error_line(command, message) -> str:
    return f"sarchat {command}: error: {one_line(message)}"


def _interrupted(name) -> int:
    """The Ctrl-C line and exit status. The command's own clean-up has run (the exception went through
    it); a pipeline's worker threads that are not daemons would keep the process alive until they
    finish their work, so the process then ends at once rather than in minutes (docs/cli.md "Exit status")."""
    import os
    import threading

    print(f"sarchat {name}: interrupted", file=sys.stderr)
    if any(t is not threading.main_thread() and not t.daemon and t.is_alive() for t in threading.enumerate()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)
    return EXIT_INTERRUPTED


def failure_line(exc):
    """(the error line's message, exit status) for an expected failure, None for a bug: the
    SarchatError the run raised (also inside a runner's exception), or an OS error of the machine
    (a full disk, a read-only folder), which wins over a SarchatError that does not say so. An OS
    error of the environment is one line naming the path (docs/cli.md "The error line"), also when
    Beam re-raised it as text; a full disk or file size limit keeps its own (disk_full_message)."""
    known = next((e for e in _chain(exc) if isinstance(e, SarchatError)), None)
    full = disk_full_message(exc)
    environment = full or _errno_line(exc, _ENVIRONMENT_ERRNOS, lambda what, path: f"cannot use {path or 'a file'}: "
                                      f"{what} (check the folder's permissions and that it is writable)")
    if known is None and environment is None:
        return None
    if known is None or (full is not None and "disk full" not in str(known)):
        return environment, EXIT_RUNTIME
    return known, known.exit_code


def report_errors(name, call) -> int:
    """call() -> its exit status (None: 0). The one place where an expected failure becomes the one
    line `sarchat NAME: error: ...` on stderr and its exit status, and Ctrl-C exit 130; a bug keeps
    its traceback."""
    try:
        return int(call() or 0)
    except KeyboardInterrupt:
        return _interrupted(name)
    except SystemExit as exc:  # argparse's --help; a library's sys.exit("message")
        if exc.code is None or isinstance(exc.code, int):
            return int(exc.code or 0)
        print(error_line(name, exc.code), file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        if interrupted_in(exc):  # Ctrl-C inside a pipeline step
            return _interrupted(name)
        failure = failure_line(exc)
        if failure is None:
            raise
        print(error_line(name, failure[0]), file=sys.stderr)
        return failure[1]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:  # no subcommand: a bad command line (exit 2), the usage on stderr
        print(usage(), file=sys.stderr)
        return EXIT_USAGE
    name = argv[0]
    if name in ("-h", "--help", "help"):
        print(usage())
        return 0
    if name in ("--version", "-V", "version"):
        import sarchat

        print(f"sarchat {sarchat.__version__}")
        return 0
    if name not in SUBCOMMANDS:
        import difflib

        close = difflib.get_close_matches(name, list(SUBCOMMANDS), n=1)
        hint = f"; did you mean {close[0]}?" if close else f"; choose from {', '.join(SUBCOMMANDS)}"
        print(f"sarchat: error: unknown subcommand {name!r}{hint} (see `sarchat --help`)", file=sys.stderr)
        return EXIT_USAGE
    _install_log_handler()
    return report_errors(name, lambda: importlib.import_module(SUBCOMMANDS[name][0]).run(argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
