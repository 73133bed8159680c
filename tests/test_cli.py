"""The command line's conventions (docs/cli.md): --version, the error line, flag types, which flags
reach Beam, --help without Beam, output checks and atomic writes."""
import argparse
import errno
import os
import re
import subprocess
import sys

import pytest

import sarchat
from sarchat.beam_pipelines import beam_options, cli, flags
from sarchat.inference import config as infer_config
from sarchat.transforms import fileio
from sarchat.transforms.errors import OutputError, SarchatError, UsageError
from sarchat.templates import load_bank
from sarchat.transforms.tasks import TASKS
from tests import cli_process

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ID_BANK = len(load_bank("identify")["templates"])  # the identify template bank's size


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def test_version_is_the_package_version():
    proc = subprocess.run([sys.executable, "-m", "sarchat.beam_pipelines.cli", "--version"], env=_env(),
                          capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == f"sarchat {sarchat.__version__}"


def test_a_sarchat_error_is_one_line_with_its_exit_code(monkeypatch, capsys):
    from sarchat.beam_pipelines import synth

    def failing(argv):
        raise OutputError("cannot write /x/y: because\nsecond line is not shown")

    monkeypatch.setattr(synth, "run", failing)
    assert cli.main(["synth", "out"]) == 1
    assert capsys.readouterr().err == "sarchat synth: error: cannot write /x/y: because\n"

    def usage(argv):
        raise UsageError("--flag: bad")

    monkeypatch.setattr(synth, "run", usage)
    assert cli.main(["synth", "out"]) == 2


def test_a_bug_keeps_its_traceback(monkeypatch):
    from sarchat.beam_pipelines import synth

    monkeypatch.setattr(synth, "run", lambda argv: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        cli.main(["synth", "out"])


def test_disk_full_is_recognised_through_beam_wrapping():
    inner = OSError(errno.ENOSPC, "No space left on device", "/data/out/report.html")
    assert "writing /data/out/report.html" in cli.disk_full_message(inner)
    # Beam re-raises a worker's OSError as a RuntimeError carrying its text
    wrapped = RuntimeError("OSError: [Errno 28] No space left on device: '/o/x.parquet' [while running 'Write']")
    assert "No space left on device writing /o/x.parquet" in cli.disk_full_message(wrapped)
    assert cli.disk_full_message(RuntimeError("[Errno 2] No such file or directory: 'x'")) is None
    assert cli.one_line("msg [while running 'Generate/Write']\nTraceback ...") == "msg"


@pytest.mark.parametrize("fn, good, bad", [
    (flags.positive_int, [("1", 1), ("4000", 4000)], ["0", "-3", "x", "1.5"]),
    (flags.non_negative_int, [("0", 0), ("7", 7)], ["-1", "seven"]),
    (flags.seed, [("0", 0), ("12345", 12345)], ["-1"]),
    (flags.int_between(1, 20), [("1", 1), ("20", 20)], ["0", "21"]),
    (flags.at_least(10), [("10", 10)], ["9"]),
    (flags.identify_variants, [("1", 1), (str(ID_BANK), ID_BANK)], ["0", str(ID_BANK + 1)]),  # up to the bank size
    (flags.fraction, [("0", 0.0), ("1", 1.0), ("0.25", 0.25)], ["-0.1", "1.5", "nan", "half"]),
    (flags.positive_int_or_auto, [("3", 3), ("auto", None)], ["0", "many"]),
    (infer_config.positive_float, [("0.5", 0.5)], ["0", "inf", "nan", "x"]),
    (infer_config.non_negative_float, [("0", 0.0)], ["-1", "inf"]),
    (infer_config.unit_float, [("1", 1.0), ("0.9", 0.9)], ["0", "1.1"]),
])
def test_flag_types(fn, good, bad):
    """Every command's number flags refuse a value with one wording: expected <what>, got '<value>'."""
    for text, value in good:
        assert fn(text) == value
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match="^expected .+, got " + re.escape(repr(text)) + "$"):
            fn(text)


def test_parse_errors_are_usage_errors_and_abbreviations_are_not_guessed():
    p = flags.ArgumentParser(prog="sarchat x")
    p.add_argument("--images-per-shard", type=flags.positive_int)
    with pytest.raises(UsageError, match="--images-per-shard"):
        p.parse_args(["--images-per-shard", "0"])
    args, rest = p.parse_known_args(["--images", "3"])   # not silently --images-per-shard
    assert args.images_per_shard is None and rest == ["--images", "3"]


def test_only_beam_options_pass_through():
    ours = ["--seed", "--input", "--output"]
    for argv in (["--runner", "DataflowRunner", "--project=p", "--region", "r", "--temp_location=gs://b/t"],
                 ["--direct_num_workers=2", "--direct_running_mode", "multi_processing"],
                 ["--experiments=a", "--experiments", "b", "--save_main_session", "--dry_run=True"],
                 ["--template_location=gs://b/t/job", "--sdk_container_image=img"]):
        beam_options.check_beam_args(argv, ours)
    with pytest.raises(UsageError, match=r"unknown flag --seeds: .*did you mean --seed\?"):
        beam_options.check_beam_args(["--seeds", "3"], ours)
    with pytest.raises(UsageError, match="did you mean --direct_num_workers"):
        beam_options.check_beam_args(["--direct-num-workers=2"], ours)
    with pytest.raises(UsageError, match="unexpected argument 'typo'"):
        beam_options.check_beam_args(["typo"], ours)
    with pytest.raises(UsageError, match="--xyzzy"):   # no close match: no suggestion, still refused
        beam_options.check_beam_args(["--xyzzy"], ours)


def test_make_pipeline_refuses_unknown_flags_too():
    with pytest.raises(UsageError, match="--seeds"):
        beam_options.make_pipeline(["--seeds", "3"])


def test_a_runner_registers_its_own_options():
    """Beam knows the DaskRunner's options (and its short name) only once its module is imported:
    naming the runner imports it, so its flags pass the one check like any Beam option (docs/runners.md)."""
    pytest.importorskip("distributed")
    ours = ["--input", "--output"]
    for runner in ("DaskRunner", "dask", "daskrunner", "apache_beam.runners.dask.dask_runner.DaskRunner"):
        beam_options.check_beam_args([f"--runner={runner}", "--dask_client_address=tcp://127.0.0.1:1",
                                      "--dask_npartitions", "2", "--dask_connection_timeout=5"], ours)
    with pytest.raises(UsageError, match="did you mean --dask_client_address"):
        beam_options.check_beam_args(["--runner", "DaskRunner", "--dask_client_adress=tcp://h:1"], ours)
    with pytest.raises(UsageError, match="not allowed with argument --dask_npartitions"):
        beam_options.check_beam_args(["--runner=DaskRunner", "--dask_npartitions=2", "--dask_partition_size=9"], ours)
    # without the runner named, its options are refused (whatever this process imported before)
    with pytest.raises(UsageError, match=r"--dask_client_address: the --dask_\* options belong to --runner=DaskRunner"):
        beam_options.check_beam_args(["--dask_client_address=tcp://127.0.0.1:1"], ours)
    with pytest.raises(UsageError, match="--dask_client_address"):
        beam_options.make_pipeline(["--runner=DataflowRunner", "--dask_client_address=tcp://127.0.0.1:1"])
    # the pipeline gets the runner from its class path (Beam refuses the short name); nothing connects yet
    p = beam_options.make_pipeline(["--runner=DaskRunner", "--dask_client_address=tcp://127.0.0.1:1"])
    assert type(p.runner).__name__ == "DaskRunner" and not beam_options.runs_here(p.options)
    assert beam_options.runner_name(p.options) == "DaskRunner"


def test_a_runner_whose_packages_are_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(beam_options.RUNNER_MODULES, "NoSuchRunner", ("sarchat_no_such_pkg.mod.NoSuchRunner", "--nosuch_", "nosuch"))
    with pytest.raises(UsageError, match=r"--runner=NoSuchRunner needs packages .*pip install 'sarchat-bench\[nosuch\]'"):
        beam_options.check_beam_args(["--runner=NoSuchRunner"])
    with pytest.raises(UsageError, match="--nosuch_x: the --nosuch_\\* options belong to --runner=NoSuchRunner"):
        beam_options.check_beam_args(["--nosuch_x=1"])


def _imports_beam(argv):
    code = ("import sys; from sarchat.beam_pipelines.cli import main\n"
            f"rc = main({argv!r})\n"
            "print('BEAM' if 'apache_beam' in sys.modules else 'NO-BEAM')\n")
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code], env=_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage: sarchat" in proc.stdout
    return proc.stdout.strip().splitlines()[-1] == "BEAM" or " apache_beam" in proc.stderr


@pytest.mark.parametrize("command", ["synth", "demo", "infer", "generate", "regenerate", "stats", "score"])
def test_help_does_not_import_beam(command):
    assert not _imports_beam([command, "--help"])


def _no_default(value) -> bool:
    return value is None or value is False or value is argparse.SUPPRESS or (isinstance(value, (list, tuple)) and not value)


def flag_help_problems(parser) -> list:
    """'FLAG: why' for each optional flag without help text, or whose help does not show its default
    (a default other than None/False/[] must appear, as written by %(default)s or literally, beside
    the word "default")."""
    formatter = parser._get_formatter()
    problems = []
    for action in parser._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction) or action.help is argparse.SUPPRESS:
            continue
        flag = action.option_strings[0]
        if not (action.help or "").strip():
            problems.append(f"{flag}: no help")
            continue
        if _no_default(action.default):
            continue
        shown = formatter._expand_help(action)
        if "default" not in shown.lower() or str(action.default) not in shown:
            problems.append(f"{flag}: help does not show its default {action.default!r}")
    return problems


def test_the_flag_help_check_can_fail():
    p = flags.ArgumentParser(prog="sarchat x")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--size", type=int, default=4000, help="images per shard")
    p.add_argument("--seed", type=int, default=0, help="seed (default %(default)s)")
    p.add_argument("--root", default=None, help="image root (default: the input)")
    p.add_argument("--secret", default=3, help=argparse.SUPPRESS)
    assert flag_help_problems(p) == ["--quiet: no help", "--size: help does not show its default 4000"]


@pytest.mark.parametrize("command", sorted(cli.SUBCOMMANDS))
def test_every_flag_has_help_showing_its_default(command):
    import importlib

    parser = importlib.import_module(cli.SUBCOMMANDS[command][0]).build_parser()
    assert len([a for a in parser._actions if a.option_strings]) > 1   # more than --help: flags were checked
    assert flag_help_problems(parser) == []


def test_a_bad_flag_answers_before_beam_is_imported():
    code = ("import sys; from sarchat.beam_pipelines.cli import main\n"
            "rc = main(['demo', '--images', '3'])\n"
            "print(rc, 'apache_beam' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True)
    assert proc.stdout.split() == ["2", "False"], proc.stdout + proc.stderr


def test_output_location(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("x")
    assert fileio.check_output_location(str(tmp_path / "new" / "deeper")) == str(tmp_path / "new" / "deeper")
    assert fileio.check_output_location(str(tmp_path)) == str(tmp_path)
    assert fileio.check_output_location("gs://bucket/out") == "gs://bucket/out"
    with pytest.raises(OutputError, match="is a file, not a folder"):
        fileio.check_output_location(str(f), "--output")
    with pytest.raises(OutputError, match=f"lies under {f}"):
        fileio.check_output_location(str(f / "a" / "b"), "--output")
    with pytest.raises(OutputError, match="^OUT "):
        flags.output_folder("OUT")("file://" + str(f))


def test_writes_are_atomic_and_clean_up(tmp_path, monkeypatch):
    target = tmp_path / "report.html"
    target.write_text("old, complete")

    def fails(tmp):
        with open(tmp, "w") as fh:
            fh.write("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match="report.html: No space left on device"):
        fileio.atomic_write_local(str(target), fails)
    assert target.read_text() == "old, complete"          # the reader still sees the whole old file
    assert os.listdir(tmp_path) == ["report.html"]         # and no temporary
    fileio.write_text(str(tmp_path / "sub" / "new.json"), "{}")
    assert (tmp_path / "sub" / "new.json").read_text() == "{}"
    assert os.listdir(tmp_path / "sub") == ["new.json"]


def test_a_rerun_removes_temporaries_of_dead_writers_only(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"metrics.json.tmp-{dead.pid}-0123abcd"
    legacy = tmp_path / f"metrics.json.tmp-{dead.pid}"                 # store.py's spelling
    live = tmp_path / f"metrics.json.tmp-{os.getppid()}-89abcdef"      # a writer still running
    other = tmp_path / f"other.json.tmp-{dead.pid}-0123abcd"            # another file's: not this write's
    for p in (stale, legacy, live, other):
        p.write_text("partial")
    fileio.write_text(str(tmp_path / "metrics.json"), "{}")
    assert sorted(os.listdir(tmp_path)) == sorted(["metrics.json", live.name, other.name])


def test_every_subcommand_module_has_run_and_build_parser():
    import importlib

    for name, (module, _) in cli.SUBCOMMANDS.items():
        mod = importlib.import_module(module)
        assert callable(mod.run) and callable(mod.build_parser), name


def test_error_classes_share_one_base():
    from sarchat.beam_pipelines import demo, generate

    assert issubclass(demo.StageFailed, SarchatError) and demo.StageFailed.exit_code == 1
    assert generate.UsageError is UsageError


# ---------------------------------------------------------------------------------------------
# One name for one thing: old spellings still work for one release, with a note (docs/cli.md)

def _parser(command):
    import importlib

    return importlib.import_module(cli.SUBCOMMANDS[command][0]).build_parser()


# (command, argv with the old spelling, the same with the new one, attribute, expected value)
RENAMED = [
    ("stats", ["--input", "DS", "--output", "O"], ["--dataset", "DS", "--output", "O"], "dataset", "DS"),
    ("synth", ["DATA"], ["--output", "DATA"], "output", "DATA"),
    ("demo", ["DEMO"], ["--output", "DEMO"], "output", "DEMO"),
    ("score", ["--dataset", "D", "--predictions", "P", "--output", "O", "--no-samples"],
     ["--dataset", "D", "--predictions", "P", "--output", "O", "--no-sample-files"], "no_sample_files", True),
]


@pytest.mark.parametrize("command, old, new, attr, value", RENAMED, ids=[r[0] for r in RENAMED])
def test_an_old_spelling_works_with_a_one_line_note(command, old, new, attr, value, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args, _ = _parser(command).parse_known_args(old)
    err = capsys.readouterr().err
    assert getattr(args, attr) == value
    assert len(err.splitlines()) == 1 and f"sarchat {command}: note: " in err and "0.3.0" in err, err
    args, _ = _parser(command).parse_known_args(new)
    assert getattr(args, attr) == value and capsys.readouterr().err == ""
    assert not [k for k in vars(args) if k.startswith("_renamed")]


@pytest.mark.parametrize("command, old, new, attr, value", RENAMED, ids=[r[0] for r in RENAMED])
def test_an_old_and_a_new_spelling_together_are_refused(command, old, new, attr, value, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    both = list(new) + {"stats": ["--input", "OTHER"], "synth": ["OTHER"], "demo": ["OTHER"],
                        "score": ["--no-samples"]}[command]
    with pytest.raises(UsageError, match="both given"):
        _parser(command).parse_known_args(both)


def test_the_required_dataset_may_come_by_its_old_spelling_only():
    with pytest.raises(UsageError, match="required: --dataset"):
        _parser("stats").parse_known_args(["--output", "O"])


def test_old_spellings_as_a_user_types_them(tmp_path):
    env = _env()
    env["SARCHAT_NO_PROGRESS"] = "1"
    old = cli_process.run_sarchat(["synth", str(tmp_path / "d"), "--images", "10", "--workers", "1"], env=env)
    assert old.returncode == 0, old.stderr
    note, where = old.stderr.splitlines()
    assert note == "sarchat synth: note: the positional OUT is now --output; the old spelling will be removed in 0.3.0"
    assert os.path.isfile(tmp_path / "d" / "Annotations" / "test.json")
    assert where.startswith(f"sarchat synth: dataset in {tmp_path / 'd'} ")
    both = cli_process.run_sarchat(["stats", "--input", str(tmp_path / "d"), "--dataset", str(tmp_path / "d"),
                                    "--output", str(tmp_path / "s")], env=env)
    assert both.returncode == 2 and both.stderr.splitlines() == [
        "sarchat stats: error: --dataset and its old spelling --input both given: give --dataset only "
        "(see `sarchat stats --help`)"], both.stderr
    assert not os.path.exists(tmp_path / "s")


# ---------------------------------------------------------------------------------------------
# `sarchat score` prints the leaderboard and where its outputs are


def test_score_prints_the_leaderboard_of_metrics_json(tiny_demo, tmp_path):
    import json

    demo_out = tiny_demo[0]
    out = tmp_path / "scores"
    preds = [os.path.join(demo_out, "runs", b, "predictions.parquet") for b in ("blind", "cfar", "oracle")]
    env = _env()
    env["SARCHAT_PROGRESS_INTERVAL"] = "0.2"
    env.pop("SARCHAT_NO_PROGRESS", None)
    proc = cli_process.run_sarchat(["score", "--dataset", os.path.join(demo_out, "dataset"), "--output", str(out),
                                    "--bootstrap", "0", "--samples", "0", "--plots", "none", "--predictions", *preds],
                                   env=env)
    assert proc.returncode == 0, proc.stderr
    # progress: plain lines on stderr (not a terminal), none on stdout
    assert re.search(r"^sarchat score: scoring: .*samples", proc.stderr, re.M), proc.stderr
    assert "scoring:" not in proc.stdout
    lines = proc.stdout.splitlines()
    assert lines[-1].startswith(f"sarchat score: outputs in {out} (leaderboard.json")
    head = next(i for i, ln in enumerate(lines) if ln.startswith("leaderboard ("))
    columns = lines[head + 1].split()
    assert columns[:3] == ["#", "model", "overall"] and columns[3:] == list(TASKS)
    board = json.load(open(out / "leaderboard.json", encoding="utf-8"))
    rows = lines[head + 2: head + 2 + len(board)]
    assert len(rows) == 3
    for rank, (row, entry) in enumerate(zip(rows, board), 1):
        metrics = json.load(open(out / entry["dir"] / "metrics.json", encoding="utf-8"))
        cells = row.split()
        assert cells[:2] == [str(rank), metrics["model"]]
        expected = [metrics["overall"]] + [metrics["tasks"].get(t) for t in TASKS]
        shown = [None if c == "-" else float(c) for c in cells[2:]]
        assert shown == [None if v is None else round(v, 1) for v in expected], (row, metrics)
