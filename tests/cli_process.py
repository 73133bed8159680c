"""`sarchat ARGS` for the tests, in a child forked from a warm process (tests/cli_zygote.py).

Why: a `sarchat` subprocess spends 3-4 s of CPU starting Python and importing Beam and pyarrow
before it reads its first flag, and the suite runs a few hundred commands. One warm process per
pytest worker imports them once and forks a child per command. The child is a real process: its
own pid, exit status, environment, working folder, standard streams (stdin is /dev/null), the
descriptors a test passes it (the pause points of tests/test_trust.py) and Ctrl-C as in a terminal,
running the same entry point as the installed console script; several may run at once. What a fork
cannot show stays with real subprocesses: the console script itself and a bare interpreter's
imports (tests/test_one_cli.py, tests/test_packaging.py), and a command run as another user
(tests/test_trust.py's read-only folders).
"""
import atexit
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def repo_env(env=None):
    """`env` (default: this process's) with this checkout first on PYTHONPATH."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


class _Zygote:
    def __init__(self):
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.cli_zygote", str(theirs.fileno())],
                                     pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, cwd=REPO,
                                     env=repo_env())
        theirs.close()
        self.buffer, self.replies, self.next_id = b"", {}, 0

    def stop(self):
        """End the warm process and reap it (its CPU time then counts towards this process's children)."""
        self.sock.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def alive(self):
        return self.proc.poll() is None

    def reply(self, request_id, key, deadline):
        """The `key` reply for a request; replies for other requests are kept for their callers."""
        while (request_id, key) not in self.replies:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.sock], [], [], wait)
            if not ready:
                raise TimeoutError
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError(f"the warm sarchat process ended (exit {self.proc.wait()})")
            self.buffer += chunk
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                message = json.loads(line)
                of_request = message.pop("id")
                ((kind, value),) = message.items()
                self.replies[(of_request, kind)] = value
        return self.replies.pop((request_id, key))

    def start(self, argv, cwd, env, file_size_limit=None, pass_fds=(), start_new_session=False, drop_capabilities=(),
              modules_file=None):
        streams = tempfile.mkdtemp(prefix="sarchat-streams-")
        self.next_id += 1
        request = {"id": self.next_id, "argv": list(argv), "cwd": os.path.abspath(cwd), "env": env,
                   "stdout": os.path.join(streams, "stdout"), "stderr": os.path.join(streams, "stderr"),
                   "file_size_limit": file_size_limit, "pass_fds": list(pass_fds),
                   "start_new_session": start_new_session, "drop_capabilities": list(drop_capabilities),
                   "modules_file": modules_file}
        socket.send_fds(self.sock, [(json.dumps(request) + "\n").encode()], list(pass_fds))
        return ForkedCommand(self, request, self.reply(request["id"], "pid", time.monotonic() + 60), streams)


class ForkedCommand:
    """A `sarchat` command running in a child of the warm process, used like subprocess.Popen with
    stdout and stderr captured (text)."""

    def __init__(self, zygote, request, pid, streams):
        self.zygote, self.request, self.pid, self.streams = zygote, request, pid, streams
        self.args = ["sarchat", *request["argv"]]
        self.returncode = None

    def send_signal(self, sig):
        if self.returncode is None:
            os.kill(self.pid, sig)

    def poll(self):
        """The exit status, or None while it runs."""
        try:
            return self.wait(0)
        except subprocess.TimeoutExpired:
            return None

    def wait(self, timeout=None):
        """The exit status once the command has ended; its output is read then and its stream files removed."""
        if self.returncode is None:
            deadline = None if timeout is None else time.monotonic() + timeout
            try:
                self.returncode = self.zygote.reply(self.request["id"], "returncode", deadline)
            except TimeoutError:
                raise subprocess.TimeoutExpired(self.args, timeout) from None
            with open(self.request["stdout"], "rb") as out, open(self.request["stderr"], "rb") as err:
                self.output = (out.read().decode(), err.read().decode())
            shutil.rmtree(self.streams)
        return self.returncode

    def communicate(self, timeout=None):
        """(stdout, stderr) once the command has ended; killed if it runs past `timeout`."""
        try:
            self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.send_signal(signal.SIGKILL)
            self.wait()
            raise
        return self.output

    def completed(self, timeout=None):
        """A CompletedProcess once the command has ended (communicate's `timeout`)."""
        stdout, stderr = self.communicate(timeout)
        return subprocess.CompletedProcess(self.args, self.returncode, stdout, stderr)


_ZYGOTE = []


def _zygote():
    if not _ZYGOTE or not _ZYGOTE[0].alive():
        if not _ZYGOTE:
            atexit.register(lambda: _ZYGOTE[0].stop())
        _ZYGOTE[:] = [_Zygote()]
    return _ZYGOTE[0]


def start_sarchat(argv, cwd=None, env=None, file_size_limit=None, pass_fds=(), start_new_session=False,
                  drop_capabilities=(), modules_file=None):
    """`sarchat ARGV` started in a forked child, as subprocess.Popen would (a ForkedCommand): the
    descriptors in `pass_fds` stay open in it under the same numbers; `start_new_session`, as
    Popen's (os.killpg(command.pid, ...) then reaches its worker processes too). `file_size_limit`:
    writes past that many bytes fail as on a full disk (EFBIG). `drop_capabilities`: names such as
    "dac_override" the command runs without (root then meets file permissions as a user does).
    `modules_file`: a path the command writes the names of its loaded modules to when it ends (the
    warm process loads only Beam, pyarrow and the command line, so a module the command imported
    shows there)."""
    return _zygote().start(argv, cwd or os.getcwd(), repo_env() if env is None else dict(env), file_size_limit,
                           pass_fds, start_new_session, drop_capabilities, modules_file)


def run_sarchat(argv, cwd=None, env=None, timeout=600, file_size_limit=None, drop_capabilities=(), modules_file=None):
    """`sarchat ARGV` run to its end in a forked child: a CompletedProcess with text stdout/stderr."""
    return start_sarchat(argv, cwd, env, file_size_limit, drop_capabilities=drop_capabilities,
                         modules_file=modules_file).completed(timeout)
