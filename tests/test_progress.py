"""Progress on stderr (transforms/progress.py, docs/cli.md "Progress"): the plain line, the bar,
--no-progress, worker counts summed across processes, and long commands run as a user runs them
(stderr not a terminal: plain lines; stdout ends with where the outputs are)."""
import io
import json
import os
import re
import subprocess
import sys

import pytest

from sarchat.transforms import progress
from tests import cli_process

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop(progress.ENV_OFF, None)
    env.update(extra)
    return env


@pytest.fixture(autouse=True)
def _progress_on(monkeypatch):
    monkeypatch.delenv(progress.ENV_OFF, raising=False)
    monkeypatch.delenv(progress.ENV_DIR, raising=False)
    progress.turn_off(False)
    yield
    progress.turn_off(False)


def test_the_plain_line_says_what_how_far_the_rate_and_the_time_left():
    assert progress.progress_line("sarchat x: scoring", 250, 1000, "samples", 10.0) == \
        "sarchat x: scoring: 250 of 1,000 samples (25%), 25 samples/s, about 30 s left"
    assert progress.progress_line("l", 0, 40, "images", 3.2) == "l: 0 of 40 images yet, starting, 3 s so far"
    assert progress.progress_line("l", 40, 40, "images", 75) == \
        "l: all 40 images done, finishing (writing outputs), 1 min 15 s so far"
    assert progress.progress_line("l", 12, None, "images", 4.0) == "l: 12 images, 3.0 images/s, 4 s so far"
    assert progress.progress_line("l", 199, 200, "rows", 1.0).endswith("less than 1 s left")
    assert [progress.format_duration(s) for s in (0, 59.4, 65, 3600 * 2 + 180)] == ["0 s", "59 s", "1 min 05 s",
                                                                                     "2 h 03 min"]


def test_not_a_terminal_gives_a_line_every_interval_and_a_closing_line(monkeypatch):
    monkeypatch.setenv(progress.ENV_INTERVAL, "0")
    out = io.StringIO()
    with progress.to_stream(out), progress.Progress("job: step", 3, "things") as shown:
        for _ in range(3):
            shown.update(1)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("job: step: 1 of 3 things (33%)")
    assert lines[-1].startswith("job: step: done, 3 things in ")
    assert "\r" not in out.getvalue()


def test_a_short_stage_prints_nothing_and_off_means_off(monkeypatch):
    monkeypatch.setenv(progress.ENV_INTERVAL, "60")
    out = io.StringIO()
    with progress.to_stream(out), progress.Progress("job: quick", 3, "things") as shown:
        shown.update(3)
    assert out.getvalue() == ""
    monkeypatch.setenv(progress.ENV_INTERVAL, "0")
    for off in ("flag", "env"):
        if off == "flag":
            progress.turn_off(True)
        else:
            progress.turn_off(False)
            monkeypatch.setenv(progress.ENV_OFF, "1")
        with progress.to_stream(out), progress.Progress("job: off", 3, "things") as shown:
            shown.update(3)
        assert out.getvalue() == "", off


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_a_bar(monkeypatch):
    monkeypatch.setattr(progress, "TTY_DELAY", 0.0)
    out = _Terminal()
    with progress.to_stream(out), progress.Progress("job: bar", 10, "images") as shown:
        for _ in range(10):
            shown.update(1)
    text = out.getvalue()
    assert "job: bar" in text and "10/10" in text and "\r" in text


_WORKER = """
import sys
from sarchat.transforms import progress
for _ in range(int(sys.argv[1])):
    progress.worker_count("test.units", 2)
"""


def test_counts_of_worker_processes_are_summed(monkeypatch):
    """The multi-processing case in small: separate processes, started with the launcher's
    environment, report through the folder the Watcher set."""
    monkeypatch.setenv(progress.ENV_INTERVAL, "0")
    out = io.StringIO()
    with progress.to_stream(out):
        shown = progress.Progress("job: workers", None, "units")
        with progress.Watcher(shown, "test.units", poll=0.05) as watcher:
            folder = os.environ[progress.ENV_DIR]
            assert os.path.isdir(folder) and folder == watcher.folder
            for n in (3, 5):
                subprocess.run([sys.executable, "-c", _WORKER, str(n)], env=_env(**{progress.ENV_DIR: folder}),
                               check=True)
            assert progress.read_counts(folder) == {"test.units": 16}
    assert shown.done == 16
    assert not os.path.exists(folder) and progress.ENV_DIR not in os.environ
    assert out.getvalue().splitlines()[-1].startswith("job: workers: done, 16 units in ")


def _sarchat(args, cwd, **env):
    return cli_process.run_sarchat(args, cwd=cwd, env=_env(**env), timeout=600)


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("progress")
    proc = _sarchat(["synth", "--output", str(root / "data"), "--images", "16", "--workers", "1"], str(root),
                    SARCHAT_PROGRESS_INTERVAL="0")
    assert proc.returncode == 0, proc.stderr
    return root, proc


def test_synth_shows_progress_and_ends_with_where(synth_data):
    root, proc = synth_data
    lines = proc.stderr.splitlines()
    assert any(re.match(r"sarchat synth: rendering images: \d+ of 16 images \(\d+%\), ", ln) for ln in lines), proc.stderr
    assert lines[-2].startswith("sarchat synth: rendering images: done, 16 images in ")
    # stdout stays the JSON summary; the closing line says where the dataset is
    assert json.loads(proc.stdout)["root"] == str(root / "data")
    assert lines[-1].startswith(f"sarchat synth: dataset in {root / 'data'} ")


def test_generate_multi_processing_shows_worker_progress_and_no_beam_noise(tmp_path):
    """Beam's multi_processing mode: the counts come from the worker processes (and the images count
    matches the annotation files: 80 images, 16 per shard so several shards report); Beam's own
    warnings stay out of stderr; counts print with thousands separators."""
    proc = _sarchat(["synth", "--output", str(tmp_path / "data"), "--images", "80", "--seed", "2"], str(tmp_path),
                    SARCHAT_NO_PROGRESS="1")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    proc = _sarchat(["generate", "--input", str(tmp_path / "data"), "--output", str(out), "--formats", "parquet",
                     "--images-per-shard", "16", "--direct_num_workers", "2", "--direct_running_mode",
                     "multi_processing"], str(tmp_path), SARCHAT_PROGRESS_INTERVAL="0.2")
    assert proc.returncode == 0, proc.stderr
    assert "semi_persistent_directory" not in proc.stderr and "WARNING" not in proc.stderr, proc.stderr
    ours = [ln for ln in proc.stderr.splitlines() if ln.startswith("sarchat generate: writing dialogues: ")]
    assert ours and ours[-1].startswith("sarchat generate: writing dialogues: done, 80 images in "), proc.stderr
    # counts that reached the launcher from the workers while the pipeline ran (the closing "done"
    # line alone would not show it: a finished stage is set to its total)
    live = [ln for ln in ours if re.search(r": [1-9]\d* of 80 images \(|: all 80 images done, finishing", ln)]
    assert live, ours
    assert proc.stdout.splitlines()[-1] == \
        f"sarchat generate: dataset in {out} (parquet; file list: {os.path.join(str(out), 'manifest.json')})"
    n = json.load(open(out / "manifest.json"))["counts"]["train"]["dialogues"]
    assert n >= 1000
    assert f"-> {n:,} dialogues" in proc.stdout and re.search(r"-> \d,\d{3} dialogues", proc.stdout), proc.stdout
    # progress is stderr only: nothing of it in stdout or in any output file
    assert "writing dialogues" not in proc.stdout
    for folder, _, names in os.walk(out):
        for name in names:
            with open(os.path.join(folder, name), "rb") as f:
                assert b"writing dialogues" not in f.read(), name


def test_no_progress_flag(synth_data, tmp_path):
    root, _ = synth_data
    proc = _sarchat(["generate", "--input", str(root / "data"), "--output", str(tmp_path / "o"), "--formats", "parquet",
                     "--no-progress"], str(tmp_path), SARCHAT_PROGRESS_INTERVAL="0")
    assert proc.returncode == 0, proc.stderr
    assert "writing dialogues" not in proc.stderr, proc.stderr
    assert proc.stdout.splitlines()[-1].startswith(f"sarchat generate: dataset in {tmp_path / 'o'} ")


def test_live_progress_only_where_the_workers_run_here():
    from apache_beam.options.pipeline_options import PipelineOptions

    from sarchat.beam_pipelines.beam_options import runs_here

    assert runs_here(PipelineOptions([]))
    assert runs_here(PipelineOptions(["--runner", "DirectRunner", "--direct_running_mode", "multi_processing"]))
    assert not runs_here(PipelineOptions(["--runner", "DataflowRunner"]))


def test_the_leaderboard_text_shows_a_task_without_score_as_a_dash():
    from sarchat.beam_pipelines.score import leaderboard_text

    board = [{"rank": 1, "model": "m-long-name", "overall": 51.25,
              "tasks": {"classify": 50.0, "describe": None, "count": 12.345, "grounding": 0.0, "identify": 99.95,
                        "refer": 7.0}}]
    head, columns, row = leaderboard_text(board).splitlines()
    assert "Eq. 4" in head
    assert columns.split() == ["#", "model", "overall", "classify", "describe", "count", "grounding", "identify",
                               "refer"]
    assert row.split() == ["1", "m-long-name", "51.2", "50.0", "-", "12.3", "0.0", "100.0", "7.0"]
