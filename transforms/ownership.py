"""Who may write an output folder, and what a run's outputs are (docs/rules.md section 10, docs/cli.md
"Output folders" and "Runs at the same time"). Pure standard library: no Beam, no project imports
above the vocabulary layer.

Three rules, one place each:

- **One writer at a time** (`claim`). A command that writes a local folder first claims it with
  `OUT/.sarchat-lock`, created atomically (a hard link of a complete temporary, so the lock is never
  seen half-written) and holding the writer's command, pid and host. A second writer is refused with
  one line naming the first; a lock whose pid is dead on this host is stale (SIGKILL) and is taken
  over. The lock goes when the run ends, whatever the outcome. Object stores have no locks:
  `sarchat regenerate`'s versioned layout (write `BASE/v-<hash>/` under a temporary name, publish,
  then point `LATEST` at it) is the way to share a base there.
- **Every command owns what it writes** (`claim`). A folder is written only when it is empty (or
  does not exist) or carries the command's own marker, `OUT/.sarchat-owner.json` (`{"command": ...,
  "files": [...]}`); an older folder of the command's own is recognised by the command's `legacy`
  test (e.g. a generate manifest). Anything else is refused with one line and left untouched.
- **Nothing stale** (`OutputClaim.remove_previous`, `OutputClaim.record_new_files`). The marker lists
  the files the command's last run wrote; the next run removes exactly those (a file changed since
  is still ours: the folder is ours), then the folders left empty, and records what it writes itself,
  also when it fails, so a rerun after SIGKILL or a full disk starts from a known state.

Readers (`reading`) check the lock too: a dataset being written by a live run is refused, and the
reader's `verify()` at the end refuses a dataset whose manifest changed (or vanished) meanwhile.

Tests stop a process at a named point (`pause_point`) through two inherited pipe descriptors
(`SARCHAT_TEST_PAUSE=<point>:<fd to write>:<fd to read>`): the process writes one byte, then waits
for one byte. No sleeps, no timing.
"""
import contextlib
import hashlib
import json
import os
import secrets
import socket
import time

from sarchat.transforms.errors import DatasetError, OutputError
from sarchat.transforms.fileio import is_local, pid_alive
from sarchat.transforms.fileio import local_path as _local

LOCK = ".sarchat-lock"
MARK = ".sarchat-owner.json"
OWN_NAMES = frozenset((LOCK, MARK))


def pause_point(name):
    """Test hook: stop here until the test says go (see the module doc). A no-op unless
    SARCHAT_TEST_PAUSE names this point."""
    point, _, fds = os.environ.get("SARCHAT_TEST_PAUSE", "").partition(":")
    if point and point == name:
        out_fd, _, in_fd = fds.partition(":")
        os.write(int(out_fd), b"x")
        os.read(int(in_fd), 1)


def read_lock(folder):
    """The lock's holder as a dict ({command, pid, host, started}), {} when the lock is unreadable,
    None when there is none."""
    return _read_object(os.path.join(_local(folder), LOCK), unreadable=OSError)


def _read_object(path, unreadable=()):
    """The JSON object in the file `path`: None when there is no file, {} when it holds no JSON
    object or raises one of the `unreadable` errors."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    except unreadable:
        return {}
    try:
        found = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return {}
    return found if isinstance(found, dict) else {}


def live_holder(folder):
    """The lock's holder when a live process holds `folder` (a lock of a dead pid on this host is
    stale and does not count), else None."""
    holder = read_lock(folder) if is_local(folder) else None
    if holder and holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        return holder if pid_alive(holder["pid"]) else None
    return holder


def describe_holder(holder) -> str:
    if not holder:
        return "another run (its lock file is unreadable)"
    since = holder.get("started")
    when = time.strftime(" since %Y-%m-%d %H:%M:%S UTC", time.gmtime(since)) if isinstance(since, (int, float)) else ""
    return (f"`sarchat {holder.get('command', '?')}` (pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
            f"{when})")


@contextlib.contextmanager
def _complete_temporary(path, text):
    """A temporary beside `path` holding all of `text`, for the caller to rename or link to `path`;
    removed on the way out, whatever happened."""
    tmp = f"{path}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        yield tmp
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _acquire_lock(folder, command):
    path = os.path.join(folder, LOCK)
    me = {"command": command, "pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    with _complete_temporary(path, json.dumps(me)) as tmp:
        for _ in range(3):
            try:
                os.link(tmp, path)
                return path
            except FileExistsError:
                holder = live_holder(folder)
                if holder is not None:
                    raise OutputError(f"{folder} is being written by {describe_holder(holder)}; one run writes a "
                                      f"folder at a time: wait for it to finish (if that process is gone, remove "
                                      f"{path})") from None
                with contextlib.suppress(FileNotFoundError):  # a dead run's lock: take it over
                    os.unlink(path)
        raise OutputError(f"cannot claim {folder}: its lock {path} keeps changing; another run is starting there")


def read_marker(folder):
    return _read_object(os.path.join(_local(folder), MARK))


def _write_marker(folder, command, files):
    path = os.path.join(folder, MARK)
    with _complete_temporary(path, json.dumps({"command": command, "files": sorted(files)}, indent=1) + "\n") as tmp:
        os.replace(tmp, path)


def _files_under(folder):
    rels = {os.path.relpath(os.path.join(d, n), folder).replace(os.sep, "/")
            for d, _, names in os.walk(folder) for n in names}
    return {rel for rel in rels if rel not in OWN_NAMES and not rel.startswith((LOCK + ".tmp-", MARK + ".tmp-"))}


def _safe_rel(rel) -> bool:
    if not isinstance(rel, str) or not rel or rel.startswith("/") or "\x00" in rel or "\\" in rel:
        return False
    return not {"..", ".", ""} & set(rel.split("/")) and rel not in OWN_NAMES


class OutputClaim:
    """A claimed output folder (see `claim`). A claim on an object store (local=False) has nothing to
    remove (`remove_previous`); the methods after it run only at a local claim's end (`_settle`)."""

    def __init__(self, folder, command, local=True, record=True):
        self.folder = folder
        self.command = command
        self.local = local
        self.record = record
        self.before = set()
        self.previous = []

    def _path(self, rel):
        return os.path.join(self.folder, *rel.split("/"))

    def _still_there(self, rels):
        return [r for r in rels if os.path.lexists(self._path(r))]

    def remove_previous(self):
        """Remove what the command's previous run in this folder wrote (the marker's list), then the
        folders that left empty. Returns the removed relative paths."""
        if not self.local:
            return []
        removed = []
        real_root = os.path.realpath(self.folder)
        for rel in filter(_safe_rel, self.previous):
            path = self._path(rel)
            parent = os.path.realpath(os.path.dirname(path))
            if parent != real_root and not parent.startswith(real_root + os.sep):
                continue  # a folder of ours replaced by a link out of the folder: never follow it
            if os.path.isfile(path) or os.path.islink(path):
                os.unlink(path)
                removed.append(rel)
        for rel in sorted({"/".join(r.split("/")[:i]) for r in removed for i in range(1, r.count("/") + 1)},
                          key=lambda p: -p.count("/")):
            with contextlib.suppress(OSError):
                os.rmdir(self._path(rel))
        self.previous = self._still_there(self.previous)
        _write_marker(self.folder, self.command, self.previous)
        self.before = _files_under(self.folder)
        return removed

    def new_files(self):
        return sorted(_files_under(self.folder) - self.before)

    def record_new_files(self):
        """Write the marker listing what this run wrote (files new since the claim) and the
        previous list's files still there."""
        if self.record:
            _write_marker(self.folder, self.command, set(self.new_files()) | set(self._still_there(self.previous)))

    def discard_new_files(self):
        """Remove what this run wrote (a run whose inputs changed under it: its outputs are not
        results), then the folders left empty."""
        for rel in self.new_files():
            with contextlib.suppress(OSError):
                os.unlink(self._path(rel))
        for d, _, _ in sorted(os.walk(self.folder), key=lambda t: -t[0].count(os.sep)):
            if d != self.folder:
                with contextlib.suppress(OSError):
                    os.rmdir(d)


@contextlib.contextmanager
def claim(folder, command, legacy=None, keep_on_failure=True, lock=True, record=True):
    """Claim `folder` for one run of `sarchat <command>` (see the module doc). `legacy(folder, files)`
    returns the files of an older output of this command in a folder without our marker (None: not
    ours). On the way out the lock goes; the marker lists what this run wrote (`keep_on_failure=False`:
    a failed run's new files are removed instead); a marker or folder the claim made and nothing was
    written beside is removed again. `lock=False`: the shards of one sharded run share the folder
    (their parent holds the lock); `record=False`: the command keeps its own list (infer's store)."""
    if not is_local(folder):
        yield OutputClaim(folder, command, local=False)
        return
    folder = os.path.abspath(_local(folder))
    created = not os.path.exists(folder)
    lock_path = _make_and_lock(folder, command, created, lock)
    out = OutputClaim(folder, command, record=record)
    claimed = ok = had_marker = False
    try:
        out.previous, had_marker = _previous_output(folder, command, legacy)
        try:
            _write_marker(folder, command, out.previous if record else [])
        except OSError as exc:
            raise output_os_error(folder, exc) from exc
        claimed = True
        out.before = _files_under(folder)
        pause_point(f"{command}-claimed")
        yield out
        ok = True
    finally:
        try:
            if claimed:
                _settle(out, ok or keep_on_failure, had_marker)
        finally:
            if lock_path is not None:  # the lock goes, then the folder when the claim made it and it is empty
                with contextlib.suppress(OSError):
                    os.unlink(lock_path)
            if created:
                with contextlib.suppress(OSError):
                    os.rmdir(folder)


def _make_and_lock(folder, command, created, lock):
    """Create the folder and take its lock (`lock`); -> the lock's path or None. An OS error is one
    line, and a folder this claim created goes again."""
    try:
        os.makedirs(folder, exist_ok=True)
        return _acquire_lock(folder, command) if lock else None
    except OSError as exc:
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        raise output_os_error(folder, exc) from exc


def _previous_output(folder, command, legacy):
    """(the files the command's previous run here wrote, whether the folder has our marker);
    OutputError when the folder holds anything else."""
    mark = read_marker(folder)
    if mark is not None:
        if mark.get("command") != command:
            raise OutputError(f"{folder} holds the output of `sarchat {mark.get('command', '?')}` "
                              f"({MARK}); `sarchat {command}` writes only an empty folder or one of its own: "
                              "choose another --output")
        files = mark.get("files")
        return ([r for r in files if isinstance(r, str)] if isinstance(files, list) else []), True
    present = sorted(_files_under(folder))
    if not present:
        return [], False
    own = legacy(folder, present) if legacy is not None else None
    if own is None:
        shown = ", ".join(present[:3]) + (", ..." if len(present) > 3 else "")
        raise OutputError(f"{folder} is not empty and was not written by `sarchat {command}` (it holds "
                          f"{shown}); refusing to write there: choose an empty or new folder")
    return sorted(own), False


def _settle(out, keep_new_files, had_marker):
    """A claimed run's end: its new files removed unless kept, the marker listing what stays, and a
    marker the claim made with nothing written beside it removed again."""
    if not keep_new_files:
        out.discard_new_files()
    with contextlib.suppress(OSError):
        out.record_new_files()
    if not had_marker and not _files_under(out.folder):
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(out.folder, MARK))


def output_os_error(path, exc) -> OutputError:
    """One line for an OS error on an output (read-only, permission, disk full, size limit)."""
    return OutputError(f"cannot write {getattr(exc, 'filename', None) or path}: {exc.strerror or exc}")


# ---------------------------------------------------------------------------------------------
# Readers


def _digest(path):
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


class ConsistentRead:
    """A read of one dataset version: started with `reading(dataset)`, ended with `verify()`."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.folder = _local(dataset) if is_local(dataset) and os.path.isdir(_local(dataset)) else None
        self.digest = None
        if self.folder is None:
            return
        holder = live_holder(self.folder)
        if holder is not None:
            raise DatasetError(f"{dataset} is being written by {describe_holder(holder)}; read it once that "
                               "run has finished")
        self.manifest = os.path.join(self.folder, "manifest.json")
        self.digest = _digest(self.manifest)
        pause_point("read-started")

    def verify(self):
        """DatasetError when a writer claimed the dataset or its manifest changed since it was started:
        what was read may mix two versions."""
        if self.digest is None:
            return
        holder = live_holder(self.folder)
        now = _digest(self.manifest)
        if holder is not None or now != self.digest:
            what = (f"{describe_holder(holder)} is rewriting it" if holder is not None else
                    "its manifest.json was removed" if now is None else "its manifest.json was replaced")
            raise DatasetError(f"{self.dataset} changed while it was being read ({what}); the results would mix "
                               "two versions and were not kept: run again once the dataset is stable")


reading = ConsistentRead
