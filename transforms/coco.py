"""Read and validate COCO detection JSON (SPEC section 1). Pure functions, no Beam.

Two kinds of failure:
- the input as a whole is unusable (malformed JSON, missing top-level lists, no images):
  `InputError` with a message naming the file and the position or key;
- one record is bad: it becomes a *reject* {split, file, record, index, reason, detail}, counted by
  reason, and the rest of the file is used. Every annotation ends up either in an image's boxes or
  as a reject, so nothing is dropped silently.
"""
import json
import os
import posixpath

from sarchat.transforms import geometry
from sarchat.transforms.categories import canonical_category
# The input as a whole cannot be used; the message names the file and what is wrong.
from sarchat.transforms.errors import InputError  # noqa: F401 (raised here, caught by callers as coco.InputError)


def load_json(data, source: str):
    """Parse bytes/str as JSON; a syntax error names the file, line, column and offset."""
    try:
        if isinstance(data, bytes):
            data = data.decode("utf-8")
        return json.loads(data)
    except UnicodeDecodeError as e:
        raise InputError(f"{source}: not UTF-8 text (byte {e.start}): {e.reason}") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{source}: malformed JSON at line {e.lineno} column {e.colno} (char {e.pos}): {e.msg}") from None


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


def _is_int(v):
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


def escapes_folder(folder_real, rel):
    """True when folder/rel, with every symlink on the way resolved, lies outside `folder_real`
    (an already resolved folder). A file that does not exist resolves to itself: not outside."""
    target = os.path.realpath(os.path.join(folder_real, rel))
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
    """
    check_structure(data, source)
    rejects = []

    categories = {}
    for i, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or not _is_int(cat.get("id")):
            rejects.append(_reject(split, source, f"category #{i}", i, "malformed_category"))
            continue
        if cat["id"] in categories:
            rejects.append(_reject(split, source, f"category {cat['id']}", i, "duplicate_category_id"))
            continue
        categories[cat["id"]] = canonical_category(cat.get("name"))
        if categories[cat["id"]] is None:
            rejects.append(_reject(split, source, f"category {cat['id']}", i, "unknown_category_name", str(cat.get("name"))))

    images = {}
    order = []
    bad_images = {}
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or not _is_int(img.get("id")):
            rejects.append(_reject(split, source, f"image #{i}", i, "malformed_image", "id must be an integer"))
            continue
        image_id = img["id"]
        record = f"image {image_id}"
        if image_id in images or image_id in bad_images:
            rejects.append(_reject(split, source, record, i, "duplicate_image_id"))
            continue
        w, h = img.get("width"), img.get("height")
        reason = None
        if not (_is_int(w) and _is_int(h) and w > 0 and h > 0):
            reason, detail = "bad_image_size", f"width={w!r} height={h!r}"
        else:
            rel = safe_relative_path(img.get("file_name"))
            if rel is None:
                reason, detail = "unsafe_file_name", str(img.get("file_name"))
            elif image_folder is not None and escapes_folder(image_folder, rel):
                reason, detail = "file_name_outside_image_root", rel
        if reason:
            bad_images[image_id] = reason
            rejects.append(_reject(split, source, record, i, reason, detail))
            continue
        images[image_id] = {
            "split": split,
            "image_id": image_id,
            "file_name": rel,
            "image_path": posixpath.join(image_dir, rel) if image_dir else rel,
            "width": w,
            "height": h,
            "boxes": [],
        }
        order.append(image_id)

    seen_ann = set()
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            rejects.append(_reject(split, source, f"annotation #{i}", i, "malformed_annotation"))
            continue
        ann_id = ann.get("id")
        record = f"annotation {ann_id}" if ann_id is not None else f"annotation #{i}"
        if not _is_int(ann_id):
            rejects.append(_reject(split, source, record, i, "malformed_annotation", "id must be an integer"))
            continue
        if ann_id in seen_ann:
            rejects.append(_reject(split, source, record, i, "duplicate_annotation_id"))
            continue
        seen_ann.add(ann_id)
        if ann.get("iscrowd") == 1 or ann.get("ignore") == 1:
            rejects.append(_reject(split, source, record, i, "crowd_or_ignore"))
            continue
        image_id = ann.get("image_id")
        if image_id in bad_images:
            rejects.append(_reject(split, source, record, i, "image_rejected", bad_images[image_id]))
            continue
        image = images.get(image_id) if _is_int(image_id) else None
        if image is None:
            rejects.append(_reject(split, source, record, i, "unknown_image", f"image_id={image_id!r}"))
            continue
        category = categories.get(ann.get("category_id")) if _is_int(ann.get("category_id")) else None
        if category is None:
            rejects.append(_reject(split, source, record, i, "unknown_category", f"category_id={ann.get('category_id')!r}"))
            continue
        bbox = ann.get("bbox")
        reason = geometry.invalid_box_reason(bbox, image["width"], image["height"])
        if reason:
            rejects.append(_reject(split, source, record, i, reason, _short(bbox)))
            continue
        image["boxes"].append({"ann_id": ann_id, "category": category, "bbox": [float(v) for v in bbox]})

    kept = []
    for image_id in order:
        image = images[image_id]
        if image["boxes"]:
            kept.append(image)
        else:
            rejects.append(_reject(split, source, f"image {image_id}", -1, "image_without_valid_boxes"))
    return kept, rejects


def _short(value):
    return json.dumps(value, default=str)[:200]
