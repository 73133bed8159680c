"""The installed distribution exposes one import name, `sarchat`: a wheel built from this tree holds
only sarchat/... (and its metadata), its top_level.txt says `sarchat`, and the data files travel."""
import os
import shutil
import subprocess
import sys
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_wheel_installs_only_sarchat(tmp_path):
    # Build from a copy of the tracked files: a build/ folder left in a checkout could add stale modules.
    src = tmp_path / "src"
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if os.path.isfile(os.path.join(REPO, rel)):
            os.makedirs(src / os.path.dirname(rel), exist_ok=True)
            shutil.copy2(os.path.join(REPO, rel), src / rel)
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
    for part in ("beam_pipelines", "transforms", "templates", "inference", "report", "synthetic"):
        assert f"sarchat/{part}/__init__.py" in names, part
    for data in ("sarchat/templates/refer.json", "sarchat/templates/released.json", "sarchat/report/paper_table3.json",
                 "sarchat/transforms/stats/paper_stats.json", "sarchat/beam_pipelines/flex_templates/generate.json",
                 "sarchat/transforms/adapter_files/qwen2-vl.json", "sarchat/transforms/adapter_files/qwen3-vl.json"):
        assert data in names, data
    assert not [n for n in names if "/tests/" in n or n.startswith("tests/")]
