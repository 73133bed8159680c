"""Any COCO detection file (issue 22, point 3): `--category-map vessel=ship,plane=aircraft` (or a JSON
file) maps a file's own category names to the six; the map is recorded in the manifest and changes the
dataset version; without it, a file whose boxes are mostly rejected for their category says so."""
import json
import os

from tests import cli_process
from tests.helpers import known_dataset, read_rows, write_coco

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OWN_NAMES = [{"id": 0, "name": "vessel"}, {"id": 1, "name": "plane"}, {"id": 2, "name": "car"},
             {"id": 3, "name": "tank"}, {"id": 4, "name": "bridge"}, {"id": 5, "name": "port"}]


def _sarchat(*argv):
    return cli_process.run_sarchat(argv, env=dict(cli_process.repo_env(), SARCHAT_NO_PROGRESS="1"))


def _data(tmp_path):
    images, annotations = known_dataset()
    root = tmp_path / "data"
    write_coco(str(root), "test", images, annotations, categories=OWN_NAMES)
    return root


def test_a_file_with_its_own_names_warns_then_maps(tmp_path):
    root = _data(tmp_path)
    plain = _sarchat("generate", "--input", str(root), "--output", str(tmp_path / "plain"), "--splits", "test")
    assert plain.returncode == 0, plain.stderr
    warning = [ln for ln in plain.stdout.splitlines() if ln.startswith("warning:")]
    assert warning == ["warning: split test: 5 of 6 boxes rejected for their category (category names not among "
                       "the six: plane, port, vessel); map them with --category-map NAME=CATEGORY,... (categories: "
                       "ship, aircraft, car, tank, bridge, harbor)"], plain.stdout

    mapped = _sarchat("generate", "--input", str(root), "--output", str(tmp_path / "mapped"), "--splits", "test",
                      "--category-map", "vessel=ship,Plane=aircraft,port=harbor")
    assert mapped.returncode == 0, mapped.stderr
    assert "warning:" not in mapped.stdout
    manifest = json.loads((tmp_path / "mapped" / "manifest.json").read_text())
    assert manifest["config"]["category_map"] == {"plane": "aircraft", "port": "harbor", "vessel": "ship"}
    assert manifest["rejects"]["test"].get("unknown_category", 0) == 0
    cats = sorted(c for r in read_rows(str(tmp_path / "mapped")) if r["task"] == "count" for c in r["gt_categories"])
    assert set(cats) >= {"ship", "aircraft", "harbor"}
    plain_manifest = json.loads((tmp_path / "plain" / "manifest.json").read_text())
    assert manifest["dataset_version"] != plain_manifest["dataset_version"]
    assert "category map" in (tmp_path / "mapped" / "README.md").read_text()

    # the same map as a JSON file gives the same dataset
    map_file = tmp_path / "map.json"
    map_file.write_text(json.dumps({"vessel": "ship", "plane": "aircraft", "port": "harbor"}))
    from_file = _sarchat("generate", "--input", str(root), "--output", str(tmp_path / "from-file"), "--splits", "test",
                         "--category-map", str(map_file))
    assert from_file.returncode == 0, from_file.stderr
    again = json.loads((tmp_path / "from-file" / "manifest.json").read_text())
    assert again["dataset_version"] == manifest["dataset_version"]


def test_a_bad_map_is_one_line_naming_the_flag(tmp_path):
    root = _data(tmp_path)
    for value, words in (("vessel=boat", "'boat' (for 'vessel') is not one of the categories"),
                         ("vessel", "expected NAME=CATEGORY pairs"),
                         ("vesel=ship", "'vesel' is no category name of the annotation files"),
                         (str(tmp_path / "nope.json"), "cannot read it")):
        done = _sarchat("generate", "--input", str(root), "--output", str(tmp_path / "out"), "--splits", "test",
                        "--category-map", value)
        assert done.returncode == 2, (value, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("sarchat generate: error: --category-map") and words in lines[0], lines
        assert not os.path.exists(tmp_path / "out" / "manifest.json")
