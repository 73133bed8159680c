"""Whole-file reads and writes through Beam's FileSystems (local paths, gs://, any registered scheme).

One copy of these helpers for every pipeline. Reads are byte-exact unless a caller asks for
AUTO (which decompresses by file extension, e.g. an `annotations.json.gz`).
"""
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems


def read_bytes(path, compression=CompressionTypes.UNCOMPRESSED) -> bytes:
    with FileSystems.open(path, compression_type=compression) as f:
        return f.read()


def write_bytes(path, data: bytes, mime="application/octet-stream"):
    with FileSystems.create(path, mime_type=mime, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(data)


def write_text(path, text: str, mime="text/plain"):
    write_bytes(path, text.encode("utf-8"), mime)


def join_path(*parts):
    base = parts[0]
    for p in parts[1:]:
        base = FileSystems.join(base, p)
    return base


def exists(path) -> bool:
    """FileSystems.exists, False where the scheme cannot answer (no credentials, unknown scheme)."""
    try:
        return FileSystems.exists(path)
    except Exception:
        return False


class UnreadableFileError(ValueError):
    """An input file that cannot be read at all; the message names it."""


def open_parquet(path) -> pq.ParquetFile:
    return pq.ParquetFile(FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED))


def check_parquet_files(paths, what):
    """UnreadableFileError naming the file when a Parquet input is not Parquet (only its footer is read):
    a launcher fails with one line instead of a worker traceback halfway through the job."""
    for path in paths:
        if path.endswith(".parquet"):
            try:
                open_parquet(path).close()
            except (OSError, pa.ArrowException) as exc:
                raise UnreadableFileError(f"cannot read {what} file {path}: {type(exc).__name__}: {exc}") from exc
