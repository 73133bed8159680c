"""`sarchat infer --output gs://...`: the run folder on object storage, the store on local disk.

Object stores cannot append or lock, and the store's promise (every batch fsync'd before it counts)
needs both. So a run with a URL as --output keeps the store of inference/store.py in a local work
folder (--work-dir; by default ~/.cache/sarchat/infer/<hash of the URL>) and mirrors it:

    pull    before the run and before each merge: every remote part file that is missing here or
            longer than the local copy (parts are append-only, so longer means newer), the
            other shards' manifests, and this shard's own when there is no local one yet (a rerun
            on a fresh node with nothing left to do keeps the figures of the run that did the work)
    push    this shard's part file every --push-interval seconds and at the end, its manifest
            whenever it is written
    merge   pull, merge locally, upload predictions.parquet, predictions.jsonl and manifest.json;
            then list the remote parts again and redo the merge if any changed meanwhile, so the
            last shard to finish, on whichever node, leaves a complete predictions file

A node that dies loses at most the batches since its last push; a rerun on any node pulls what was
pushed and predicts only the rest. One process per (run key, shard) at a time across nodes: the
part's flock guards one machine only. Any fsspec URL works (gs:// via gcsfs, file:// in tests).
"""
import hashlib
import logging
import os
import posixpath

from sarchat.inference import store
from sarchat.transforms.errors import OutputError


def default_work_dir(url):
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    digest = hashlib.sha256(url.rstrip("/").encode("utf-8")).hexdigest()[:16]
    return os.path.join(cache, "sarchat", "infer", digest)


def _no_traceback(record):
    """Keeps a library's log line but not its traceback: the failure is reported as a RemoteError."""
    record.exc_info, record.exc_text = None, None
    return True


class RemoteError(OutputError):
    """A remote read or write failed; what was done is in the local work folder, rerun to resume."""


class RemoteRun:
    """The remote copy of one run folder (`url`) of the local folder `local_dir`."""

    OUTPUTS = (store.PREDICTIONS_PARQUET, store.PREDICTIONS_JSONL, store.MANIFEST)

    def __init__(self, url, local_dir):
        import fsspec

        self.url = url.rstrip("/")
        self.local_dir = local_dir
        # gcsfs logs each request that ran out of retries with a traceback (addFilter adds it once)
        logging.getLogger("gcsfs").addFilter(_no_traceback)
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        self.root = self.root.rstrip("/")

    def _remote(self, rel):
        return posixpath.join(self.root, rel)

    def _local(self, rel):
        return os.path.join(self.local_dir, *rel.split("/"))

    def _listing(self, rel_folder):
        """{name: size} of the files directly in a remote folder ({} when it does not exist)."""
        try:
            entries = self._io("listing of", rel_folder, lambda: self.fs.ls(self._remote(rel_folder), detail=True))
        except FileNotFoundError:
            return {}
        return {posixpath.basename(e["name"].rstrip("/")): int(e.get("size") or 0)
                for e in entries if e.get("type") == "file"}

    def part_sizes(self, run_key):
        """{part file name: size} on the remote side: what a merge has seen."""
        return {n: s for n, s in self._listing(f"store/{run_key}").items()
                if n.startswith("part-") and n.endswith(".jsonl")}

    def _io(self, what, rel, fn):
        try:
            return fn()
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise RemoteError(f"{what} {self.url}/{rel} failed: {type(exc).__name__}: {exc}") from exc

    def _download(self, rel):
        dest = self._local(rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        tmp = f"{dest}.pull-{os.getpid()}"
        self._io("download of", rel, lambda: self.fs.get_file(self._remote(rel), tmp))
        os.replace(tmp, dest)

    def upload(self, rel, missing_ok=False):
        if missing_ok and not os.path.exists(self._local(rel)):
            return
        # An object store publishes an upload whole or not at all and has no folders to make
        # (gcsfs's makedirs would try to create the bucket); a file:// target gets both by hand.
        def put():
            target = self._remote(rel)
            if getattr(self.fs, "local_file", False):
                self.fs.makedirs(posixpath.dirname(target), exist_ok=True)
                self.fs.put_file(self._local(rel), f"{target}.tmp-{os.getpid()}")
                os.replace(f"{target}.tmp-{os.getpid()}", target)
            else:
                self.fs.put_file(self._local(rel), target)

        self._io("upload to", rel, put)

    def pull(self, run_key, own_manifest=None):
        """Bring remote parts and shard manifests here; returns the remote part sizes it saw."""
        sizes = self.part_sizes(run_key)
        for name, size in sorted(sizes.items()):
            rel = f"store/{run_key}/{name}"
            local = self._local(rel)
            if not os.path.exists(local) or os.path.getsize(local) < size:
                self._download(rel)
        for name in sorted(self._listing(f"runs/{run_key}")):
            rel = f"runs/{run_key}/{name}"
            if name.startswith("shard-") and name.endswith(".json") and (
                    name != own_manifest or not os.path.exists(self._local(rel))):
                self._download(rel)
        return sizes

    def merge(self, run_key, merge_local):
        """Pull, merge_local(), upload the outputs; again while the remote parts keep changing."""
        while True:
            seen = self.pull(run_key)
            result = merge_local()
            for name in self.OUTPUTS:
                self.upload(name, missing_ok=True)
            if self.part_sizes(run_key) == seen:
                return result
