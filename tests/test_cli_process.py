"""The tests' forked `sarchat` commands (tests/cli_process.py): each reply reaches the command it
belongs to when several run side by side."""
import os
import time

from tests import cli_process


def _gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_reply_of_one_command_is_never_taken_for_another(tmp_path):
    first = cli_process.start_sarchat(["--version"], cwd=str(tmp_path))
    deadline = time.monotonic() + 60
    while not _gone(first.pid) and time.monotonic() < deadline:  # ended and reaped, its exit status
        time.sleep(0.05)                                          # sent but not read
    time.sleep(0.5)
    second = cli_process.start_sarchat(["synth", "--images", "-1", "--output", str(tmp_path / "d")],
                                       cwd=str(tmp_path))
    assert second.pid > 0 and second.pid != first.pid
    out, err = second.communicate(60)
    assert second.returncode == 2 and "argument --images" in err, err
    out, err = first.communicate(60)
    assert first.returncode == 0 and out.startswith("sarchat "), (out, err)
