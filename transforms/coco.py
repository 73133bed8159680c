"""Read and validate COCO detection JSON (docs/rules.md section 1). Pure functions, no Beam.

Two kinds of failure:
- the input as a whole is unusable (malformed JSON, missing top-level lists, no images):
  `InputError` with a message naming the file and the position or key;
- one record is bad: it becomes a *reject* {split, file, record, index, reason, detail}, counted by
  reason, and the rest of the file is used. Every annotation ends up either in an image's boxes or
  as a reject, so nothing is dropped silently.
"""
import codecs
import functools
import json
import operator
import os
import posixpath
from typing import Any, Optional, TypeGuard

import msgspec

from sarchat.transforms import decode, geometry
from sarchat.transforms.categories import canonical_category
# The input as a whole cannot be used; the message names the file and what is wrong.
from sarchat.transforms.errors import InputError  # noqa: F401 (raised here, caught by callers as coco.InputError)


def load_json(data, source: str):
    """Parse bytes/str as JSON (the one decoding layer, transforms/decode.py); a syntax error names
    the file, line, column and offset; a lone surrogate or nesting too deep names the file too."""
    try:
        return decode.loads(data, finite=False)
    except decode.Problem as p:
        raise p.as_input_error(source) from None


def check_structure(data, source: str):
    """Fail fast when the file cannot be a COCO detection file at all."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: top level must be a JSON object with images, annotations and categories")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise InputError(f"{source}: missing required key '{key}'")
        if not isinstance(data[key], list):
            raise InputError(f"{source}: '{key}' must be a list, got {type(data[key]).__name__}")
    if not data["images"]:
        raise InputError(f"{source}: the split is empty ('images' has no entries)")
    if not data["categories"]:
        raise InputError(f"{source}: 'categories' has no entries")


def _reject(split, source, record, index, reason, detail=""):
    return {"split": split, "file": source, "record": record, "index": index, "reason": reason, "detail": detail}


_INT64_MIN, _INT64_MAX = -2**63, 2**63 - 1


def _is_int(v) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def safe_relative_path(file_name):
    """The file name as a clean relative POSIX path, or None when it is absolute, climbs out or holds
    a NUL byte (which the OS would cut the path at, so the name read is not the name checked)."""
    if not isinstance(file_name, str) or not file_name.strip() or "\x00" in file_name:
        return None
    name = file_name.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or "://" in name:
        return None
    norm = posixpath.normpath(name)
    if norm == ".." or norm.startswith("../") or "/../" in f"/{norm}/":
        return None
    return norm


def local_image_folder(root, image_dir):
    """The split's image folder on the local disk, resolved (symlinks followed), or None when the
    dataset lives on an object store (gs://, ...), where there are no symlinks to follow."""
    if "://" in str(root) or "://" in str(image_dir):
        return None
    return os.path.realpath(os.path.join(str(root), image_dir) if image_dir else str(root))


def escapes_folder(folder_real, rel, resolved_dirs=None):
    """True when folder/rel, with every symlink on the way resolved, lies outside `folder_real`
    (an already resolved folder). A file that does not exist resolves to itself: not outside.

    `resolved_dirs` ({rel's folder: that folder resolved}, kept by the caller for one pass over a
    file) resolves each folder once: realpath goes left to right, so resolving the folder and then
    the name in it gives what resolving the whole path gives, with one lstat per name."""
    if resolved_dirs is None:
        target = os.path.realpath(os.path.join(folder_real, rel))
    else:
        head, name = posixpath.split(rel)
        parent = resolved_dirs.get(head)
        if parent is None:
            parent = resolved_dirs[head] = os.path.realpath(os.path.join(folder_real, head)) if head else folder_real
        path = os.path.join(parent, name)
        target = os.path.realpath(path) if os.path.islink(path) else path
    return not (target == folder_real or target.startswith(folder_real.rstrip(os.sep) + os.sep))


def parse_coco(data, source: str, split: str, image_dir: str, image_folder=None):
    """COCO dict -> (images, rejects).

    images: [{split, image_id, file_name, image_path, width, height,
              boxes: [{ann_id, category, bbox}]}] in the file's image order, boxes in annotation
              order; only images with at least one valid box.
    rejects: one dict per dropped category, image or annotation, with its reason.
    `image_dir` is the image folder relative to the dataset root (image_path = image_dir/file_name).
    `image_folder`, the resolved local image folder (local_image_folder), makes an image whose file
    resolves outside it (a symlink leading out) a reject "file_name_outside_image_root"; the
    generator never opens images, so this is the one place such a file would otherwise pass.

    The whole file in one piece: the generate pipeline runs the same three steps on pieces of the
    file (read_image_records / read_annotation_records per piece, assemble per shard), so this is
    the reference its sharded read is tested against.
    """
    check_structure(data, source)
    categories, rejects = read_categories(data["categories"], split, source)
    image_records, image_rejects = read_image_records(data["images"], 0, split, source, image_folder)
    ann_records, ann_rejects = read_annotation_records(data["annotations"], 0, split, source)
    duplicates = duplicate_annotation_ids([r.ann_id for r in ann_records], [r.index for r in ann_records])
    images, more_image_rejects, more_ann_rejects, empty = assemble(
        split, source, image_dir, categories, image_records, ann_records, duplicates)
    by_index = lambda r: r["index"]  # noqa: E731 (rejects in file order, as one pass gives them)
    rejects += sorted(image_rejects + more_image_rejects, key=by_index)
    rejects += sorted(ann_rejects + more_ann_rejects, key=by_index)
    return images, rejects + empty


# --- The read in pieces -------------------------------------------------------------------------
# Each step sees only what it needs: a record's own checks are done where its piece of the file is
# parsed (read_*_records); what needs other records (duplicate ids, an annotation's image, images
# left without boxes) is done per shard (assemble), where an image and every annotation naming it
# meet because both are keyed by the image id. Duplicate annotation ids are the one check across
# shards: duplicate_annotation_ids over every piece's (id, index) pairs, handed to each shard.

# A record is a msgspec Struct: built and read as fast as a tuple and smaller (72 bytes for an image
# record against 96; gc=False: its fields never refer back to it, so the cycle collector need not
# track it). Beam's coder would pickle it, one at a time, so records cross a shuffle as plain tuples
# (astuple) and are built again from them (Struct(*fields)), a C call each way.
class ImageRecord(msgspec.Struct, frozen=True, gc=False):
    """An entry of the `images` array with an integer id (read_image_records)."""
    index: int  # its position in the array
    image_id: int
    reason: Optional[str]  # None for a usable image, else why it is bad; assemble applies it only when
    detail: Optional[str]  # this entry is the first with its id (a later one is a duplicate whatever it holds)
    file_name: Optional[str]  # the clean relative path (safe_relative_path); None when the size is bad or it is unsafe
    width: Any
    height: Any


class AnnotationRecord(msgspec.Struct, frozen=True, gc=False):
    """An object of the `annotations` array with an integer id (read_annotation_records); the fields
    other than the id as found, for assemble to judge."""
    index: int  # its position in the array
    ann_id: int
    crowd_or_ignore: bool
    image_id: Any
    category_id: Any
    bbox: Any


_by_index = operator.attrgetter("index")


def read_categories(categories, split, source):
    """The categories list -> ({category id: canonical name or None}, rejects)."""
    out, rejects = {}, []
    for i, cat in enumerate(categories):
        if not isinstance(cat, dict) or not _is_int(cat.get("id")):
            rejects.append(_reject(split, source, f"category #{i}", i, "malformed_category"))
            continue
        if cat["id"] in out:
            rejects.append(_reject(split, source, f"category {cat['id']}", i, "duplicate_category_id"))
            continue
        out[cat["id"]] = canonical_category(cat.get("name"))
        if out[cat["id"]] is None:
            rejects.append(_reject(split, source, f"category {cat['id']}", i, "unknown_category_name", str(cat.get("name"))))
    return out, rejects


def read_image_records(images, first_index, split, source, image_folder=None):
    """Entries of the `images` array starting at position `first_index` -> (an ImageRecord of each
    entry with an integer id, rejects: the entries without one, malformed_image)."""
    records, rejects, resolved_dirs = [], [], {}
    for i, img in enumerate(images, first_index):
        if not isinstance(img, dict) or not _is_int(img.get("id")):
            rejects.append(_reject(split, source, f"image #{i}", i, "malformed_image", "id must be an integer"))
            continue
        if not _INT64_MIN <= img["id"] <= _INT64_MAX:  # the dialogues' image_id column is int64
            rejects.append(_reject(split, source, f"image {img['id']}", i, "malformed_image", "id must fit in 64 bits"))
            continue
        w, h = img.get("width"), img.get("height")
        reason = detail = rel = None
        if not (_is_int(w) and _is_int(h) and 0 < w <= _INT64_MAX and 0 < h <= _INT64_MAX):
            reason, detail = "bad_image_size", f"width={w!r} height={h!r}"
        else:
            rel = safe_relative_path(img.get("file_name"))
            if rel is None:
                reason, detail = "unsafe_file_name", str(img.get("file_name"))
            elif image_folder is not None and escapes_folder(image_folder, rel, resolved_dirs):
                reason, detail = "file_name_outside_image_root", rel
        records.append(ImageRecord(i, img["id"], reason, detail, rel, w, h))
    return records, rejects


def read_annotation_records(annotations, first_index, split, source):
    """Entries of the `annotations` array starting at `first_index` -> (an AnnotationRecord of each
    object with an integer id, rejects: the rest, malformed_annotation)."""
    records, rejects = [], []
    for i, ann in enumerate(annotations, first_index):
        if not isinstance(ann, dict):
            rejects.append(_reject(split, source, f"annotation #{i}", i, "malformed_annotation"))
            continue
        ann_id = ann.get("id")
        if not _is_int(ann_id):
            record = f"annotation {ann_id}" if ann_id is not None else f"annotation #{i}"
            rejects.append(_reject(split, source, record, i, "malformed_annotation", "id must be an integer"))
            continue
        crowd = ann.get("iscrowd") == 1 or ann.get("ignore") == 1
        records.append(AnnotationRecord(i, ann_id, crowd, ann.get("image_id"), ann.get("category_id"), ann.get("bbox")))
    return records, rejects


def image_key(image_id):
    """The integer an annotation's image_id looks up, or None when it can match no image.

    Lookups go through Python dicts keyed by integer ids, where 1.0 and True find image 1 (as an
    image that was rejected: 'image_rejected'); the annotation must be sent to that image's shard
    so that its shard sees the same thing one pass over the whole file sees."""
    if isinstance(image_id, int) or (isinstance(image_id, float) and image_id.is_integer()):
        return int(image_id)
    return None


def duplicate_annotation_ids(ids, indices):
    """{annotation id: index of its first entry} for each id held by more than one entry.

    `ids` and `indices` are parallel sequences (lists or numpy arrays, from any number of
    pieces, in any order). Sorting (numpy) rather than a set of every id keeps this to two arrays
    of the annotation count, the only state of the read that grows with the whole file."""
    import numpy as np

    ids = np.asarray(ids) if len(ids) else np.zeros(0, dtype=np.int64)
    indices = np.asarray(indices, dtype=np.int64)
    if ids.dtype.kind not in "iu":  # ids beyond 64 bits: Python ints, still sortable
        ids = np.asarray(ids, dtype=object)
    if ids.size < 2:
        return {}
    by_index = np.argsort(indices, kind="stable")
    ids, indices = ids[by_index], indices[by_index]
    # return_index sorts stably: the index of each id's first entry in file order
    unique, first, counts = np.unique(ids, return_index=True, return_counts=True)
    return {int(unique[k]): int(indices[first[k]]) for k in np.flatnonzero(counts > 1)}


def assemble(split, source, image_dir, categories, image_records, annotation_records, duplicates):
    """The records of one shard (or of the whole file) -> (images, image rejects, annotation
    rejects, rejects of images left without boxes); the checks that need other records.

    `categories`: read_categories' map; `duplicates`: duplicate_annotation_ids of the whole split.
    Records may come in any order (pieces arrive as the runner likes); they are taken in file
    order, so the first entry of an id wins and boxes keep the annotation order."""
    reject = functools.partial(_reject, split, source)
    images, bad_images, image_rejects = _first_images(reject, split, image_dir, image_records)
    ann_rejects = _add_boxes(reject, images, bad_images, categories, annotation_records, duplicates)
    kept = [image for image in images.values() if image["boxes"]]  # in file order, as inserted
    empty = [reject(f"image {image_id}", -1, "image_without_valid_boxes")
             for image_id, image in images.items() if not image["boxes"]]
    return kept, image_rejects, ann_rejects, empty


def _first_images(reject, split, image_dir, image_records):
    """-> ({image id: image without boxes yet} of the usable first entries, {image id: reason} of
    the bad ones, rejects)."""
    images, bad_images, rejects = {}, {}, []
    for r in sorted(image_records, key=_by_index):
        record = f"image {r.image_id}"
        if r.image_id in images or r.image_id in bad_images:
            rejects.append(reject(record, r.index, "duplicate_image_id"))
        elif r.reason:
            bad_images[r.image_id] = r.reason
            rejects.append(reject(record, r.index, r.reason, r.detail))
        else:
            images[r.image_id] = {
                "split": split,
                "image_id": r.image_id,
                "file_name": r.file_name,
                "image_path": posixpath.join(image_dir, r.file_name) if image_dir else r.file_name,
                "width": r.width,
                "height": r.height,
                "boxes": [],
            }
    return images, bad_images, rejects


def _add_boxes(reject, images, bad_images, categories, annotation_records, duplicates):
    """Each valid annotation as a box of its image; -> the rejects of the others."""
    rejects = []
    for a in sorted(annotation_records, key=_by_index):
        record = f"annotation {a.ann_id}"
        first = duplicates.get(a.ann_id)
        if first is not None and first != a.index:
            rejects.append(reject(record, a.index, "duplicate_annotation_id"))
            continue
        if a.crowd_or_ignore:
            rejects.append(reject(record, a.index, "crowd_or_ignore"))
            continue
        key = image_key(a.image_id)
        if key is not None and key in bad_images:
            rejects.append(reject(record, a.index, "image_rejected", bad_images[key]))
            continue
        image = images.get(a.image_id) if _is_int(a.image_id) else None  # True would find image 1
        if image is None:
            rejects.append(reject(record, a.index, "unknown_image", f"image_id={a.image_id!r}"))
            continue
        category = categories.get(a.category_id) if _is_int(a.category_id) else None
        if category is None:
            rejects.append(reject(record, a.index, "unknown_category", f"category_id={a.category_id!r}"))
            continue
        reason = geometry.invalid_box_reason(a.bbox, image["width"], image["height"])
        if reason:
            rejects.append(reject(record, a.index, reason, json.dumps(a.bbox, default=str)[:200]))
            continue
        image["boxes"].append({"ann_id": a.ann_id, "category": category, "bbox": [float(v) for v in a.bbox]})
    return rejects


# --- The launcher's pre-flight: structure, counts and piece boundaries without a full parse ------
# msgspec's decoder checks the whole file's syntax and finds every array entry (msgspec.Raw: a
# zero-copy view of the entry's bytes) in C, without building a Python object per entry: about
# 17x faster than json.loads and no memory beyond the file's bytes and one small object per entry.
# Anything it does not accept cleanly goes to the stdlib path (load_json + check_structure), so
# every error message, and what json.loads accepts (NaN, lone surrogates), stays exactly as before.

# Bytes of JSON per piece: one worker parses a piece at a time (about ten times this in Python
# objects), so a worker's memory does not grow with the file.
PIECE_BYTES = 4 << 20
PIECE_ARRAYS = ("images", "annotations")


def preflight(data: bytes, source: str, piece_bytes=None, split_into_pieces=True):
    """Check that `data` is a usable COCO file -> {"images": n, "annotations": n, "categories":
    list, "pieces": [piece, ...] or None}.

    A piece is {"array": "images" or "annotations", "first": index of its first entry, "count":
    entries, "start", "end": byte offsets of its first entry's start and last entry's end}; the
    pieces of an array cover it in order. `pieces` is None when the file has to be read whole
    (a file only json.loads accepts, or split_into_pieces=False: a compressed file,
    where byte offsets of the decompressed text cannot be read without decompressing it all).
    Raises InputError, as load_json and check_structure do, when the file is unusable."""
    fast = _index(data, piece_bytes or PIECE_BYTES) if split_into_pieces else None
    if fast is not None:
        return fast
    parsed = load_json(data, source)
    check_structure(parsed, source)
    return {"images": len(parsed["images"]), "annotations": len(parsed["annotations"]),
            "categories": parsed["categories"], "pieces": None}


def load_piece(text: bytes, source: str, piece):
    """The bytes of a piece (from its "start" to its "end") -> its entries, as json.loads reads them."""
    where = f"{piece['array']} entries {piece['first']}..{piece['first'] + piece['count'] - 1}"
    try:
        entries = decode.loads(b"[" + bytes(text) + b"]", finite=False)
    except decode.Problem as e:
        if e.reason in ("lone_surrogate", "too_deeply_nested"):
            raise e.as_input_error(f"{source}: {where}") from None
        raise InputError(f"{source}: {where} are not the JSON the pre-flight read ({e.detail}); "
                         "was the file changed during the run?") from None
    if len(entries) != piece["count"]:
        raise InputError(f"{source}: {where}: {len(entries)} entries where the pre-flight found "
                         f"{piece['count']}; was the file changed during the run?")
    return entries


class _TopLevel(msgspec.Struct):  # other keys (info, licenses) are checked for syntax, skipped
    images: list[msgspec.Raw]
    annotations: list[msgspec.Raw]
    categories: list[msgspec.Raw]


_decode_top_level = msgspec.json.Decoder(_TopLevel).decode


def _index(data, piece_bytes):
    """preflight's fast path, or None for the stdlib path to decide (and name the error)."""
    if not isinstance(data, bytes) or not _is_utf8(data):
        return None  # msgspec does not check UTF-8 inside the entries it skips
    try:
        top = _decode_top_level(data)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):  # too deep: the stdlib path names the file
        return None
    if not top.images or not top.categories:
        return None
    try:
        categories = [decode.loads(bytes(c), finite=False) for c in top.categories]
    except decode.Problem:
        return None
    pieces = []
    for array in PIECE_ARRAYS:
        found = array_pieces(data, array, getattr(top, array), piece_bytes)
        if found is None:
            return None
        pieces += found
    return {"images": len(top.images), "annotations": len(top.annotations), "categories": categories,
            "pieces": pieces}


def array_pieces(data, array, entries, piece_bytes):
    """Entries of one array (msgspec.Raw views into `data`) -> pieces of about `piece_bytes`, or
    None when an entry's view is not where it claims to be in `data` (checked at every boundary)."""
    import numpy as np

    if not entries:
        return []
    lengths = np.fromiter(map(len, entries), dtype=np.int64, count=len(entries))
    ends = np.cumsum(lengths)
    cuts = np.searchsorted(ends, np.arange(piece_bytes, int(ends[-1]), piece_bytes), side="left") + 1
    bounds = sorted({0, len(entries), *(int(c) for c in cuts if 0 < c < len(entries))})
    base = np.frombuffer(data, dtype=np.uint8).ctypes.data

    def offset(entry):
        at = np.frombuffer(entry, dtype=np.uint8).ctypes.data - base
        ok = 0 <= at and at + len(entry) <= len(data) and data[at:at + len(entry)] == bytes(entry)
        return at if ok else None

    pieces = []
    for a, b in zip(bounds, bounds[1:]):
        start, last = offset(entries[a]), offset(entries[b - 1])
        if start is None or last is None:
            return None
        pieces.append({"array": array, "first": a, "count": b - a, "start": start, "end": last + len(entries[b - 1])})
    return pieces


def _is_utf8(data, chunk=1 << 24):
    """True when `data` is valid UTF-8; decoded a chunk at a time, so no copy of the whole file."""
    if data.isascii():  # most annotation files; a C scan far faster than decoding
        return True
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(data)
    try:
        for k in range(0, len(data), chunk):
            decoder.decode(view[k:k + chunk])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True
