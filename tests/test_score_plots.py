"""`sarchat score --plots none`: the same numbers and tables, no chart, and matplotlib never loaded."""
import json
import os

from tests import cli_process
from tests.test_bad_input import generated  # noqa: F401


def _score(generated, out, *extra):  # noqa: F811
    """The command forked from the warm process (which has not loaded matplotlib), and the names of
    the modules it had loaded when it ended."""
    modules = f"{out}.modules"
    done = cli_process.run_sarchat(["score", "--dataset", generated["gen"], "--predictions", generated["preds"],
                                    "--output", str(out), "--samples", "0", "--bootstrap", "0", *extra],
                                   modules_file=modules)
    return done, (open(modules).read().split() if os.path.exists(modules) else [])


def test_plots_none_keeps_every_number_and_leaves_out_the_charts(tmp_path, generated):  # noqa: F811
    with_charts, charted_modules = _score(generated, tmp_path / "svg")
    without, plain_modules = _score(generated, tmp_path / "none", "--plots", "none")
    assert with_charts.returncode == 0 and without.returncode == 0, with_charts.stderr + without.stderr
    assert "matplotlib" in charted_modules and "matplotlib" not in plain_modules
    for name in sorted(os.listdir(tmp_path / "svg")):
        if name.endswith(".json"):
            assert (tmp_path / "none" / name).read_bytes() == (tmp_path / "svg" / name).read_bytes(), name

    def undated(path):  # the report's header names the minute it was written
        return [line for line in path.read_text().splitlines() if " UTC" not in line]
    assert undated(tmp_path / "none" / "report.md") == undated(tmp_path / "svg" / "report.md")
    (model,) = [d for d in os.listdir(tmp_path / "svg") if os.path.isfile(tmp_path / "svg" / d / "metrics.json")]
    assert json.loads((tmp_path / "none" / model / "metrics.json").read_text()) == \
        json.loads((tmp_path / "svg" / model / "metrics.json").read_text())
    charted, plain = ((tmp_path / d / "report.html").read_text() for d in ("svg", "none"))
    assert "<svg" in charted and "id='radar'" in charted
    assert "<svg" not in plain and "id='no-charts'" in plain
    assert "Table 3" in plain and "Summary per model" in plain


def test_an_unknown_plots_value_is_a_usage_error(tmp_path, generated):  # noqa: F811
    proc, _ = _score(generated, tmp_path / "x", "--plots", "png")
    assert proc.returncode == 2
    assert "--plots" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()
