"""`sarchat ARGS` for the tests, in a child forked from a warm process (tests/cli_zygote.py).

Why: a `sarchat` subprocess spends 3-4 s of CPU starting Python and importing Beam and pyarrow
before it reads its first flag, and the suite runs a few hundred commands. One warm process per
pytest worker imports them once and forks a child per command. The child is a real process: its
own pid, exit status, environment, working folder, standard streams (stdin is /dev/null) and
signal dispositions, running the same entry point as the installed console script. What a fork
cannot show stays with real subprocesses: the console script itself and a bare interpreter's
imports (tests/test_one_cli.py, tests/test_packaging.py), a terminal's Ctrl-C, and pauses driven
through inherited pipes (tests/test_trust.py).
"""
import atexit
import json
import os
import select
import signal
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
        request_r, self.requests = os.pipe()
        self.replies, reply_w = os.pipe()
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.cli_zygote", str(request_r), str(reply_w)],
                                     pass_fds=(request_r, reply_w), stdin=subprocess.DEVNULL, cwd=REPO,
                                     env=repo_env())
        os.close(request_r)
        os.close(reply_w)
        self.buffer = b""

    def stop(self):
        """End the warm process and reap it (its CPU time then counts towards this process's children)."""
        os.close(self.requests)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.replies)

    def alive(self):
        return self.proc.poll() is None

    def _reply(self, deadline):
        while b"\n" not in self.buffer:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.replies], [], [], wait)
            if not ready:
                raise TimeoutError
            chunk = os.read(self.replies, 65536)
            if not chunk:
                raise RuntimeError(f"the warm sarchat process ended (exit {self.proc.wait()})")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def run(self, argv, cwd, env, timeout, file_size_limit=None):
        with tempfile.TemporaryDirectory(prefix="sarchat-streams-") as streams:
            out, err = os.path.join(streams, "stdout"), os.path.join(streams, "stderr")
            request = {"argv": list(argv), "cwd": os.path.abspath(cwd), "env": env, "stdout": out, "stderr": err,
                       "file_size_limit": file_size_limit}
            os.write(self.requests, (json.dumps(request) + "\n").encode())
            deadline = None if timeout is None else time.monotonic() + timeout
            pid = self._reply(deadline)["pid"]
            try:
                returncode = self._reply(deadline)["returncode"]
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)
                self._reply(None)
                raise subprocess.TimeoutExpired(["sarchat", *argv], timeout) from None
            with open(out, "rb") as fh_out, open(err, "rb") as fh_err:
                stdout, stderr = fh_out.read().decode(), fh_err.read().decode()
        return subprocess.CompletedProcess(["sarchat", *argv], returncode, stdout, stderr)


_ZYGOTE = []


def run_sarchat(argv, cwd=None, env=None, timeout=600, file_size_limit=None):
    """`sarchat ARGV` run to its end in a forked child: a CompletedProcess with text stdout/stderr.
    `file_size_limit`: writes past that many bytes fail as on a full disk (EFBIG)."""
    if not _ZYGOTE or not _ZYGOTE[0].alive():
        if not _ZYGOTE:
            atexit.register(lambda: _ZYGOTE[0].stop())
        _ZYGOTE[:] = [_Zygote()]
    return _ZYGOTE[0].run(argv, cwd or os.getcwd(), repo_env() if env is None else dict(env), timeout,
                           file_size_limit)
