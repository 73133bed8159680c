"""The installed distribution exposes one import name, `sarchat`: a wheel built from this tree holds
only sarchat/... (and its metadata), its top_level.txt says `sarchat`, and the data files travel.
The links in sarchat/ become real files in the wheel and in the sdist Beam stages (--setup_file)."""
import os
import shutil
import subprocess
import sys
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


PARTS = ("beam_pipelines", "transforms", "templates", "inference", "report", "synthetic")
# the files the reports render from (Beam workers write report.md and report.html, so the sdist needs them too)
REPORT_FILES = tuple(f"report/{name}" for name in ("stats.md.j2", "report.md.j2", "report.html.j2", "report_parts.j2",
                                                   "leaderboard.md.j2", "samples.html.j2", "samples.md.j2", "dataset.html.j2",
                                                   "render_check.js"))


def tracked_copy(dest):
    """A copy of the tracked files, links kept as links: a build/ folder left in a checkout could add
    stale modules, and the links in sarchat/ are what the packaging relies on."""
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        path = os.path.join(REPO, rel)
        os.makedirs(dest / os.path.dirname(rel), exist_ok=True)
        if os.path.islink(path):
            os.symlink(os.readlink(path), dest / rel)
        elif os.path.isfile(path):
            shutil.copy2(path, dest / rel)
    return dest


def test_sarchat_links_every_part():
    for part in PARTS:
        link = os.path.join(REPO, "sarchat", part)
        assert os.path.islink(link) and os.readlink(link) == os.path.join("..", part), part


def test_the_wheel_installs_only_sarchat(tmp_path):
    src = tracked_copy(tmp_path / "src")
    wheels = tmp_path / "wheels"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(src)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = [p for p in os.listdir(wheels) if p.endswith(".whl")]
    with zipfile.ZipFile(wheels / wheel) as z:
        names = z.namelist()
        (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        assert z.read(top_level).decode().split() == ["sarchat"]
    tops = {n.split("/", 1)[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"sarchat"}
    for part in PARTS:
        assert f"sarchat/{part}/__init__.py" in names, part
    for data in ("sarchat/templates/refer.json", "sarchat/templates/released.json", "sarchat/report/paper_table3.json",
                 "sarchat/transforms/stats/paper_stats.json", "sarchat/beam_pipelines/flex_templates/generate.json",
                 "sarchat/transforms/adapter_files/qwen2-vl.json", "sarchat/transforms/adapter_files/qwen3-vl.json",
                 "sarchat/transforms/generate/card.md.j2", *(f"sarchat/{f}" for f in REPORT_FILES)):
        assert data in names, data
    assert not [n for n in names if "/tests/" in n or n.startswith("tests/")]
    assert not [n for n in names if "/tiny_" in n], "test fixtures (tests/tiny_*.py) stay out of the wheel"


def test_the_sdist_holds_real_files(tmp_path):
    """Beam's --setup_file stages `setup.py sdist`; workers install it, so it must carry the modules
    as files under sarchat/, not links to folders the sdist does not hold."""
    import tarfile
    src = tracked_copy(tmp_path / "src")
    proc = subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path / "dist")],
                          cwd=src, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sdist,) = os.listdir(tmp_path / "dist")
    with tarfile.open(tmp_path / "dist" / sdist) as tar:
        members = {m.name.split("/", 1)[1]: m for m in tar.getmembers() if "/" in m.name}
    for part in PARTS:
        member = members[f"sarchat/{part}/__init__.py"]
        assert member.isfile(), part
    assert members["sarchat/transforms/geometry.py"].isfile()
    assert members["sarchat/templates/refer.json"].isfile()
    for template in ("transforms/generate/card.md.j2", *REPORT_FILES):  # Beam workers render them
        assert members[f"sarchat/{template}"].isfile(), template
