"""Whole-file reads and writes through Beam's FileSystems (local paths, gs://, any registered scheme).

One copy of these helpers for every pipeline. Reads are byte-exact unless a caller asks for
AUTO (which decompresses by file extension, e.g. an `annotations.json.gz`).
"""
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
