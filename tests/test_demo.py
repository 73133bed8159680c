"""`sarchat demo` end to end on a tiny setting: every stage, one leaderboard, the report; reruns.

The tiny demo runs once per test session (tiny_demo below) and tests/test_report_browser.py reuses
the same run through the module-level cache.
"""
import contextlib
import io
import json
import os
import re
import time

import pytest

from sarchat.beam_pipelines import demo

TINY_ARGS = ["--images", "30", "--tiny"]
_CACHE = {}


def run_demo(argv):
    out, err = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = demo.run(argv)
    return rc, out.getvalue(), err.getvalue(), time.perf_counter() - t0


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    """(OUT, stdout, stderr, seconds) of one `sarchat demo OUT --images 30 --tiny` per session."""
    if "run" not in _CACHE:
        out = str(tmp_path_factory.mktemp("demo") / "sarchat-demo")
        rc, stdout, stderr, seconds = run_demo([out] + TINY_ARGS)
        assert rc == 0, f"demo failed:\n{stdout}\n{stderr}"
        _CACHE["run"] = (out, stdout, stderr, seconds)
    return _CACHE["run"]


def test_demo_runs_every_stage_and_prints_the_report_path(tiny_demo):
    out, stdout, _, _ = tiny_demo
    for i, name in enumerate(["synth", "generate", "stats", "infer cfar", "infer blind", "infer oracle", "score"], 1):
        assert re.search(rf"^\[{i}/7\] {re.escape(name)}\s+\S.*\s\d+\.\d s$", stdout, re.M), (name, stdout)
    report = os.path.join(out, "results", "report.html")
    assert os.path.isfile(report) and report in stdout
    for sub in ("data/Annotations/test.json", "dataset/manifest.json", "stats/stats.json",
                "runs/cfar/predictions.parquet", "runs/blind/predictions.parquet", "runs/oracle/predictions.parquet",
                "results/leaderboard.json", "results/report.md", "logs/score.log"):
        assert os.path.exists(os.path.join(out, sub)), sub


def test_one_leaderboard_oracle_first_and_cfar_sees_the_image(tiny_demo):
    out = tiny_demo[0]
    with open(os.path.join(out, "results", "leaderboard.json")) as f:
        board = {r["model"]: r for r in json.load(f)}
    assert set(board) == {"cfar", "blind", "oracle"}
    assert board["oracle"]["rank"] == 1 and board["oracle"]["overall"] == pytest.approx(100.0)
    # issue 4's acceptance: the classical detector looks at the image, the blind baseline cannot
    for task in ("count", "refer"):
        assert board["cfar"]["tasks"][task] > board["blind"]["tasks"][task], task
    assert board["cfar"]["rank"] < board["blind"]["rank"]


def test_report_mentions_the_three_models_and_has_both_sections(tiny_demo):
    out = tiny_demo[0]
    page = open(os.path.join(out, "results", "report.html"), encoding="utf-8").read()
    for model in ("cfar", "blind", "oracle"):
        assert f"<td class=l>{model}</td>" in page
    assert "<h2>Samples</h2>" in page and "<h2>Dataset</h2>" in page
    assert page.count("data:image/jpeg;base64,") >= 6  # at least one image per task
    assert "Category distribution (Table 1)" in page and "<table class='md'>" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)  # self-contained
    md = open(os.path.join(out, "results", "report.md"), encoding="utf-8").read()
    assert "## Samples" in md and "## Dataset" in md


def test_rerun_into_the_same_folder_reuses_it(tiny_demo, tmp_path):
    out = tiny_demo[0]
    before = os.path.getsize(os.path.join(out, "runs", "cfar", "predictions.parquet"))
    rc, stdout, stderr, _ = run_demo([out] + TINY_ARGS)
    assert rc == 0, stdout + stderr
    assert "reusing the earlier run" in stdout
    assert os.path.getsize(os.path.join(out, "runs", "cfar", "predictions.parquet")) == before
    cfar_log = open(os.path.join(out, "logs", "infer-cfar.log")).read()
    assert re.search(r" 0 done, 0 failed, \d+ already done", cfar_log), cfar_log


def test_refuses_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    rc, stdout, stderr, _ = run_demo([str(tmp_path), "--tiny"])
    assert rc == 2 and "was not made by `sarchat demo`" in stderr
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_a_failing_stage_stops_the_demo_with_a_clear_message(tmp_path, monkeypatch):
    from sarchat.beam_pipelines import stats

    def broken(argv):
        print("stats: something went wrong here")
        return 2

    monkeypatch.setattr(stats, "run", broken)
    out = str(tmp_path / "demo")
    rc, stdout, stderr, _ = run_demo([out, "--images", "12", "--tiny"])
    assert rc == 1
    assert "[3/7] stats" in stdout and "FAILED" in stdout
    assert "stage 'stats' failed (exit status 2)" in stderr
    assert "stats: something went wrong here" in stderr  # the log's tail
    assert "[4/7]" not in stdout
