"""The suite writes nothing outside pytest's temporary folder (issue 22, point 9): a pytest run of
tests that generate with Beam and load with Hugging Face `datasets`, with the system temp folder
and the home folder pointed at empty folders, leaves both empty but for pytest's own basetemp."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _files_under(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, files in os.walk(folder) for f in files)


def test_a_run_writes_only_under_its_basetemp(tmp_path):
    system_tmp, home, basetemp = tmp_path / "system-tmp", tmp_path / "home", tmp_path / "basetemp"
    system_tmp.mkdir()
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("TMPDIR", "TEMP", "TMP", "HF_HOME", "HF_DATASETS_CACHE", "HF_HUB_CACHE", "XDG_CACHE_HOME",
                        "XDG_CONFIG_HOME", "MPLCONFIGDIR", "TORCH_HOME", "KERAS_HOME", "TFHUB_CACHE_DIR")}
    env.update({"TMPDIR": str(system_tmp), "HOME": str(home), "SARCHAT_NO_PROGRESS": "1",
                "PYTHONPATH": REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")})
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
                           f"--basetemp={basetemp}",
                           "tests/test_dataset_card.py::test_load_dataset_returns_the_parquet_rows_with_every_column",
                           "tests/test_one_cli.py::test_help_still_exits_0"],
                          cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 passed" in done.stdout, done.stdout
    assert _files_under(system_tmp) == [] and _files_under(home) == []
    # what the run wrote is all under its basetemp, the HF cache among it
    assert any(p.startswith("session-scratch") and "hf-home" in p for p in _files_under(basetemp))
