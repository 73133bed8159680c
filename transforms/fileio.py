"""Whole-file reads and writes through Beam's FileSystems (local paths, gs://, any registered scheme).

One copy of these helpers for every pipeline. Reads are byte-exact unless a caller asks for
AUTO (which decompresses by file extension, e.g. an `annotations.json.gz`).

Writes never leave a half-written file under a name a user reads (docs/rules.md section 10): on a local disk
the bytes go to `<name>.tmp-<pid>-<random>` in the same folder, which is renamed over `<name>` once
complete (os.replace is atomic within a folder); a failed write removes its temporary, and the next
write of the same name removes temporaries left by processes that died (SIGKILL, power loss).
Object stores write an object whole when it is closed, so they need no temporary.

A disk that is full (ENOSPC, EDQUOT) or a file size limit (EFBIG) ends the write with an
OutputError naming the file: one line for the user, nothing truncated left behind.

Beam and pyarrow are imported on first use, so the command line's flag checks
(`check_output_location`) do not pay for them.
"""
import errno
import glob
import os
import re
import secrets

from sarchat.transforms.errors import InputError, OutputError

# errno values that mean "no room for these bytes": the disk, a quota, or RLIMIT_FSIZE.
DISK_FULL_ERRNOS = frozenset(e for e in (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", None)) if e)
TMP_MARK = ".tmp-"


def _uncompressed():
    from apache_beam.io.filesystem import CompressionTypes

    return CompressionTypes.UNCOMPRESSED


def _filesystems():
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


def is_local(path) -> bool:
    """A path on this machine's disk (plain or file://), as opposed to an object store URL."""
    path = str(path)
    return "://" not in path or path.startswith("file://")


def local_path(path) -> str:
    path = str(path)
    return path[len("file://"):] if path.startswith("file://") else path


def read_bytes(path, compression=None) -> bytes:
    """The file's bytes; with AUTO a `.gz` is decompressed through decode.gunzip, so one cut short or
    not gzip is an InputError naming it, never a shorter text. A folder is an InputError too."""
    from apache_beam.io.filesystem import CompressionTypes

    from sarchat.transforms import decode

    decode.check_is_file(path)
    if compression == CompressionTypes.AUTO and str(path).endswith(".gz"):
        return decode.gunzip(read_bytes(path), path)
    compression = _uncompressed() if compression is None else compression
    with _filesystems().open(path, compression_type=compression) as f:
        return f.read()


def is_disk_full(exc) -> bool:
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


def _disk_full_error(path, exc) -> OutputError:
    return OutputError(f"cannot write {path}: {exc.strerror or exc} (disk full or file size limit); "
                       "the file was not written, free some space and run again")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _temporary_pattern(name):
    return re.compile(re.escape(name) + re.escape(TMP_MARK) + r"(\d+)(?:-[0-9a-f]+)?$")


def remove_stale_temporaries(folder, name) -> list:
    """Remove `<name>.tmp-<pid>[-<random>]` files in `folder` whose writing process is gone (a run
    killed mid-write); temporaries of live processes stay. Returns the removed paths."""
    pattern = _temporary_pattern(name)
    removed = []
    for path in glob.glob(os.path.join(glob.escape(folder), glob.escape(name) + TMP_MARK + "*")):
        m = pattern.match(os.path.basename(path))
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            try:
                os.unlink(path)
                removed.append(path)
            except FileNotFoundError:  # another process cleaned it first
                pass
    return removed


def atomic_write_local(path, writer):
    """Call `writer(tmp_path)` to write a temporary beside `path`, then rename it to `path`.

    A failing writer (disk full, a bug, Ctrl-C) leaves `path` as it was and no temporary behind."""
    path = local_path(path)
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    remove_stale_temporaries(folder, name)
    tmp = os.path.join(folder, f"{name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")
    try:
        writer(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if is_disk_full(exc):
            raise _disk_full_error(path, exc) from exc
        raise


def write_bytes(path, data: bytes, mime="application/octet-stream"):
    if is_local(path):
        def write(tmp):
            with open(tmp, "wb") as f:
                f.write(data)

        atomic_write_local(path, write)
        return
    try:
        with _filesystems().create(path, mime_type=mime, compression_type=_uncompressed()) as f:
            f.write(data)
    except OSError as exc:
        if is_disk_full(exc):
            raise _disk_full_error(path, exc) from exc
        raise


def write_text(path, text: str, mime="text/plain"):
    write_bytes(path, text.encode("utf-8"), mime)


def join_path(*parts):
    base = parts[0]
    for p in parts[1:]:
        base = _filesystems().join(base, p)
    return base


def exists(path) -> bool:
    """FileSystems.exists, False where the scheme cannot answer (no credentials, unknown scheme)."""
    try:
        return _filesystems().exists(path)
    except Exception:
        return False


def check_output_location(path, flag="--output") -> str:
    """OutputError unless `path` can be an output folder: on a local disk it may not be a regular
    file nor lie under one (`--output report.html/x`). Object store URLs are not checked here (a
    prefix is never a file). Returns the path unchanged: every launcher's output flag uses this
    through `sarchat.beam_pipelines.flags.output_folder`."""
    if not is_local(path) or not str(path):
        return path
    probe = os.path.abspath(local_path(path))
    while True:
        if os.path.exists(probe):
            if not os.path.isdir(probe):
                if probe == os.path.abspath(local_path(path)):
                    raise OutputError(f"{flag} {path} is a file, not a folder")
                raise OutputError(f"{flag} {path} lies under {probe}, which is a file, not a folder")
            return path
        parent = os.path.dirname(probe)
        if parent == probe:
            return path
        probe = parent


def comparable_path(path) -> str:
    """A comparable form of a local path or URL (symlinks resolved, no trailing slash)."""
    path = str(path)
    if "://" in path:
        scheme, rest = path.split("://", 1)
        if scheme == "file":
            return os.path.realpath(rest)
        return f"{scheme}://{rest.rstrip('/')}"
    return os.path.realpath(os.path.abspath(path))


def _inside(inner, outer) -> bool:
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")


def check_no_overlap(inputs, output, output_flag="--output", what="output"):
    """OutputError when the output folder is an input, lies inside one or holds one: a command
    writes manifest.json, README.md and its folders there, and a rerun clears what it wrote, so an
    overlap could overwrite or mix with what it reads. `inputs` is [(label, path), ...], the label
    naming the input in the message ("the input folder (--input)")."""
    o = comparable_path(output)
    for label, path in inputs:
        if not path:
            continue
        d = comparable_path(path)
        if _inside(o, d) or _inside(d, o):
            where = "is" if o == d else ("lies inside" if _inside(o, d) else "holds")
            raise OutputError(f"{output_flag} {output} {where} {label} {path}; write the {what} elsewhere")


class UnreadableFileError(InputError):
    """An input file that cannot be read at all; the message names it."""


def open_parquet(path):
    import pyarrow.parquet as pq

    return pq.ParquetFile(_filesystems().open(path, compression_type=_uncompressed()))


def check_parquet_files(paths, what):
    """UnreadableFileError naming the file when a Parquet input is not Parquet (only its footer is read):
    a launcher fails with one line instead of a worker traceback halfway through the job."""
    import pyarrow as pa

    for path in paths:
        if path.endswith(".parquet"):
            try:
                open_parquet(path).close()
            except (OSError, pa.ArrowException) as exc:
                raise UnreadableFileError(f"cannot read {what} file {path}: {type(exc).__name__}: {exc}") from exc
