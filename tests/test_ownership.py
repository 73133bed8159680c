"""transforms/ownership.py in process (pure logic, no Beam): the claim's decisions one by one. The
command-line behaviour is tests/test_trust.py's."""
import json
import os
import socket
import subprocess

import pytest

from sarchat.transforms import ownership
from sarchat.transforms.errors import OutputError


def _files(folder):
    return sorted(os.path.relpath(os.path.join(d, n), folder) for d, _, ns in os.walk(folder) for n in ns)


def test_a_new_folder_is_claimed_and_an_unused_claim_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    with ownership.claim(str(out), "score"):
        assert (out / ownership.LOCK).exists() and (out / ownership.MARK).exists()
    assert not out.exists()


def test_a_second_writer_is_refused_naming_the_first(tmp_path):
    out = str(tmp_path / "out")
    with ownership.claim(out, "score"):
        with pytest.raises(OutputError, match=rf"is being written by `sarchat score` \(pid {os.getpid()} on "):
            with ownership.claim(out, "score"):
                pass


def test_a_dead_process_lock_is_taken_over(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    out = tmp_path / "out"
    out.mkdir()
    (out / ownership.LOCK).write_text(json.dumps({"command": "score", "pid": dead.pid, "host": socket.gethostname()}))
    with ownership.claim(str(out), "score"):
        (out / "leaderboard.json").write_text("{}")
    assert json.loads((out / ownership.MARK).read_text()) == {"command": "score", "files": ["leaderboard.json"]}
    assert not (out / ownership.LOCK).exists()


def test_a_foreign_folder_is_refused_and_untouched(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years")
    with pytest.raises(OutputError, match="not empty and was not written by `sarchat score`.*thesis.tex"):
        with ownership.claim(str(out), "score"):
            pass
    assert _files(str(out)) == ["thesis.tex"]


def test_another_commands_folder_is_refused(tmp_path):
    out = str(tmp_path / "out")
    with ownership.claim(out, "generate"):
        open(os.path.join(out, "manifest.json"), "w").close()
    with pytest.raises(OutputError, match="holds the output of `sarchat generate`"):
        with ownership.claim(out, "infer"):
            pass


def test_the_next_run_removes_what_the_last_wrote_and_keeps_the_users_files(tmp_path):
    out = str(tmp_path / "out")
    with ownership.claim(out, "score"):
        os.makedirs(os.path.join(out, "alpha", "samples"))
        open(os.path.join(out, "alpha", "metrics.json"), "w").close()
        open(os.path.join(out, "alpha", "samples", "s.parquet"), "w").close()
    open(os.path.join(out, "notes.txt"), "w").close()
    with ownership.claim(out, "score") as c:
        assert c.remove_previous() == ["alpha/metrics.json", "alpha/samples/s.parquet"]
        open(os.path.join(out, "gamma.json"), "w").close()
    assert _files(out) == [ownership.MARK, "gamma.json", "notes.txt"]
    assert json.load(open(os.path.join(out, ownership.MARK)))["files"] == ["gamma.json"]


def test_a_failed_run_records_what_it_wrote_or_removes_it(tmp_path):
    out = str(tmp_path / "out")
    with pytest.raises(RuntimeError):
        with ownership.claim(out, "export"):
            open(os.path.join(out, "half.yaml"), "w").close()
            raise RuntimeError("disk full")
    assert json.load(open(os.path.join(out, ownership.MARK)))["files"] == ["half.yaml"]
    with pytest.raises(RuntimeError):
        with ownership.claim(out, "export", keep_on_failure=False) as c:
            c.remove_previous()
            open(os.path.join(out, "wrong.json"), "w").close()
            raise RuntimeError("inputs changed")
    assert _files(out) == [ownership.MARK]


def test_removal_never_follows_a_link_out_of_the_folder(tmp_path):
    out = str(tmp_path / "out")
    with ownership.claim(out, "score"):
        os.makedirs(os.path.join(out, "alpha"))
        open(os.path.join(out, "alpha", "metrics.json"), "w").close()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "metrics.json").write_text("the user's")
    os.remove(os.path.join(out, "alpha", "metrics.json"))
    os.rmdir(os.path.join(out, "alpha"))
    os.symlink(str(elsewhere), os.path.join(out, "alpha"))
    with ownership.claim(out, "score") as c:
        c.remove_previous()
    assert (elsewhere / "metrics.json").read_text() == "the user's"


def test_a_reader_refuses_a_dataset_being_written_and_notices_a_new_manifest(tmp_path):
    from sarchat.transforms.errors import DatasetError

    ds = str(tmp_path / "ds")
    os.makedirs(ds)
    open(os.path.join(ds, "manifest.json"), "w").write('{"files": []}')
    with ownership.claim(ds, "generate", legacy=lambda f, files: []):
        with pytest.raises(DatasetError, match="is being written by `sarchat generate`"):
            ownership.reading(ds)
    r = ownership.reading(ds)
    r.verify()
    open(os.path.join(ds, "manifest.json"), "w").write('{"files": [1]}')
    with pytest.raises(DatasetError, match="changed while it was being read.*replaced"):
        r.verify()


def test_lock_and_marker_are_read_as_json_objects(tmp_path):
    """None: no file; {}: no JSON object in it. A lock that cannot be read is {} (another run's, unknown);
    a marker that cannot be read is an error, not a folder of unknown owner."""
    assert ownership.read_lock(tmp_path) is None and ownership.read_marker(tmp_path) is None
    for raw, expected in ((b'{"command": "stats"}', {"command": "stats"}), (b"[1]", {}), (b"\xff", {}), (b"{", {})):
        (tmp_path / ownership.LOCK).write_bytes(raw)
        (tmp_path / ownership.MARK).write_bytes(raw)
        assert ownership.read_lock(tmp_path) == expected == ownership.read_marker(tmp_path)
    for name in (ownership.LOCK, ownership.MARK):
        (tmp_path / name).unlink()
        (tmp_path / name).mkdir()  # opening a folder: IsADirectoryError, an OSError
    assert ownership.read_lock(tmp_path) == {}
    with pytest.raises(IsADirectoryError):
        ownership.read_marker(tmp_path)
