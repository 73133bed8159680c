"""Reading the generated dialogues for inference: Parquet shards, selection, sharding, images.

`sarchat generate --output OUT` writes `OUT/parquet/<split>/dialogues-*.parquet` (DIALOGUE_SCHEMA)
and `OUT/manifest.json`, whose `input_root` is the dataset root the relative `image_path`s hang
from. `--image-root` overrides it. Paths may be local or any fsspec URL (gs://...).
"""
import base64
import contextlib
import hashlib
import io
import json
import os
import posixpath

import pyarrow as pa
import pyarrow.parquet as pq

from sarchat.transforms.schema import DIALOGUE_FIELDS, TASKS

# Columns every backend needs; backends add their own (oracle/blind need the answers).
BASE_COLUMNS = ("id", "split", "task", "subset", "image_path", "image_id", "width", "height", "question")


class DatasetError(Exception):
    """The generated dataset cannot be used as given; the message names the folder or file."""


def is_url(path) -> bool:
    return "://" in str(path)


def _join(root, rel):
    if is_url(root):
        return root.rstrip("/") + "/" + rel.lstrip("/")
    return os.path.join(root, rel)


def _open(path, mode="rb"):
    if is_url(path):
        import fsspec

        return fsspec.open(path, mode).open()
    return open(path, mode)


def split_files(dataset, split):
    """The split's Parquet shard files, sorted by name."""
    folder = _join(_join(dataset, "parquet"), split)
    if is_url(folder):
        import fsspec

        try:
            fs, _, paths = fsspec.get_fs_token_paths(folder.rstrip("/") + "/dialogues-*.parquet")
        except Exception as exc:
            raise DatasetError(f"cannot list {folder}: {type(exc).__name__}: {exc}") from exc
        protocol = folder.split("://", 1)[0]
        return sorted(f"{protocol}://{p}" for p in paths)
    if not os.path.isdir(folder):
        return []
    return sorted(os.path.join(folder, n) for n in os.listdir(folder)
                  if n.startswith("dialogues-") and n.endswith(".parquet"))


def read_manifest(dataset) -> dict:
    path = _join(dataset, "manifest.json")
    try:
        with _open(path, "rb") as fh:
            return json.loads(fh.read().decode("utf-8"))
    except (OSError, ValueError):
        return {}


def resolve_image_root(dataset, override=None) -> str:
    """--image-root, else manifest.json's input_root (relative paths tried from the cwd, then
    from the dataset folder), else the dataset folder itself."""
    if override:
        return str(override)
    manifest = read_manifest(dataset)
    root = manifest.get("input_root") or (manifest.get("config") or {}).get("input_root")
    if not root:
        return str(dataset)
    root = str(root)
    if is_url(root) or os.path.isabs(root) or os.path.isdir(root):
        return root
    candidate = os.path.join(str(dataset), root)
    return candidate if os.path.isdir(candidate) else root


def files_fingerprint(paths) -> str:
    """Cheap fingerprint of input files: names and sizes (used for the blind prior's training data)."""
    h = hashlib.sha256()
    for p in paths:
        try:
            size = os.path.getsize(p) if not is_url(p) else -1
        except OSError:
            size = -1
        h.update(f"{posixpath.basename(str(p))}\x1f{size}\n".encode())
    return h.hexdigest()[:16]


def parse_tasks(spec):
    """'count,refer_single grounding' -> {('count', None), ('refer', 'single'), ('grounding', None)}."""
    if not spec:
        return None
    items = []
    for part in spec if isinstance(spec, (list, tuple)) else [spec]:
        items.extend(t for t in str(part).replace(",", " ").split() if t)
    wanted = set()
    for item in items:
        task, _, subset = item.partition("_")
        if task not in TASKS or (subset and subset not in ("single", "multi")):
            raise ValueError(f"unknown task {item!r}; tasks: {', '.join(TASKS)} (or TASK_single / TASK_multi)")
        wanted.add((task, subset or None))
    return wanted


def _selected(task, subset, wanted):
    if wanted is None:
        return True
    return (task, None) in wanted or (task, subset) in wanted


def shard_of(sample_id: str, num_shards: int) -> int:
    """Deterministic shard of a sample id (sha256, identical in every process and machine)."""
    if num_shards <= 1:
        return 0
    digest = hashlib.sha256(("infer\x1f" + sample_id).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % num_shards


def load_rows(dataset, split, columns=BASE_COLUMNS, tasks=None, limit=None, num_shards=1, shard_index=0):
    """Dialogue rows (dicts) of one split, in a deterministic global order.

    Selection: task filter, then the first `limit` rows (files in name order, rows in file order;
    identical for every shard), then this shard's part (sha256 of the id mod num_shards).
    """
    files = split_files(dataset, split)
    if not files:
        raise DatasetError(f"no dialogues-*.parquet under {_join(_join(dataset, 'parquet'), split)} "
                           "(--dataset is the output folder of `sarchat generate`; --split names one of its splits)")
    cols = [c for c in DIALOGUE_FIELDS if c in set(columns) | {"id", "task", "subset"}]
    wanted = parse_tasks(tasks)
    rows, seen = [], 0
    for path in files:
        with _reading(path), _open(path, "rb") as fh:
            table = pq.read_table(fh, columns=cols)
        for row in table.to_pylist():
            if not _selected(row["task"], row.get("subset"), wanted):
                continue
            if limit is not None and seen >= limit:
                return rows
            seen += 1
            if shard_of(row["id"], num_shards) == shard_index:
                rows.append(row)
    return rows


def iter_rows(dataset, split, columns=None):
    """Every row of a split (all columns unless given), streamed file by file."""
    cols = list(columns) if columns else None
    for path in split_files(dataset, split):
        with _reading(path), _open(path, "rb") as fh:
            for batch in pq.ParquetFile(fh).iter_batches(batch_size=4096, columns=cols):
                yield from batch.to_pylist()


@contextlib.contextmanager
def _reading(path):
    """Turns a failed read of a dataset file into a DatasetError naming the file."""
    try:
        yield
    except (OSError, pa.ArrowException) as exc:
        raise DatasetError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc


# ---- images ---------------------------------------------------------------------------------

class ImageError(Exception):
    """A sample's image is missing or cannot be decoded (recorded per sample, retried next run)."""


def image_location(image_root, image_path) -> str:
    if is_url(image_path) or os.path.isabs(image_path):
        return image_path
    return _join(image_root, image_path)


def read_image_bytes(location) -> bytes:
    try:
        with _open(location, "rb") as fh:
            return fh.read()
    except FileNotFoundError as exc:
        raise ImageError(f"missing image: {location}") from exc
    except OSError as exc:
        raise ImageError(f"cannot read image {location}: {exc}") from exc


def decode_image(data: bytes, location=""):
    """A fully decoded PIL image (raises ImageError on a corrupt or truncated file)."""
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(data))
        img.load()
        return img
    except Exception as exc:  # PIL raises many types for corrupt data
        raise ImageError(f"corrupt image {location}: {type(exc).__name__}: {exc}") from exc


_MIME = {"JPEG": "image/jpeg", "PNG": "image/png"}


def image_data_url(data: bytes, location="", pad_to_multiple: int = 0) -> str:
    """A base64 data URL for the image; decodes it first so a corrupt file fails here, per sample.

    JPEG and PNG in 8-bit L/RGB(A) are sent as they are; anything else (BMP, TIFF, 16-bit) is
    re-encoded as PNG. With pad_to_multiple, the image is padded (black) on the right and bottom to
    the next multiple, keeping the pixel coordinates of everything in it.
    """
    from PIL import Image

    img = decode_image(data, location)
    fmt = img.format
    if pad_to_multiple and pad_to_multiple > 1:
        m = pad_to_multiple
        w, h = img.size
        pw, ph = -(-w // m) * m, -(-h // m) * m
        if (pw, ph) != (w, h):
            src = img.convert("RGB") if img.mode not in ("L", "RGB") else img
            canvas = Image.new(src.mode, (pw, ph), 0)
            canvas.paste(src, (0, 0))
            img, fmt = canvas, None
    if fmt in _MIME and img.mode in ("L", "RGB", "RGBA", "P"):
        payload, mime = data, _MIME[fmt]  # untouched original bytes
    else:
        if img.mode not in ("L", "RGB"):
            img = _to_8bit(img)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        payload, mime = buf.getvalue(), "image/png"
    return f"data:{mime};base64," + base64.b64encode(payload).decode("ascii")


def _to_8bit(img):
    """16-bit / float images (SAR GeoTIFFs) to 8-bit L, stretched to the 99.9th percentile."""
    import numpy as np
    from PIL import Image

    if img.mode in ("RGBA", "P", "LA", "CMYK", "YCbCr"):
        return img.convert("RGB")
    arr = np.asarray(img, dtype=np.float64)
    hi = float(np.percentile(arr, 99.9)) if arr.size else 1.0
    arr = np.clip(arr / (hi or 1.0) * 255.0, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, mode="L")


def image_gray_array(data: bytes, location=""):
    """The image as a float32 2-D amplitude array (channels averaged)."""
    import numpy as np

    img = decode_image(data, location)
    if img.mode not in ("L", "I", "I;16", "F"):
        img = img.convert("L")
    return np.asarray(img, dtype=np.float32)
