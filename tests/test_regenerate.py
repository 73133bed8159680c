"""`sarchat regenerate`: one version folder per input+config, early exit, crash safety, LATEST."""
import glob
import json
import os
import signal

import pytest

from sarchat.beam_pipelines import flags, generate, regenerate
from tests import cli_process
from tests.helpers import file_bytes, random_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = ["--splits", "test", "--images-per-shard", "5"]


def _regen(root, base, *extra):
    return regenerate.run(["--input", str(root), "--output-base", str(base), *FLAGS, *extra])


def _versions(base):
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(base, "v-*")))


def _complete_versions(base):
    out = []
    for name in _versions(base):
        manifest = regenerate.read_manifest(os.path.join(base, name))
        if manifest and regenerate.is_complete(os.path.join(base, name), manifest["dataset_version"]):
            out.append(name)
    return out


def _latest(base):
    path = os.path.join(base, "LATEST")
    return open(path).read().strip() if os.path.exists(path) else None


def _data_files(folder):
    """Every file's bytes except manifest.json (which records the version name)."""
    return {k: v for k, v in file_bytes(folder).items() if k != "manifest.json"}


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    random_dataset(root, n_images=12)
    return root


def test_publish_then_early_exit(data, tmp_path, capsys, monkeypatch):
    base = tmp_path / "base"
    assert _regen(data, base) == 0
    (name,) = _versions(base)
    assert _latest(base) == name and _complete_versions(base) == [name]
    manifest = json.loads((base / name / "manifest.json").read_text())
    assert name == f"v-{manifest['dataset_version']}" and manifest["output_version"] == name
    assert not glob.glob(os.path.join(base, ".tmp-*")), "the temporary folder was moved into place"
    # same files as a plain `sarchat generate` of the same input and flags
    plain = tmp_path / "plain"
    assert generate.run(["--input", str(data), "--output", str(plain), *FLAGS]) == 0
    assert _data_files(base / name) == _data_files(plain)
    capsys.readouterr()

    # second run: nothing to do, no pipeline started, exit 0
    monkeypatch.setattr(regenerate, "launch", lambda p: pytest.fail("a pipeline was started"))
    before = file_bytes(base)
    assert _regen(data, base) == 0
    assert "up to date" in capsys.readouterr().out
    assert file_bytes(base) == before

    # LATEST pointing elsewhere (e.g. an older input) is set back to the version of the inputs now
    (base / "LATEST").write_text("v-somethingelse\n")
    assert _regen(data, base) == 0 and _latest(base) == name

    # a version folder whose files were tampered with is not complete: the next run rebuilds it
    victim = sorted(glob.glob(os.path.join(base, name, "parquet", "test", "*.parquet")))[0]
    with open(victim, "ab") as f:
        f.write(b"x")
    assert not regenerate.is_complete(str(base / name), manifest["dataset_version"])
    monkeypatch.undo()
    assert _regen(data, base) == 0
    assert _complete_versions(base) == [name] and _data_files(base / name) == _data_files(plain)


def _run_cli(data, base, crash_at=None):
    env = dict(os.environ)
    env.pop(regenerate.CRASH_ENV, None)
    if crash_at:
        env[regenerate.CRASH_ENV] = crash_at
    return cli_process.run_sarchat(["regenerate", "--input", str(data), "--output-base", str(base), *FLAGS],
                                   cwd=REPO, env=cli_process.repo_env(env), timeout=240)


def test_killed_before_publication_leaves_no_complete_version(data, tmp_path):
    base = tmp_path / "base"
    # SIGKILL after every shard, the swift files, the rejects and the manifest were written to the
    # temporary folder, before the move into place
    proc = _run_cli(data, base, crash_at="before_publish")
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert _versions(base) == [] and _latest(base) is None
    (tmp,) = glob.glob(os.path.join(base, ".tmp-*"))
    assert os.path.exists(os.path.join(tmp, "manifest.json")), "the crash came after the shards were written"

    proc = _run_cli(data, base)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "temporary folder(s) of other runs" in proc.stderr  # the dead run's folder is reported
    (name,) = _complete_versions(base)
    assert _latest(base) == name and "published" in proc.stdout

    proc = _run_cli(data, base)
    assert proc.returncode == 0 and "up to date" in proc.stdout


def test_killed_between_publication_and_latest(data, tmp_path):
    base = tmp_path / "base"
    proc = _run_cli(data, base, crash_at="before_latest")
    assert proc.returncode == -signal.SIGKILL
    (name,) = _complete_versions(base)  # published (atomic rename) but LATEST not yet written
    assert _latest(base) is None
    proc = _run_cli(data, base)
    assert proc.returncode == 0 and "up to date" in proc.stdout and _latest(base) == name


def test_object_store_publication_crash_mid_move(data, tmp_path, monkeypatch):
    """File-by-file publication (the gs:// path): a crash before the manifest is moved leaves a
    version folder without manifest, which is not complete and is replaced by the next run."""
    base = tmp_path / "base"
    config = flags.parse_config(regenerate.build_parser(), ["--input", str(data), "--output-base", str(base), *FLAGS],
                                generate.GenerateConfig)
    _, _, manifest_base = generate.prepare(config)
    h = manifest_base["dataset_version"]
    name = regenerate.version_name(h)
    tmp = base / f".tmp-{h}-test"
    assert generate.run(["--input", str(data), "--output", str(tmp), *FLAGS]) == 0

    def crash(point):
        if point == "before_manifest_move":
            raise RuntimeError("killed")

    monkeypatch.setattr(regenerate, "_checkpoint", crash)
    with pytest.raises(RuntimeError, match="killed"):
        regenerate.publish(str(base), str(tmp), name, h, atomic_rename=False)
    final = base / name
    assert final.exists() and not (final / "manifest.json").exists()
    assert len(_data_files(final)) > 5 and not regenerate.is_complete(str(final), h)
    assert _latest(base) is None
    monkeypatch.undo()

    assert _regen(data, base) == 0
    assert _complete_versions(base) == [name] and _latest(base) == name

    # a concurrent run with the same inputs that finishes second only removes its own folder
    tmp2 = base / f".tmp-{h}-second"
    assert generate.run(["--input", str(data), "--output", str(tmp2), *FLAGS]) == 0
    assert regenerate.publish(str(base), str(tmp2), name, h, atomic_rename=False) == "already published"
    assert not tmp2.exists() and _complete_versions(base) == [name]


def test_changed_input_makes_a_new_version(data, tmp_path):
    base = tmp_path / "base"
    assert _regen(data, base) == 0
    (first,) = _versions(base)
    ann = data / "Annotations" / "test.json"
    coco = json.loads(ann.read_text())
    coco["annotations"] = coco["annotations"][:-3]
    ann.write_text(json.dumps(coco))
    assert _regen(data, base) == 0
    second = _latest(base)
    assert second != first and sorted(_complete_versions(base)) == sorted([first, second])
    # a changed flag is a new version too; the previous ones stay untouched
    assert _regen(data, base, "--seed", "9") == 0
    assert len(_complete_versions(base)) == 3 and _latest(base) not in (first, second)


def test_multi_processing_run(data, tmp_path):
    base = tmp_path / "base"
    assert _regen(data, base, "--direct_num_workers=2", "--direct_running_mode=multi_processing") == 0
    (name,) = _complete_versions(base)
    plain = tmp_path / "plain"
    assert generate.run(["--input", str(data), "--output", str(plain), *FLAGS]) == 0
    assert _data_files(base / name) == _data_files(plain)
    assert _latest(base) == name


# ---- an object store with GCS semantics (no directories, rename = copy + delete) -------------

import io as _io  # noqa: E402

from apache_beam.io.filesystem import BeamIOError, CompressionTypes, FileMetadata, FileSystem  # noqa: E402

_OBJECTS = {}


class _ObjectWriter(_io.BytesIO):
    def __init__(self, path):
        super().__init__()
        self.path = path

    def close(self):
        if not self.closed:
            _OBJECTS[self.path] = self.getvalue()  # an object appears whole, on close
        super().close()


class MemObjectFileSystem(FileSystem):
    """memgcs://bucket/key: a dict of objects; found by Beam's FileSystems through its scheme."""

    @classmethod
    def scheme(cls):
        return "memgcs"

    def join(self, basepath, *paths):
        return "/".join([basepath.rstrip("/")] + [p.strip("/") for p in paths])

    def split(self, path):
        head, _, tail = path.rstrip("/").rpartition("/")
        return head, tail

    def mkdirs(self, path):
        pass

    def has_dirs(self):
        return False

    def _list(self, dir_or_prefix):
        for key, data in sorted(_OBJECTS.items()):
            if key.startswith(dir_or_prefix):
                yield FileMetadata(key, len(data))

    def create(self, path, mime_type=None, compression_type=CompressionTypes.AUTO):
        return _ObjectWriter(path)

    def open(self, path, mime_type=None, compression_type=CompressionTypes.AUTO):
        if path not in _OBJECTS:
            raise BeamIOError(f"no object {path}")
        return _io.BytesIO(_OBJECTS[path])

    def copy(self, source_file_names, destination_file_names):
        for s, d in zip(source_file_names, destination_file_names):
            _OBJECTS[d] = _OBJECTS[s]

    def rename(self, source_file_names, destination_file_names):
        self.copy(source_file_names, destination_file_names)
        self.delete(source_file_names)

    def exists(self, path):
        return path in _OBJECTS

    def size(self, path):
        return len(_OBJECTS[path])

    def last_updated(self, path):
        return 0.0

    def checksum(self, path):
        return str(hash(_OBJECTS[path]))

    def metadata(self, path):
        return FileMetadata(path, len(_OBJECTS[path]))

    def delete(self, paths):
        for path in paths:
            if path in _OBJECTS:
                del _OBJECTS[path]
            else:
                for key in [k for k in _OBJECTS if k.startswith(path.rstrip("/") + "/")]:
                    del _OBJECTS[key]


def test_object_store_end_to_end(data, tmp_path, monkeypatch, capsys):
    """The gs:// code path (file-by-file publication, prefixes instead of folders) on an in-memory
    object store: publish, early exit, a crash half-way through the move, recovery."""
    _OBJECTS.clear()
    base = "memgcs://bucket/versions"
    assert regenerate.run(["--input", str(data), "--output-base", base, *FLAGS]) == 0
    name = regenerate.read_latest(base)
    final = f"{base}/{name}"
    assert regenerate.is_complete(final, name[2:])
    assert not [k for k in _OBJECTS if "/.tmp-" in k], "the temporary prefix was emptied"
    plain = tmp_path / "plain"
    assert generate.run(["--input", str(data), "--output", str(plain), *FLAGS]) == 0
    stored = {k[len(final) + 1:]: v for k, v in _OBJECTS.items() if k.startswith(final + "/")}
    assert {k: v for k, v in stored.items() if k != "manifest.json"} == _data_files(plain)
    capsys.readouterr()
    assert regenerate.run(["--input", str(data), "--output-base", base, *FLAGS]) == 0
    assert "up to date" in capsys.readouterr().out

    # crash after the data objects moved, before the manifest: not complete; LATEST unchanged
    del _OBJECTS[f"{final}/manifest.json"]
    _OBJECTS[f"{final}/stale-object-from-the-dead-run"] = b"x"

    def crash(point):
        if point == "before_manifest_move":
            raise RuntimeError("killed")

    monkeypatch.setattr(regenerate, "_checkpoint", crash)
    with pytest.raises(Exception, match="killed"):
        regenerate.run(["--input", str(data), "--output-base", base, *FLAGS])
    assert not regenerate.is_complete(final, name[2:]) and f"{final}/manifest.json" not in _OBJECTS
    monkeypatch.undo()
    assert regenerate.run(["--input", str(data), "--output-base", base, *FLAGS]) == 0
    assert regenerate.is_complete(final, name[2:]) and regenerate.read_latest(base) == name
    assert f"{final}/stale-object-from-the-dead-run" not in _OBJECTS, "leftovers of the dead run removed"
    leftovers = [k for k in _OBJECTS if "/.tmp-" in k]
    assert leftovers and all(k.split("/.tmp-")[0] == base for k in leftovers)  # the killed run's prefix
    _OBJECTS.clear()


def test_a_template_change_alone_makes_a_new_version(data, tmp_path, monkeypatch):
    """The version covers the template banks: an edited bank with the same inputs and flags is not
    'up to date' (it was, when versions were named by config_hash)."""
    base = tmp_path / "base"
    assert _regen(data, base) == 0
    (first,) = _versions(base)
    real = generate.templates.fingerprints

    def edited(*a, **k):
        fp = real(*a, **k)
        fp["refer"] = {**fp["refer"], "sha256": "0" * 64}
        return fp

    monkeypatch.setattr(generate.templates, "fingerprints", edited)
    assert _regen(data, base) == 0
    assert _latest(base) != first and len(_complete_versions(base)) == 2
