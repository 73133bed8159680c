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


def test_a_command_without_roots_override_meets_the_folders_permissions(tmp_path):
    # root writes into a read-only folder anyway unless the command runs without dac_override
    # (test_trust's read-only rows rely on this)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        argv = ["synth", "--images", "2", "--output", str(ro / "data")]
        refused = cli_process.run_sarchat(argv, cwd=str(tmp_path), drop_capabilities=("dac_override", "dac_read_search"))
        assert refused.returncode == 1 and "ermission denied" in refused.stderr, refused.stderr
        assert not (ro / "data").exists()
        allowed = cli_process.run_sarchat(argv, cwd=str(tmp_path))
    finally:
        ro.chmod(0o755)
    if os.geteuid() == 0:
        assert allowed.returncode == 0 and (ro / "data").is_dir(), allowed.stderr
