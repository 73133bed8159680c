"""The warm `sarchat` process behind tests/cli_process.py: imports the command line and what its
stages import (Beam, pyarrow) once, then forks one child per request and runs the console script's
entry point (`sarchat.beam_pipelines.cli:main`) in it.

    python -m tests.cli_zygote SOCKET_FD

SOCKET_FD is one end of a Unix stream socket pair. Requests are JSON lines: {"id", "argv", "cwd",
"env", "stdout", "stderr"} (the two files the child's standard streams go to), optionally
"file_size_limit" (bytes, RLIMIT_FSIZE: a full disk), "start_new_session" (as Popen's), "drop_capabilities"
(capability names such as "dac_override": the child runs without them, as `setpriv` would start it),
"modules_file" (where the child writes the names of the modules it had loaded when the command ended) and "pass_fds"
(the descriptor numbers the child gets the request's attached descriptors as, sent with it by SCM_RIGHTS, as subprocess's
pass_fds keeps them). Replies, JSON lines on the same socket: {"id", "pid"} once the child exists,
then {"id", "returncode"} when it has ended, as a shell would report it (-N for a signal). Several
children may run at once (a test stops one at a pause point and starts another meanwhile).
"""
import fcntl
import json
import os
import resource
import select
import signal
import socket
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


def _install_fds(received, targets):
    """The received descriptors as the numbers the request names (through numbers above both sets,
    so that no target overwrites a descriptor not yet moved)."""
    parked = [fcntl.fcntl(fd, fcntl.F_DUPFD, 512) for fd in received]
    for fd in received:
        os.close(fd)
    for fd, target in zip(parked, targets):
        os.dup2(fd, target)  # dup2 makes the copy inheritable, as pass_fds does
        os.close(fd)


# linux/capability.h: the version of the capget/capset structures and the capabilities' bit numbers
_CAPABILITY_VERSION_3 = 0x20080522
_CAPABILITY_BITS = {"dac_override": 1, "dac_read_search": 2}


def _drop_capabilities(names):
    """Take the named capabilities out of this process's effective, permitted and inheritable sets.
    Root keeps its uid but, without dac_override and dac_read_search, meets file permissions as any
    user does: what `setpriv` gives a command it starts, in a forked child that execs nothing."""
    import ctypes

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    libc = ctypes.CDLL(None, use_errno=True)
    header, data = Header(_CAPABILITY_VERSION_3, 0), (Data * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    mask = ~sum(1 << _CAPABILITY_BITS[name] for name in names) & 0xFFFFFFFF
    data[0].effective &= mask
    data[0].permitted &= mask
    data[0].inheritable &= mask
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def _child(request, fds, sock):
    """In the forked child: become the command the request names, and never return."""
    code = 1
    try:
        sock.close()
        if request.get("start_new_session"):
            os.setsid()
        if request.get("drop_capabilities"):
            _drop_capabilities(request["drop_capabilities"])
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
        _install_fds(fds, request.get("pass_fds", []))
        # Ctrl-C as in a user's terminal, whatever this warm process inherited (a test run started in
        # the background of a non-interactive shell has SIGINT ignored)
        signal.signal(signal.SIGINT, signal.default_int_handler)
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
        except KeyboardInterrupt:  # uncaught Ctrl-C: python prints it and ends by the signal
            traceback.print_exc()
            code = -signal.SIGINT
        except BaseException:  # an uncaught exception: its traceback, exit 1, as python does
            traceback.print_exc()
            code = 1
        import atexit

        atexit._run_exitfuncs()
        if request.get("modules_file"):
            with open(request["modules_file"], "w") as f:
                f.write("".join(name + "\n" for name in sorted(sys.modules)))
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed stream: nothing left to flush
                pass
        if code == -signal.SIGINT:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        os._exit(code)


def _reply(sock, message):
    sock.sendall((json.dumps(message) + "\n").encode())


def serve(sock):
    _warm_imports()
    buffer, fds, running = b"", [], {}
    while True:
        # wake at least every 20 ms to report children that have ended
        ready, _, _ = select.select([sock], [], [], 0.02 if running else None)
        if ready:
            chunk, got, _, _ = socket.recv_fds(sock, 65536, 16)
            if not chunk:  # the test process has gone
                return
            buffer += chunk
            fds += got
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                request = json.loads(line)
                # one request at a time carries descriptors: the client waits for each pid reply
                mine, fds = fds, []
                # a fork copies only the calling thread: a lock another thread held would stay held
                assert threading.active_count() == 1, "the zygote must stay single-threaded"
                pid = os.fork()
                if pid == 0:
                    _child(request, mine, sock)
                for fd in mine:
                    os.close(fd)
                running[pid] = request["id"]
                _reply(sock, {"id": request["id"], "pid": pid})
        while running:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            _reply(sock, {"id": running.pop(pid), "returncode": os.waitstatus_to_exitcode(status)})


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[1])))
