"""`sarchat demo` end to end on a tiny setting: every stage, one leaderboard, the report; reruns.

The tiny demo runs once per test session (the tiny_demo fixture of conftest.py), and
tests/test_report_browser.py reuses the same run.
"""
import contextlib
import hashlib
import io
import json
import os
import re

import pytest

from sarchat.beam_pipelines import demo
from tests.helpers import run_demo
from sarchat.transforms.errors import InputError, OutputError



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


def test_each_stage_log_holds_what_its_subcommand_prints(tiny_demo):
    """The demo calls the stage functions; each log still ends with the summary that `sarchat <stage>`
    prints after its stage (the counts, where the outputs are), as when the demo ran the commands."""
    out = tiny_demo[0]

    def log(name):
        with open(os.path.join(out, "logs", name + ".log"), encoding="utf-8") as f:
            return f.read()

    generated = log("generate")
    assert re.search(r"^split test: \d+ images, \d+ boxes -> \d+ dialogues$", generated, re.M), generated
    assert f"sarchat generate: dataset in {os.path.join(out, 'dataset')} (parquet; " in generated
    stats_log = log("stats")
    assert re.search(r"^wrote stats\.json, stats\.md in \d+\.\d s$", stats_log, re.M), stats_log
    assert f"sarchat stats: outputs in {os.path.join(out, 'stats')} (stats.json, stats.md)" in stats_log
    scored = log("score")
    assert "leaderboard (scores in %" in scored and re.search(r"^\s+1\s+oracle\s+100\.0", scored, re.M), scored
    assert f"sarchat score: outputs in {os.path.join(out, 'results')} (leaderboard.json" in scored
    assert "sarchat synth:" not in log("synth")  # the demo runs synth --quiet, as before


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


def test_rerun_into_the_same_folder_reuses_it(tiny_demo, tiny_demo_rerun):
    # the rerun runs once, right after the session's demo is built (tests/conftest.py)
    out = tiny_demo[0]
    rc, stdout, stderr = tiny_demo_rerun["rerun"]
    assert rc == 0, stdout + stderr
    assert "reusing the earlier run" in stdout
    cfar = os.path.join(out, "runs", "cfar", "predictions.parquet")
    assert os.path.getsize(cfar) == tiny_demo_rerun["cfar_bytes_before_rerun"]
    cfar_log = open(os.path.join(out, "logs", "infer-cfar.log")).read()
    assert re.search(r" 0 done, 0 failed, \d+ already done", cfar_log), cfar_log


def test_refuses_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(OutputError, match="was not made by `sarchat demo`"):
        run_demo(["--output", str(tmp_path), "--tiny"])
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def _tree(folder):
    """{relative path: sha256} of every file under folder."""
    out = {}
    for d, _, names in os.walk(folder):
        for n in names:
            p = os.path.join(d, n)
            out[os.path.relpath(p, folder)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


@pytest.mark.parametrize("marker", [
    '{"images": 30, "seed": "0", "tiny": true}\n',                      # the old, unsigned marker
    None,                                                                  # a signed one, edited after
])
def test_a_forged_marker_loses_nothing(tmp_path, marker):
    out = tmp_path / "user"
    for sub in demo.SUBDIRS:
        (out / sub).mkdir(parents=True)
        (out / sub / "precious.txt").write_text(f"the user's {sub}")
    if marker is None:  # a genuine ledger of this folder, then its list extended by hand
        ledger = demo.Ledger(str(out), {"images": 30, "seed": "0", "tiny": True}, "t" * 32)
        ledger.save()
        doc = json.loads((out / demo.MARKER).read_text())
        doc["files"]["results/precious.txt"] = [15, "0" * 64]
        marker = json.dumps(doc)
    (out / demo.MARKER).write_text(marker)
    before = _tree(out)
    with pytest.raises(OutputError, match="not a demo.json signed by your `sarchat demo`"):
        run_demo(["--output", str(out), "--images", "12", "--tiny"])   # other settings: would start afresh
    assert _tree(out) == before


def test_a_marker_copied_from_another_folder_does_not_verify(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    ledger = demo.Ledger(str(mine), {"images": 12}, "a" * 32)
    ledger.save()
    assert demo.Ledger.load(str(mine)) is not None
    other = tmp_path / "other"
    other.mkdir()
    (other / demo.MARKER).write_bytes((mine / demo.MARKER).read_bytes())
    assert demo.Ledger.load(str(other)) is None


def test_restart_deletes_only_what_the_demo_wrote(tmp_path):
    out = tmp_path / "d"
    state, ledger = demo.prepare_out(str(out), {"images": 12, "seed": "0", "tiny": True})
    assert state == "new"
    (out / "data").mkdir()
    (out / "data" / "ours.bin").write_bytes(b"written by a stage")
    (out / "results").mkdir()
    (out / "results" / "report.html").write_text("<html>ours</html>")
    ledger.record()
    # the user adds a file and edits one of ours
    (out / "results" / "notes.txt").write_text("mine")
    (out / "results" / "report.html").write_text("<html>my edits</html>")
    state, _ = demo.prepare_out(str(out), {"images": 20, "seed": "0", "tiny": True})
    assert state == "restarted"
    assert not (out / "data").exists()                          # ours, unchanged: gone (folder too)
    assert (out / "results" / "notes.txt").read_text() == "mine"     # the user's: kept
    assert (out / "results" / "report.html").read_text() == "<html>my edits</html>"  # changed: kept
    again = demo.Ledger.load(str(out))
    assert again is not None and "results/notes.txt" not in again.files


def test_a_failing_stage_stops_the_demo_with_a_clear_message(tmp_path, monkeypatch):
    from sarchat.beam_pipelines import stats

    def broken(config):
        print("stats: something went wrong here")
        raise InputError("no boxes to count")

    monkeypatch.setattr(stats, "stats", broken)
    out = str(tmp_path / "demo")
    out_text, err_text = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out_text), contextlib.redirect_stderr(err_text):
        with pytest.raises(demo.StageFailed) as failed:
            demo.run(["--output", out, "--images", "12", "--tiny"])
    stdout = out_text.getvalue()
    assert failed.value.exit_code == 1
    assert "[3/7] stats" in stdout and "FAILED" in stdout
    assert "stage 'stats' failed (no boxes to count)" in str(failed.value)
    assert "command: sarchat stats --dataset " in str(failed.value)
    assert "\n" not in str(failed.value) and "logs/stats.log" in str(failed.value)
    assert "stats: something went wrong here" in stdout  # the log's tail, with the progress
    assert "[4/7]" not in stdout
    # the stages that ran are on the signed list, so a restart can remove them
    assert any(rel.startswith("data/") for rel in demo.Ledger.load(out).files)
