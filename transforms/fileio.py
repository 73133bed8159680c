"""The one module that talks to Beam's FileSystems (local paths, gs://, any registered scheme).

Every pipeline and launcher reads, writes, lists, moves and deletes files through these functions.
Reads are byte-exact unless a caller asks to decompress (by file extension, e.g. an
`annotations.json.gz`). Object stores have no folders: a "folder" is a name prefix, which
`list_files` and `delete_tree` treat like a folder on a local disk.

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
import contextlib
import errno
import glob
import os
import pathlib
import re
import secrets

from sarchat.transforms.errors import OutputError

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


def is_compressed(path) -> bool:
    """Whether its extension names a compression (.gz, .bz2, ...) that `read_bytes(decompress=True)` undoes."""
    from apache_beam.io.filesystem import CompressionTypes

    return CompressionTypes.detect_compression_type(path) != CompressionTypes.UNCOMPRESSED


def open_read(path):
    """The file opened for reading its bytes as stored (no decompression)."""
    return _filesystems().open(path, compression_type=_uncompressed())


def read_bytes(path, decompress=False) -> bytes:
    """The file's bytes; with decompress a `.gz` is decompressed through decode.gunzip, so one cut short
    or not gzip is an InputError naming it, never a shorter text. A folder is an InputError too."""
    from apache_beam.io.filesystem import CompressionTypes

    from sarchat.transforms import decode

    decode.check_is_file(path)
    if decompress and str(path).endswith(".gz"):
        return decode.gunzip(read_bytes(path), path)
    compression = CompressionTypes.AUTO if decompress else CompressionTypes.UNCOMPRESSED
    with _filesystems().open(path, compression_type=compression) as f:
        return f.read()


def _check_disk_full(path, exc):
    """OutputError naming the file when `exc` says there is no room for its bytes."""
    if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc} (disk full or file size limit); "
                          "the file was not written, free some space and run again") from exc


def pid_alive(pid) -> bool:
    """Whether process `pid` runs on this machine (another user's, or a pid beyond the OS's range: yes)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True
    return True


def remove_stale_temporaries(folder, name):
    """Remove `<name>.tmp-<pid>[-<random>]` files in `folder` whose writing process is gone (a run
    killed mid-write); temporaries of live processes stay."""
    pattern = re.compile(re.escape(name + TMP_MARK) + r"(\d+)(?:-[0-9a-f]+)?$")
    for path in glob.glob(os.path.join(glob.escape(folder), glob.escape(name) + TMP_MARK + "*")):
        m = pattern.match(os.path.basename(path))
        if m and int(m.group(1)) != os.getpid() and not pid_alive(m.group(1)):
            with contextlib.suppress(FileNotFoundError):  # another process may clean it first
                os.unlink(path)


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
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        _check_disk_full(path, exc)
        raise


def write_bytes(path, data: bytes, mime="application/octet-stream"):
    if is_local(path):
        atomic_write_local(path, lambda tmp: pathlib.Path(tmp).write_bytes(data))
        return
    try:
        with open_write(path, mime) as f:
            f.write(data)
    except OSError as exc:
        _check_disk_full(path, exc)
        raise


def write_text(path, text: str, mime="text/plain"):
    write_bytes(path, text.encode("utf-8"), mime)


def open_write(path, mime="application/octet-stream"):
    """A file opened for writing bytes as given, in place (an object store stores the object whole on
    close); `write_bytes` writes a local file atomically instead."""
    return _filesystems().create(path, mime_type=mime, compression_type=_uncompressed())


def join_path(base, *parts) -> str:
    return _filesystems().join(base, *parts)


def basename(path) -> str:
    return _filesystems().split(path)[1]


def exists(path, quiet=False) -> bool:
    """Whether a file (an object) is at `path`; quiet: False rather than the error where the file
    system cannot answer (no credentials, an unknown scheme)."""
    try:
        return _filesystems().exists(path)
    except Exception:
        if quiet:
            return False
        raise


def match(pattern, quiet=False) -> dict:
    """{path: size in bytes} of the files a glob matches (`**` crosses folders); quiet: {} rather than
    the error where the file system cannot list (some raise on an empty match)."""
    try:
        results = _filesystems().match([pattern])
    except Exception:
        if quiet:
            return {}
        raise
    return {md.path: md.size_in_bytes for md in results[0].metadata_list}


def list_files(folder) -> dict:
    """{path relative to folder: size} of every file under folder, at any depth ({} when none)."""
    root = folder.rstrip("/") + "/"
    return {path[len(root):]: size for path, size in match(root + "**", quiet=True).items() if path.startswith(root)}


def delete(paths):
    """Delete these files (a local folder with everything in it); nothing to do for none."""
    if paths:
        _filesystems().delete(list(paths))


def delete_tree(folder):
    """Delete a folder and everything under it; on an object store, every object under the prefix
    (it has no folder to delete, nor one that `exists` sees)."""
    if is_local(folder):
        if exists(folder):
            delete([folder])
        return
    delete([join_path(folder, rel) for rel in list_files(folder)])


def rename(sources, targets):
    """Move files (on an object store a copy then a delete per object); on a local disk the targets'
    folders are made first."""
    for target in targets:
        if is_local(target):
            os.makedirs(os.path.dirname(local_path(target)), exist_ok=True)
    _filesystems().rename(list(sources), list(targets))


def check_output_location(path, flag="--output") -> str:
    """OutputError unless `path` can be an output folder: on a local disk it may not be a regular
    file nor lie under one (`--output report.html/x`). Object store URLs are not checked here (a
    prefix is never a file). Returns the path unchanged: every launcher's output flag uses this
    through `sarchat.beam_pipelines.flags.output_folder`."""
    if not is_local(path) or not str(path):
        return path
    probe = full = os.path.abspath(local_path(path))
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    if os.path.exists(probe) and not os.path.isdir(probe):
        where = "is a file" if probe == full else f"lies under {probe}, which is a file"
        raise OutputError(f"{flag} {path} {where}, not a folder")
    return path


def comparable_path(path) -> str:
    """A comparable form of a local path or URL (symlinks resolved, no trailing slash)."""
    path = local_path(path)
    if "://" in path:
        scheme, rest = path.split("://", 1)
        return f"{scheme}://{rest.rstrip('/')}"
    return os.path.realpath(path)


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


def open_parquet(path):
    import pyarrow.parquet as pq

    return pq.ParquetFile(open_read(path))
