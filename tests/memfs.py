"""An in-memory object store registered with Beam's FileSystems under memfs://, for tests.

Like gs://, it has no directories (names are flat keys; a "folder" is a name prefix), writes an
object whole when its file is closed, and `delete` of a missing object fails. Beam finds the scheme
through FileSystem's subclasses, so importing this module is enough; in-process runners share it.
"""
import hashlib
import io
import threading

from apache_beam.io.filesystem import BeamIOError, FileMetadata, FileSystem

STORE = {}
_LOCK = threading.Lock()


class _Writer(io.BytesIO):
    def __init__(self, path):
        super().__init__()
        self._path = path

    def close(self):
        if not self.closed:
            with _LOCK:
                STORE[self._path] = self.getvalue()
        super().close()


class MemoryFileSystem(FileSystem):
    @classmethod
    def scheme(cls):
        return "memfs"

    def join(self, basepath, *paths):
        out = basepath.rstrip("/")
        for p in paths:
            out += "/" + p.strip("/")
        return out

    def split(self, path):
        head, _, tail = path.rpartition("/")
        return head, tail

    def mkdirs(self, path):
        pass

    def has_dirs(self):
        return False

    def _list(self, dir_or_prefix):
        with _LOCK:
            items = sorted((k, len(v)) for k, v in STORE.items() if k.startswith(dir_or_prefix))
        for key, size in items:
            yield FileMetadata(key, size)

    def create(self, path, mime_type="application/octet-stream", compression_type=None):
        return _Writer(path)

    def open(self, path, mime_type="application/octet-stream", compression_type=None):
        with _LOCK:
            if path not in STORE:
                raise BeamIOError("open failed", {path: FileNotFoundError(path)})
            return io.BytesIO(STORE[path])

    def copy(self, source_file_names, destination_file_names):
        with _LOCK:
            for s, d in zip(source_file_names, destination_file_names):
                STORE[d] = STORE[s]

    def rename(self, source_file_names, destination_file_names):
        with _LOCK:
            for s, d in zip(source_file_names, destination_file_names):
                STORE[d] = STORE.pop(s)

    def exists(self, path):
        with _LOCK:
            return path in STORE

    def size(self, path):
        with _LOCK:
            return len(STORE[path])

    def last_updated(self, path):
        return 0.0

    def checksum(self, path):
        with _LOCK:
            return hashlib.sha256(STORE[path]).hexdigest()

    def metadata(self, path):
        return FileMetadata(path, self.size(path))

    def delete(self, paths):
        errors = {}
        with _LOCK:
            for p in paths:
                if p in STORE:
                    del STORE[p]
                else:
                    errors[p] = FileNotFoundError(p)
        if errors:
            raise BeamIOError("delete failed", errors)
