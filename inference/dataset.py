"""Reading the generated dialogues for inference: the manifest's Parquet shards, selection,
sharding, images.

`sarchat generate --output OUT` writes `OUT/parquet/<split>/dialogues-*.parquet` (DIALOGUE_SCHEMA)
and, last, `OUT/manifest.json`, which lists every file with its size and whose `input_root` is the
dataset root the relative `image_path`s hang from (`--image-root` overrides it). The files read are
the ones the manifest lists, through sarchat.transforms.dataset_files (a folder without a manifest,
or a listed file of another size, is refused). Paths may be local or any fsspec URL (gs://...).
"""
import base64
import collections
import contextlib
import hashlib
import io
import threading

import pyarrow as pa
import pyarrow.parquet as pq

from sarchat.inference.config import DEFAULT_MAX_IMAGE_PIXELS, parse_tasks, task_entries, task_entry
from sarchat.transforms import dataset_files, progress
from sarchat.transforms.dataset_files import is_url
from sarchat.transforms.errors import DatasetError, InputError, UsageError
from sarchat.transforms.schema import DIALOGUE_FIELDS

# Columns every backend needs; backends add their own (oracle/blind need the answers).
BASE_COLUMNS = ("id", "split", "task", "subset", "image_path", "image_id", "width", "height", "question")


def _open(path, mode="rb"):
    if is_url(path):
        import fsspec

        return fsspec.open(path, mode).open()
    return open(path, mode)


# The dataset's manifest.json (DatasetError naming it when missing or not a manifest).
read_manifest = dataset_files.read_manifest


def dataset_version(dataset, manifest=None) -> str:
    return dataset_files.dataset_version(manifest if manifest is not None else read_manifest(dataset))


def _splits_listed(manifest):
    paths = [entry.get("path") for entry in manifest.get("files", []) if isinstance(entry, dict)]
    return sorted({rel.split("/")[1] for rel in paths
                   if isinstance(rel, str) and rel.startswith("parquet/") and rel.count("/") >= 2})


def split_files(dataset, split, manifest=None, flag="--split"):
    """The split's Parquet shards as the manifest lists them (sizes checked); DatasetError when
    the manifest lists none."""
    manifest = read_manifest(dataset) if manifest is None else manifest
    files = dataset_files.split_parquet_files(dataset, split, manifest=manifest)
    if not files:
        splits = _splits_listed(manifest)
        raise DatasetError(f"{flag} {split}: {dataset_files.join(dataset, dataset_files.MANIFEST)} lists no "
                           f"parquet/{split}/ files (its splits: {', '.join(splits) or 'none'})")
    return files


def resolve_image_root(dataset, override=None, manifest=None) -> str:
    """--image-root, else manifest.json's input_root (dataset_files.image_root), else the dataset
    folder itself."""
    if override:
        return str(override)
    manifest = read_manifest(dataset) if manifest is None else manifest
    return dataset_files.image_root(dataset, manifest) or str(dataset)


def selected(row, wanted) -> bool:
    """Whether --tasks (parse_tasks' set; None selects all) selects a dialogue row."""
    return wanted is None or (row["task"], None) in wanted or (row["task"], row.get("subset")) in wanted


def shard_of(sample_id: str, num_shards: int) -> int:
    """Deterministic shard of a sample id (sha256, identical in every process and machine)."""
    if num_shards <= 1:
        return 0
    digest = hashlib.sha256(("infer\x1f" + sample_id).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % num_shards


def load_rows(dataset, split, columns=BASE_COLUMNS, tasks=None, limit=None, num_shards=1, shard_index=0,
              manifest=None):
    """Dialogue rows (dicts) of one split, in a deterministic global order.

    Selection: task filter, then the first `limit` rows (files in name order, rows in file order;
    identical for every shard), then this shard's part (sha256 of the id mod num_shards).
    A --tasks entry that matches no dialogue of the split is a UsageError naming it.
    """
    files = split_files(dataset, split, manifest)
    cols = [c for c in DIALOGUE_FIELDS if c in set(columns) | {"id", "task", "subset"}]
    wanted = parse_tasks(tasks)
    entries = {e: task_entry(e) for e in task_entries(tasks)} if tasks else {}
    unmatched = set(entries)
    rows, seen = [], 0
    shown = progress.Progress(f"sarchat infer: loading split {split}", len(files), "files")
    for path in files:
        with _reading(path), _open(path, "rb") as fh:
            table = pq.read_table(fh, columns=cols if limit is None or seen < limit else ["task", "subset"])
        for row in table.to_pylist():
            if not selected(row, wanted):
                continue
            if unmatched:
                unmatched -= {e for e in unmatched if selected(row, {entries[e]})}
            if limit is not None and seen >= limit:
                continue
            seen += 1
            if shard_of(row["id"], num_shards) == shard_index:
                rows.append(row)
        shown.update(1)
    shown.close()
    if unmatched:
        raise UsageError(f"--tasks {' '.join(sorted(unmatched))}: selects no dialogue of split {split!r} "
                         f"of {dataset}")
    return rows


def iter_tables(dataset, split, columns, manifest=None, flag="--split", batch_size=65536):
    """The split's rows as pyarrow RecordBatches of `columns` (those the files have), file by file."""
    for path in split_files(dataset, split, manifest, flag=flag):
        with _reading(path), _open(path, "rb") as fh:
            pf = pq.ParquetFile(fh)
            names = set(pf.schema_arrow.names)
            yield from pf.iter_batches(batch_size=batch_size, columns=[c for c in columns if c in names])


@contextlib.contextmanager
def _reading(path):
    """Turns a failed read of a dataset file into a DatasetError naming the file."""
    try:
        yield
    except (OSError, pa.ArrowException) as exc:
        raise DatasetError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc


# ---- images ---------------------------------------------------------------------------------

class ImageError(InputError):
    """A sample's image is missing or cannot be decoded (recorded per sample, retried next run)."""


# What a missing image's message tells the user to do: the rows' image_path is relative to the
# manifest's input_root unless --image-root says otherwise.
MISSING_IMAGE_HINT = "pass --image-root: the folder the rows' image_path is relative to"


class RefusedLocation(str):
    """An image location the image-path rule refused (dataset_files.image_file): reading it is the
    sample's ImageError, so the file is never opened nor sent."""
    reason = ""


def image_location(image_root, image_path) -> str:
    location, why = dataset_files.image_file(image_root, image_path)
    if why is None:
        return location
    refused = RefusedLocation(str(image_path))
    refused.reason = why
    return refused


def read_image_bytes(location) -> bytes:
    if isinstance(location, RefusedLocation):
        raise ImageError(location.reason)
    try:
        with _open(location, "rb") as fh:
            return fh.read()
    except FileNotFoundError as exc:
        raise ImageError(f"missing image: {location} ({MISSING_IMAGE_HINT})") from exc
    except OSError as exc:
        raise ImageError(f"cannot read image {location}: {exc}") from exc


def _check_size(location, width, height, expected_size, max_pixels):
    if expected_size is not None and (width, height) != tuple(int(v) for v in expected_size):
        raise ImageError(f"image {location} is {width}x{height} pixels, the dataset says "
                         f"{int(expected_size[0])}x{int(expected_size[1])}")
    if max_pixels and width * height > max_pixels:
        raise ImageError(f"image {location} has {width}x{height} = {width * height} pixels, more than "
                         f"--max-image-pixels {max_pixels}; not decoded")


def _open_image(data, location, expected_size, max_pixels):
    """The lazily opened PIL image (header read, no pixel decoded), its size checked."""
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(data))
        width, height = img.size
    except Exception as exc:  # PIL raises many types for corrupt data (DecompressionBombError too)
        raise ImageError(f"corrupt image {location}: {type(exc).__name__}: {exc}") from exc
    _check_size(location, width, height, expected_size, max_pixels)
    return img


def _load(img, location):
    try:
        img.load()
        return img
    except Exception as exc:
        raise ImageError(f"corrupt image {location}: {type(exc).__name__}: {exc}") from exc


def decode_image(data: bytes, location="", expected_size=None, max_pixels=DEFAULT_MAX_IMAGE_PIXELS):
    """A fully decoded PIL image; ImageError on a corrupt or truncated file, and, from the header
    alone (before any pixel is decoded), on an image whose size is not `expected_size` (the row's
    width, height) or that has more than `max_pixels` pixels."""
    return _load(_open_image(data, location, expected_size, max_pixels), location)


_MIME = {"JPEG": "image/jpeg", "PNG": "image/png"}


def encode_image(data: bytes, location="", pad_to_multiple: int = 0, expected_size=None,
                 max_pixels=DEFAULT_MAX_IMAGE_PIXELS, full_decode=True):
    """(data URL, (width, height)) of an image; see image_data_url. With full_decode=False a file
    sent as it is (whose decoded pixels are not needed) is checked at the least cost that still
    reads all of its data: a JPEG at 1/8 scale (libjpeg skips most of the inverse DCT, the
    entropy-coded data is read whole, so truncation and bad tables fail as in a full decode),
    anything else decoded whole. Not a header-only check: vLLM's server (0.x,
    ImageMediaIO.load_bytes) swallows the error of a failed decode inside exif_transpose and runs
    the model on a blank image, so what the client does not catch is answered, silently wrong
    (tests/test_real_vllm.py pins it)."""
    from PIL import Image

    img = _open_image(data, location, expected_size, max_pixels)
    size = w, h = img.size
    m = pad_to_multiple if pad_to_multiple and pad_to_multiple > 1 else 1
    # JPEG or PNG in 8-bit L/RGB(A)/P, already a multiple of m: the file's own bytes are sent
    if img.format in _MIME and img.mode in ("L", "RGB", "RGBA", "P") and w % m == 0 and h % m == 0:
        if not full_decode and img.format == "JPEG":
            img.draft(img.mode, (max(1, w // 8), max(1, h // 8)))
        _load(img, location)
        return f"data:{_MIME[img.format]};base64," + base64.b64encode(data).decode("ascii"), size
    _load(img, location)
    pw, ph = -(-w // m) * m, -(-h // m) * m
    if (pw, ph) != (w, h):
        src = img.convert("RGB") if img.mode not in ("L", "RGB") else img
        img = Image.new(src.mode, (pw, ph), 0)
        img.paste(src, (0, 0))
    if img.mode not in ("L", "RGB"):
        img = _to_8bit(img)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), size


def image_data_url(data: bytes, location="", pad_to_multiple: int = 0, expected_size=None,
                   max_pixels=DEFAULT_MAX_IMAGE_PIXELS, full_decode=True) -> str:
    """A base64 data URL for the image; decodes it first so a corrupt file fails here, per sample.

    JPEG and PNG in 8-bit L/RGB(A) are sent as they are; anything else (BMP, TIFF, 16-bit) is
    re-encoded as PNG. With pad_to_multiple, the image is padded (black) on the right and bottom to
    the next multiple, keeping the pixel coordinates of everything in it.
    """
    return encode_image(data, location, pad_to_multiple, expected_size, max_pixels, full_decode)[0]


# Bytes of encoded images an ImageCache keeps (the largest SARDet image, 1024x1024 PNG, is about
# 1.4 MB as base64): samples come grouped by image, so a few entries would do.
DEFAULT_IMAGE_CACHE_BYTES = 64 << 20


class ImageCache:
    """Encoded images by location, the least recently used dropped beyond `max_bytes` (the newest
    entry is always kept). The runner sends samples sorted by image_path, about 19 per image at
    SARDet's ratio, so all but the first sample of an image are hits: no read, no check, no base64,
    no encode. Each hit still checks the row's width and height against the image's. Failures are
    not cached (each sample gets its own error). Thread-safe, and threads asking for an image
    another thread is reading wait for that read instead of reading it again (the dialogues of one
    image reach the reading threads together); a file changed during a run is not read again."""

    def __init__(self, pad_to_multiple=0, max_pixels=DEFAULT_MAX_IMAGE_PIXELS, read_image=None,
                 encode=None, full_decode=True, max_bytes=DEFAULT_IMAGE_CACHE_BYTES, load=None, weigh=len):
        self.pad_to_multiple, self.max_pixels, self.full_decode = pad_to_multiple, max_pixels, full_decode
        self.read_image = read_image or read_image_bytes
        self.encode = encode or (lambda url: url)
        # load(data, location, expected_size) -> (value, (width, height)): by default the encoded data
        # URL; `weigh(value)` counts against max_bytes (e.g. 1 per entry, for a cache of decoded scenes)
        self.load, self.weigh, self.max_bytes = load or self._encoded, weigh, max_bytes
        self._entries = collections.OrderedDict()  # location -> (encoded, (width, height))
        self._bytes = 0
        self._lock = threading.Lock()
        self._reading = {}  # location -> Event set when the thread reading it is done
        self.hits = self.misses = 0

    def get(self, location, expected_size=None):
        """The cached value (encode(data URL)) of the image at `location`; ImageError as image_data_url
        (or `load`) raises it."""
        while True:
            with self._lock:
                entry = self._entries.get(location)
                if entry is not None:
                    self._entries.move_to_end(location)
                    self.hits += 1
                    break
                busy = self._reading.get(location)
                if busy is None:
                    self._reading[location] = threading.Event()
                    break
            busy.wait()  # then a hit, or (the read failed) this thread reads it for its own error
        if entry is not None:
            _check_size(location, *entry[1], expected_size, self.max_pixels)
            return entry[0]
        try:
            value, size = self.load(self.read_image(location), location, expected_size)
            with self._lock:  # no other thread reads this location meanwhile: it waits for this one
                self.misses += 1
                self._entries[location] = (value, size)
                self._bytes += self.weigh(value)
                while self._bytes > self.max_bytes and len(self._entries) > 1:
                    _, (old, _) = self._entries.popitem(last=False)
                    self._bytes -= self.weigh(old)
        finally:
            with self._lock:
                self._reading.pop(location).set()
        return value

    def _encoded(self, data, location, expected_size):
        url, size = encode_image(data, location, self.pad_to_multiple, expected_size, self.max_pixels,
                                 self.full_decode)
        return self.encode(url), size


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


def image_gray_array(data: bytes, location="", expected_size=None, max_pixels=DEFAULT_MAX_IMAGE_PIXELS):
    """The image as a float32 2-D amplitude array (channels averaged)."""
    import numpy as np

    img = decode_image(data, location, expected_size, max_pixels)
    if img.mode not in ("L", "I", "I;16", "F"):
        img = img.convert("L")
    return np.asarray(img, dtype=np.float32)


def row_size(row):
    """(width, height) the dataset row declares for its image."""
    return int(row["width"]), int(row["height"])

