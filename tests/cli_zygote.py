"""The warm `sarchat` process behind tests/cli_process.py: imports the command line and what its
stages import (Beam, pyarrow) once, then forks one child per request and runs the console script's
entry point (`sarchat.beam_pipelines.cli:main`) in it.

    python -m tests.cli_zygote REQUEST_FD REPLY_FD

Requests are JSON lines on REQUEST_FD: {"argv", "cwd", "env", "stdout", "stderr"} (the two files the
child's standard streams go to) and optionally "file_size_limit" (bytes, RLIMIT_FSIZE: a full disk).
Replies on REPLY_FD: {"pid"} once the child exists (so the caller can kill it on a timeout), then {"returncode"} as a shell would report it (-N for a signal).
"""
import json
import os
import resource
import signal
import sys
import threading
import traceback


def _warm_imports():
    # What a `sarchat` subprocess spends its first seconds on: the stages import these lazily.
    import apache_beam  # noqa: F401
    import apache_beam.io.filesystems  # noqa: F401
    import apache_beam.options.pipeline_options  # noqa: F401
    import apache_beam.runners.portability.fn_api_runner  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    import sarchat.beam_pipelines.cli  # noqa: F401
    from sarchat.beam_pipelines import generate, score, stats  # noqa: F401


def _child(request, request_fd, reply_fd):
    """In the forked child: become the command the request names, and never return."""
    code = 1
    try:
        os.close(request_fd)
        os.close(reply_fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        stdin = os.open(os.devnull, os.O_RDONLY)
        os.dup2(stdin, 0)
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(target, fd)
            os.close(target)
        os.close(stdin)
        if request.get("file_size_limit") is not None:
            # writes past the limit fail with EFBIG, as a full disk fails with ENOSPC (the signal that
            # would kill the process instead is ignored, as it is for a full disk)
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (request["file_size_limit"], resource.RLIM_INFINITY))
        sys.argv = ["sarchat", *request["argv"]]
        from sarchat.beam_pipelines.cli import main

        try:
            result = main(request["argv"])
            code = result if isinstance(result, int) else (0 if result is None else 1)
        except SystemExit as exc:  # as the interpreter would turn it into an exit status
            if exc.code is None or isinstance(exc.code, int):
                code = int(exc.code or 0)
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:  # an uncaught exception: its traceback, exit 1, as python does
            traceback.print_exc()
            code = 1
        import atexit

        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed stream: nothing left to flush
                pass
        os._exit(code)


def serve(request_fd, reply_fd):
    _warm_imports()
    buffer = b""
    while True:
        chunk = os.read(request_fd, 65536)
        if not chunk:  # the test process has gone
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            request = json.loads(line)
            # a fork copies only the calling thread: a lock another thread held would stay held
            assert threading.active_count() == 1, "the zygote must stay single-threaded"
            pid = os.fork()
            if pid == 0:
                _child(request, request_fd, reply_fd)
            os.write(reply_fd, (json.dumps({"pid": pid}) + "\n").encode())
            _, status = os.waitpid(pid, 0)
            os.write(reply_fd, (json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n").encode())


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
