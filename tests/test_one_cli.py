"""One CLI (issue 22, point 4), run as a user runs it: `sarchat` and `sarchat export` alone print the
usage and exit 2; one spelling of the token limit (`--max-tokens`, the old `--max-new-tokens` still
works with a note); `--no-progress` on every subcommand; an unknown `--adapter` exits 2 everywhere.
(No Beam "No semi_persistent_directory found" noise on a multi-process run, and counts printed as
3,267: tests/test_progress.py, with that run's worker progress.)"""
import importlib
import os
import subprocess
import sys

import pytest

from sarchat.beam_pipelines import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _sarchat(*argv, cwd=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["SARCHAT_NO_PROGRESS"] = "1"
    return subprocess.run([sys.executable, "-m", "sarchat.beam_pipelines.cli", *argv], env=env, cwd=cwd,
                          capture_output=True, text=True)


@pytest.mark.parametrize("argv", [[], ["export"]], ids=["sarchat", "sarchat export"])
def test_no_arguments_print_the_usage_and_exit_2(argv):
    done = _sarchat(*argv)
    assert done.returncode == 2, done
    assert done.stdout == "" and done.stderr.startswith("usage: sarchat"), done.stderr


def test_help_still_exits_0():
    for argv in (["--help"], ["export", "--help"]):
        done = _sarchat(*argv)
        assert done.returncode == 0 and done.stdout.startswith("usage: sarchat"), done


@pytest.mark.parametrize("name", list(cli.SUBCOMMANDS))
def test_every_subcommand_takes_no_progress_and_one_token_limit_spelling(name):
    parser = importlib.import_module(cli.SUBCOMMANDS[name][0]).build_parser()
    options = {s for a in parser._actions for s in a.option_strings}
    assert "--no-progress" in options
    visible = {s for a in parser._actions if a.help != "==SUPPRESS==" and "deprecated" not in str(a.help)
               for s in a.option_strings}
    assert not any("new-tokens" in o for o in visible), name


def test_the_token_limit_has_one_name_and_the_old_one_works(tmp_path, tiny_demo):
    dataset = os.path.join(tiny_demo[0], "dataset")
    new = _sarchat("export", "lmms-eval", "--dataset", dataset, "--output", str(tmp_path / "new"), "--max-tokens", "77",
                   "--no-progress")
    assert new.returncode == 0 and new.stderr == "", new.stderr
    old = _sarchat("export", "lmms-eval", "--dataset", dataset, "--output", str(tmp_path / "old"), "--max-new-tokens", "77")
    assert old.returncode == 0, old.stderr
    assert old.stderr.strip() == ("sarchat export lmms-eval: note: --max-new-tokens is now --max-tokens; the old "
                                  "spelling will be removed in 0.3.0")
    for folder in ("new", "old"):
        text = open(os.path.join(tmp_path, folder, "_default_template_yaml"), encoding="utf-8").read()
        assert "max_new_tokens: 77" in text


def test_an_unknown_adapter_exits_2_in_every_command(tmp_path, tiny_demo):
    dataset = os.path.join(tiny_demo[0], "dataset")
    preds = os.path.join(tiny_demo[0], "runs", "oracle", "predictions.parquet")
    runs = {
        "export": ["export", "lmms-eval", "--dataset", dataset, "--output", str(tmp_path / "e"), "--adapter", "nope"],
        "infer": ["infer", "--dataset", dataset, "--output", str(tmp_path / "i"), "--backend", "oracle", "--adapter", "nope"],
        "score": ["score", "--dataset", dataset, "--predictions", preds, "--output", str(tmp_path / "s"), "--adapter", "nope"],
    }
    for name, argv in runs.items():
        done = _sarchat(*argv)
        assert done.returncode == 2, (name, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "nope" in lines[0], (name, lines)




def test_a_file_given_as_the_dataset_folder_is_one_line_in_every_command(tmp_path, capsys):
    a_file = tmp_path / "stats.json"
    a_file.write_text("{}")
    runs = {
        "infer": ["infer", "--backend", "oracle"],
        "score": ["score", "--predictions", str(a_file)],
        "stats": ["stats"],
        "export lmms-eval": ["export", "lmms-eval"],
        "export vlmevalkit": ["export", "vlmevalkit"],
    }
    for name, argv in runs.items():
        out = tmp_path / name.replace(" ", "-")
        code = cli.main([*argv, "--dataset", str(a_file), "--output", str(out), "--no-progress"])
        err = capsys.readouterr().err
        assert code in (1, 2) and err.startswith(f"sarchat {argv[0]}: error: ") and err.count("\n") == 1, (name, err)
        assert str(a_file) in err and "Traceback" not in err and "Errno" not in err, (name, err)
        assert not out.exists(), name
