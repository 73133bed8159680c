"""`sarchat generate --input data` (a relative path) gives a dataset that works from any folder
(issue 22, point 2): infer reads its images, score's report shows them, the swift files' image paths
exist, and the manifest resolves its recorded paths from the dataset folder. When images are missing,
the message says to pass --image-root."""
import glob
import json
import os

from tests import cli_process

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _sarchat(cwd, *argv):
    return cli_process.run_sarchat(argv, cwd=str(cwd), env=dict(cli_process.repo_env(), SARCHAT_NO_PROGRESS="1"))


def test_a_relative_input_works_from_another_folder(tmp_path):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    done = _sarchat(work, "synth", "--output", "data", "--images", "12", "--seed", "4")
    assert done.returncode == 0, done.stderr
    done = _sarchat(work, "generate", "--input", "data", "--output", "out", "--formats", "parquet,swift,authors")
    assert done.returncode == 0, done.stderr
    dataset = work / "out"
    manifest = json.loads((dataset / "manifest.json").read_text())
    # stored relative to the dataset folder, and the manifest says so
    assert manifest["input_root"] == "../data" and manifest["paths_relative_to"] == "dataset"
    assert manifest["inputs"]["test"]["path"] == "../data/Annotations/test.json"
    # the swift and authors files hold image paths that exist from any folder
    paths = []
    for path in glob.glob(str(dataset / "swift" / "*" / "*.jsonl")):
        with open(path, encoding="utf-8") as fh:
            paths += [img for line in fh for img in json.loads(line)["images"]]
    for path in glob.glob(str(dataset / "authors" / "*.json")):
        with open(path, encoding="utf-8") as fh:
            paths += [img for row in json.load(fh) for img in row["images"]]
    assert paths and all(os.path.isabs(p) and os.path.isfile(p) for p in paths)

    # infer from another folder: every sample gets a prediction
    run = elsewhere / "run"
    done = _sarchat(elsewhere, "infer", "--dataset", str(dataset), "--backend", "cfar", "--output", str(run))
    assert done.returncode == 0, done.stderr
    assert "missing image" not in done.stderr
    # score from another folder: the report shows the images, and knows the data is synthetic
    scores = elsewhere / "scores"
    done = _sarchat(elsewhere, "score", "--dataset", str(dataset), "--predictions",
                    str(run / "predictions.parquet"), "--output", str(scores), "--bootstrap", "0", "--plots", "none")
    assert done.returncode == 0, done.stderr
    report = (scores / "report.html").read_text(encoding="utf-8")
    assert "data:image/" in report and "Images not found" not in report
    assert "sarchat synth" in report


def test_missing_images_name_image_root(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    assert _sarchat(work, "synth", "--output", "data", "--images", "8", "--seed", "4").returncode == 0
    assert _sarchat(work, "generate", "--input", "data", "--output", "out", "--formats", "parquet").returncode == 0
    os.rename(work / "data", work / "moved")
    done = _sarchat(tmp_path, "infer", "--dataset", str(work / "out"), "--backend", "cfar", "--output",
                    str(tmp_path / "run"))
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert "missing image" in last and "--image-root" in last and "rerun the same command" not in last, last
    # and the flag it names does fix it
    done = _sarchat(tmp_path, "infer", "--dataset", str(work / "out"), "--backend", "cfar", "--output",
                    str(tmp_path / "run"), "--image-root", str(work / "moved"))
    assert done.returncode == 0, done.stderr
