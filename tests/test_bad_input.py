"""Bad input, run as a user runs it: the `sarchat` command in a subprocess, one case per row.

Every row asserts
- the exit status (2: a bad command line, 1: anything else, docs/cli.md),
- that stderr is exactly ONE line, `sarchat <command>: error: ...`, naming the file or flag
  (the row's `names`), with no traceback,
- that nothing under the case's folder changed: the user's files and the outputs of finished runs
  hash the same before and after (sha256 of every file, and the set of files).

Adding a case: append a `Case` to CASES. `argv` and `names` are templates filled from the case's
folders: {tmp} (the case's own folder), {root} (a small COCO dataset root, made fresh per case),
{file} (a regular file of the user's, tmp/notes.txt) and, for cases that list them in `needs`,
{gen} (a generated dataset) and {preds} (oracle predictions on its test split), shared by the
session and copied into the case's folder so a case cannot change them for the next. `setup(paths)`
makes the bad state (a corrupt manifest, a folder where a file should be, ...). A row for a known
gap that another part of the toolkit still has to close carries `xfail="why"`; it is strict, so the
row fails once the gap is closed, and the marker must then go.

The disk-full test (RLIMIT_FSIZE, the same errno a full disk gives) is below the table.
"""
import hashlib
import json
import os
import shutil
import signal
import sys
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import pytest

from sarchat.templates import load_bank
from tests import cli_process
from tests.helpers import known_dataset, write_coco

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sarchat_command():
    """The installed console script beside this Python, else the same entry point through -m."""
    script = os.path.join(os.path.dirname(sys.executable), "sarchat")
    return [script] if os.path.isfile(script) else [sys.executable, "-m", "sarchat.beam_pipelines.cli"]


def user_env(tmp):
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["SARCHAT_DEMO_KEY_FILE"] = os.path.join(str(tmp), "..", "demo.key")  # outside the hashed folder
    env["SARCHAT_NO_PROGRESS"] = "1"  # these cases check the error line; progress lines are tests/test_progress.py's
    return env


def run_sarchat(args, cwd, env, timeout=600, file_size_limit=None):
    """`sarchat ARGS` to its end, in a child of the worker's warm `sarchat` process (tests/cli_process.py).
    `file_size_limit`: writes past that many bytes fail as on a full disk."""
    return cli_process.run_sarchat(args, cwd=cwd, env=env, timeout=timeout, file_size_limit=file_size_limit)


def tree_hashes(folder):
    """{relative path: sha256} of every file under folder (folders themselves as '<dir>/')."""
    out = {}
    for d, dirs, names in os.walk(folder):
        rel_d = os.path.relpath(d, folder)
        out[rel_d + "/"] = ""
        for n in names:
            p = os.path.join(d, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, folder)] = hashlib.sha256(f.read()).hexdigest()
    return out


# ---------------------------------------------------------------------------------------------
# Set-ups: each makes one bad state in the case's folder (paths: the filled-in template values)


def _regenerate_version(paths):
    """BASE/v-<hash> of `regenerate --input {root}` with the table's flags (the hash, without Beam)."""
    from sarchat.beam_pipelines import flags, generate, regenerate

    config = flags.parse_config(regenerate.build_parser(), ["--input", paths["root"], "--output-base",
                                                            paths["tmp"] + "/base", "--formats", "parquet"],
                                generate.GenerateConfig)
    _, _, manifest_base = generate.prepare(config)
    return os.path.join(paths["tmp"], "base", regenerate.version_name(manifest_base["dataset_version"]))


def corrupt_version_manifest(text):
    def setup(paths):
        version = _regenerate_version(paths)
        os.makedirs(os.path.join(version, "parquet"))
        with open(os.path.join(version, "parquet", "dialogues-00000-of-00001.parquet"), "wb") as f:
            f.write(b"a finished run's shard")
        with open(os.path.join(version, "manifest.json"), "w") as f:
            f.write(text)
    return setup


def latest_is_a_folder(paths):
    os.makedirs(os.path.join(paths["tmp"], "base", "LATEST"))
    with open(os.path.join(paths["tmp"], "base", "LATEST", "inside.txt"), "w") as f:
        f.write("someone's file")


def forged_demo_folder(paths):
    out = os.path.join(paths["tmp"], "demo")
    for sub in ("data", "runs", "results"):
        os.makedirs(os.path.join(out, sub))
        with open(os.path.join(out, sub, "precious.txt"), "w") as f:
            f.write(f"the user's {sub}")
    with open(os.path.join(out, "demo.json"), "w") as f:
        json.dump({"format": "sarchat-demo/2", "config": {}, "token": "x", "files": {
            "data/precious.txt": [15, "0" * 64]}, "dirs": ["data"], "signature": "0" * 64}, f)


def foreign_folder(paths):
    os.makedirs(os.path.join(paths["tmp"], "mine"))
    with open(os.path.join(paths["tmp"], "mine", "thesis.tex"), "w") as f:
        f.write("years of work")


def corrupt_dataset_manifest(text):
    def setup(paths):
        with open(os.path.join(paths["gen"], "manifest.json"), "w") as f:
            f.write(text)
    return setup


# ---------------------------------------------------------------------------------------------
# The table


@dataclass
class Case:
    id: str
    command: str
    argv: Sequence[str]
    exit_code: int
    names: Sequence[str] = ()                 # substrings the error line must contain
    setup: Optional[Callable] = None
    needs: Sequence[str] = ()                 # "gen", "preds": the session's generated data
    xfail: Optional[str] = None


GEN = ["--input", "{root}", "--output", "{tmp}/out", "--formats", "parquet"]
REGEN = ["--input", "{root}", "--output-base", "{tmp}/base", "--formats", "parquet"]
ID_BANK = len(load_bank("identify")["templates"])  # --identify-variants may go up to the bank size
SCORE = ["--dataset", "{gen}", "--predictions", "{preds}", "--output", "{tmp}/scores", "--samples", "0",
         "--bootstrap", "0", "--plots", "none"]

CASES = [
    # outputs that overlap an input (exit 1, nothing written)
    Case("generate into its input", "generate", ["--input", "{root}", "--output", "{root}"], 1,
         ["--output", "is the input folder (--input)"]),
    Case("generate inside its input", "generate", ["--input", "{root}", "--output", "{root}/out"], 1,
         ["--output", "lies inside the input folder (--input)"]),
    Case("regenerate base holding its input", "regenerate", ["--input", "{root}", "--output-base", "{root}/.."], 1,
         ["--output-base", "holds the input folder (--input)"]),
    Case("stats into its input", "stats", ["--dataset", "{gen}", "--output", "{gen}/stats"], 1,
         ["--output", "lies inside the dataset (--dataset)"], needs=("gen",)),
    Case("score inside the dataset", "score", ["--dataset", "{gen}", "--predictions", "{preds}", "--output",
                                              "{gen}/scores"], 1, ["--output", "the dataset (--dataset)"],
         needs=("gen", "preds")),
    # flags checked when parsed (exit 2)
    Case("mistyped flag", "generate", GEN + ["--seeds", "3"], 2, ["--seeds", "did you mean --seed?"]),
    Case("mistyped flag with =", "regenerate", REGEN + ["--image-roots=x"], 2, ["--image-roots", "--image-root"]),
    Case("mistyped Beam flag", "generate", GEN + ["--direct_num_worker", "2"], 2,
         ["--direct_num_worker", "did you mean --direct_num_workers?"]),
    Case("stray word", "generate", GEN + ["extra"], 2, ["'extra'"]),
    Case("bad Beam option value", "generate", GEN + ["--direct_num_workers", "two"], 2, ["--direct_num_workers"]),
    Case("unknown flag, launcher parsing on its own", "stats", ["--dataset", "{root}", "--output", "{tmp}/st", "--seeds", "3"],
         2, ["--seeds"]),
    Case("zero images per shard", "generate", GEN + ["--images-per-shard", "0"], 2, ["--images-per-shard", "'0'"]),
    Case("identify variants 0", "generate", GEN + ["--identify-variants", "0"], 2, ["--identify-variants", f"1..{ID_BANK}"]),
    Case("identify variants too many", "regenerate", REGEN + ["--identify-variants", str(ID_BANK + 1)], 2,
         ["--identify-variants"]),
    Case("negative seed", "generate", GEN + ["--seed", "-1"], 2, ["--seed", "'-1'"]),
    Case("non-integer seed", "generate", GEN + ["--seed", "one"], 2, ["--seed", "'one'"]),
    Case("exact cap 0", "stats", ["--dataset", "{root}", "--output", "{tmp}/st", "--exact-cap", "0"], 2, ["--exact-cap"]),
    Case("missing required flag", "generate", ["--input", "{root}"], 2, ["--output"]),
    Case("unknown format", "generate", ["--input", "{root}", "--output", "{tmp}/out", "--formats", "parquet,xml"], 2,
         ["--formats", "xml"]),
    Case("demo too few images", "demo", ["--output", "{tmp}/d", "--images", "5"], 2, ["--images"]),
    Case("synth zero images", "synth", ["--output", "{tmp}/d", "--images", "0"], 2, ["--images"]),
    # an output that is a regular file, or lies under one: every subcommand (exit 1)
    Case("generate --output is a file", "generate", ["--input", "{root}", "--output", "{file}"], 1, ["--output", "{file}"]),
    Case("generate --output under a file", "generate", ["--input", "{root}", "--output", "{file}/out"], 1,
         ["--output", "{file}", "is a file"]),
    Case("regenerate --output-base is a file", "regenerate", ["--input", "{root}", "--output-base", "{file}"], 1,
         ["--output-base", "{file}"]),
    Case("synth --output under a file", "synth", ["--output", "{file}/data"], 1, ["--output", "{file}"]),
    Case("demo --output is a file", "demo", ["--output", "{file}"], 1, ["--output", "{file}"]),
    Case("stats --output under a file", "stats", ["--dataset", "{root}", "--output", "{file}/st"], 1, ["--output", "{file}"]),
    Case("score --output is a file", "score", ["--dataset", "{root}", "--predictions", "{root}", "--output", "{file}"], 1,
         ["--output", "{file}"]),
    Case("infer --output under a file", "infer", ["--dataset", "{root}", "--backend", "oracle", "--output", "{file}/run"],
         1, ["--output", "{file}"]),
    # regenerate's state
    Case("LATEST is a folder", "regenerate", REGEN, 1, ["{tmp}/base/LATEST", "is a folder"], setup=latest_is_a_folder),
    Case("corrupt version manifest", "regenerate", REGEN, 1, ["manifest.json", "not valid JSON"],
         setup=corrupt_version_manifest('{"files": [')),
    Case("non-object version manifest", "regenerate", REGEN, 1, ["manifest.json", "not a dataset manifest"],
         setup=corrupt_version_manifest("[1, 2, 3]")),
    # the demo deletes only what it wrote itself
    Case("demo into a foreign folder", "demo", ["--output", "{tmp}/mine", "--tiny"], 1, ["{tmp}/mine", "not made by `sarchat demo`"],
         setup=foreign_folder),
    Case("demo with a forged demo.json", "demo", ["--output", "{tmp}/demo", "--tiny"], 1, ["demo.json", "nothing was deleted"],
         setup=forged_demo_folder),
    # unknown subcommand
    Case("unknown subcommand", "generat", [], 2, ["generat", "did you mean generate?"]),
    Case("stats: corrupt dataset manifest", "stats", ["--dataset", "{gen}", "--output", "{tmp}/st"], 1,
         ["manifest.json"], setup=corrupt_dataset_manifest("{"), needs=("gen",)),
    Case("score: unknown box format", "score", SCORE + ["--adapter", "no-such-format"], 2,
         ["no-such-format"], needs=("gen", "preds")),
]


@pytest.fixture(scope="session")
def generated(tmp_path_factory):
    """A small generated dataset ({gen}) and oracle predictions on its test split ({preds}), made once
    in-process (the table copies them per case)."""
    from sarchat.beam_pipelines import generate, synth
    from sarchat.inference import run as infer

    base = tmp_path_factory.mktemp("bad_input_data")
    data, gen, run_dir = str(base / "data"), str(base / "gen"), str(base / "run")
    assert synth.run(["--output", data, "--images", "12", "--seed", "1", "--quiet", "--workers", "1"]) == 0
    assert generate.run(["--input", data, "--output", gen, "--formats", "parquet", "--identify-variants", "2"]) == 0
    assert infer.run(["--dataset", gen, "--split", "test", "--backend", "oracle", "--output", run_dir,
                      "--image-root", data, "--no-progress"]) in (0, None)
    return {"data": data, "gen": gen, "preds": os.path.join(run_dir, "predictions.parquet")}


def _paths(case, tmp, request):
    paths = {"tmp": str(tmp), "root": str(tmp / "root"), "file": str(tmp / "notes.txt")}
    images, annotations = known_dataset()
    write_coco(paths["root"], "test", images, annotations)
    write_coco(paths["root"], "train", images[:1], annotations[:3])
    with open(paths["file"], "w") as f:
        f.write("the user's notes\n")
    if case.needs:
        shared = request.getfixturevalue("generated")
        shutil.copytree(shared["gen"], str(tmp / "gen"))
        paths["gen"] = str(tmp / "gen")
        if "preds" in case.needs:
            shutil.copy(shared["preds"], str(tmp / "predictions.parquet"))
            paths["preds"] = str(tmp / "predictions.parquet")
    return paths


def check_error_line(proc, command, exit_code, names):
    assert proc.returncode == exit_code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    prefix = f"sarchat {command}: error: " if command else "sarchat: error: "
    assert lines[0].startswith(prefix), lines[0]
    for name in names:
        assert name in lines[0], (name, lines[0])


def _param(case):
    marks = [pytest.mark.xfail(reason=case.xfail, strict=True)] if case.xfail else []
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(case, tmp_path, request):
    tmp = tmp_path / "case"
    tmp.mkdir()
    paths = _paths(case, tmp, request)
    if case.setup is not None:
        case.setup(paths)
    before = tree_hashes(str(tmp))
    proc = run_sarchat([case.command] + [a.format(**paths) for a in case.argv], cwd=str(tmp), env=user_env(tmp))
    command = case.command if case.command in _subcommands() else ""
    check_error_line(proc, command, case.exit_code, [n.format(**paths) for n in case.names])
    assert tree_hashes(str(tmp)) == before


def _subcommands():
    from sarchat.beam_pipelines.cli import SUBCOMMANDS

    return SUBCOMMANDS


# ---------------------------------------------------------------------------------------------
# A full disk


def _temporaries(folder):
    return sorted(os.path.relpath(os.path.join(d, n), folder)
                  for d, _, names in os.walk(folder) for n in names if ".tmp-" in n)


def test_disk_full_while_writing_the_report(generated, tmp_path):
    """score with too little room for report.html: one line, no truncated report, and a rerun with
    room leaves the full report and no temporaries."""
    env = user_env(tmp_path)
    args = ["score", "--dataset", generated["gen"], "--predictions", generated["preds"], "--samples", "0",
            "--bootstrap", "0", "--plots", "none"]  # the charts would only make report.html larger
    roomy = run_sarchat(args + ["--output", str(tmp_path / "reference")], cwd=str(tmp_path), env=env)
    assert roomy.returncode == 0, roomy.stderr
    sizes = {os.path.relpath(os.path.join(d, n), tmp_path / "reference"): os.path.getsize(os.path.join(d, n))
             for d, _, names in os.walk(tmp_path / "reference") for n in names}
    report = sizes.pop("report.html")
    assert report > max(sizes.values()), ("report.html must be the largest output for this test", sizes, report)
    limit = (report + max(sizes.values())) // 2

    out = tmp_path / "scores"
    full = run_sarchat(args + ["--output", str(out)], cwd=str(tmp_path), env=env, file_size_limit=limit)
    check_error_line(full, "score", 1, ["report.html", "disk full or file size limit"])
    assert not (out / "report.html").exists()       # not there rather than cut short
    assert _temporaries(str(out)) == []

    again = run_sarchat(args + ["--output", str(out)], cwd=str(tmp_path), env=env)
    assert again.returncode == 0, again.stderr
    assert os.path.getsize(out / "report.html") == report
    assert _temporaries(str(out)) == []


def test_disk_full_while_generating(tmp_path):
    """generate with too little room for a shard: one line, no manifest (the folder does not look
    complete), no temporaries; a rerun with room completes."""
    images, annotations = known_dataset()
    write_coco(str(tmp_path / "root"), "test", images, annotations)
    env = user_env(tmp_path)
    args = ["generate", "--input", str(tmp_path / "root"), "--output", str(tmp_path / "out"), "--formats", "parquet",
            "--splits", "test"]
    full = run_sarchat(args, cwd=str(tmp_path), env=env, file_size_limit=4096)
    check_error_line(full, "generate", 1, ["dialogues-", "disk full or file size limit"])
    assert not (tmp_path / "out" / "manifest.json").exists()
    assert _temporaries(str(tmp_path / "out")) == []
    again = run_sarchat(args, cwd=str(tmp_path), env=env)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "out" / "manifest.json").exists() and _temporaries(str(tmp_path / "out")) == []


def test_sigkill_during_a_rerun_leaves_no_manifest_and_the_next_run_completes(tmp_path):
    """`sarchat generate` killed (SIGKILL, no clean-up possible) while it rewrites a finished
    dataset: the folder is left without manifest.json (so no command reads it as a dataset), never
    with the old manifest over a mix; the next run completes with the files a clean run writes."""
    import time

    from sarchat.synthetic.sardet_synth import write_synthetic_dataset

    root = tmp_path / "root"
    write_synthetic_dataset(str(root), n_images=60, seed=0)
    env = user_env(tmp_path)
    out = tmp_path / "out"
    base = ["generate", "--input", str(root), "--output", str(out), "--images-per-shard", "10"]
    assert run_sarchat(base, cwd=str(tmp_path), env=env).returncode == 0
    proc = cli_process.start_sarchat(base + ["--seed", "7"], cwd=str(tmp_path), env=env, start_new_session=True)
    deadline = time.monotonic() + 120
    while (out / "manifest.json").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)  # the rerun removes the old manifest first
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists(), "a killed rerun left a manifest over its files"
    assert run_sarchat(base + ["--seed", "7"], cwd=str(tmp_path), env=env).returncode == 0
    clean = tmp_path / "clean"
    assert run_sarchat(["generate", "--input", str(root), "--output", str(clean), "--images-per-shard", "10",
                        "--seed", "7"], cwd=str(tmp_path), env=env).returncode == 0
    assert tree_hashes(str(out)) == tree_hashes(str(clean))
