"""The one place that reads which files make up a generated dataset: its manifest.json.

`sarchat generate` writes manifest.json last and removes it first (docs/rules.md section 10), so a folder
without one is incomplete or not ours, and no command reads it as a dataset. Consumers (stats,
infer, score, demo, the RunInference pipeline) take the list of files from the manifest, never from
a folder listing, and a listed file whose size differs from the manifest is refused: a shard left
by an earlier run with another shard count, or a file cut short, cannot slip into the numbers.
Local paths and any scheme of Beam's FileSystems (gs://, ...) work, through fileio.
"""
import os
import posixpath

from sarchat.transforms import decode
from sarchat.transforms.errors import DatasetError
from sarchat.transforms import fileio
from sarchat.transforms.fileio import is_local, local_path

MANIFEST = "manifest.json"


def is_url(path) -> bool:
    return "://" in str(path)


def join(root, rel):
    root = str(root)
    if is_url(root):
        return root.rstrip("/") + "/" + rel
    return os.path.join(root, *rel.split("/"))


def _read(path) -> bytes:
    if is_url(path):
        return fileio.read_bytes(path)
    with open(path, "rb") as f:
        return f.read()


def _size(path):
    if is_url(path):
        return next(iter(fileio.match(path, quiet=True).values()), None)
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def not_a_folder(path) -> str:
    """Why a local `path` named as a folder is not one: "no such folder" or "a file, not a folder"."""
    return "a file, not a folder" if os.path.exists(path) else "no such folder"


def read_manifest(dataset) -> dict:
    """The dataset's manifest.json as a dict; DatasetError naming the file when it is missing, not
    JSON or not an object with a `files` list."""
    path = join(dataset, MANIFEST)
    try:
        raw = _read(path)
    except FileNotFoundError:
        raise DatasetError(f"{dataset} has no {MANIFEST}: not a generated dataset, or its generation "
                           "did not finish (the manifest is written last)") from None
    except NotADirectoryError:
        raise DatasetError(f"{dataset} is {not_a_folder(dataset)}: give a `sarchat generate` output folder") from None
    except Exception as exc:  # permission, object store errors
        raise DatasetError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None
    try:
        manifest = decode.loads(raw)
    except decode.Problem as exc:
        raise DatasetError(f"{path} is not valid JSON ({exc.detail})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        raise DatasetError(f"{path} is not a dataset manifest (an object with a 'files' list)")
    return manifest


def listed_files(dataset, prefix, suffix="", manifest=None):
    """Full paths of the manifest's files whose path starts with `prefix` (e.g. "parquet/test/"),
    sorted; each checked to exist with the size the manifest records."""
    manifest = read_manifest(dataset) if manifest is None else manifest
    out = []
    for entry in manifest["files"]:
        rel = entry.get("path") if isinstance(entry, dict) else None
        if not isinstance(rel, str) or not rel.startswith(prefix) or not rel.endswith(suffix):
            continue
        if rel.startswith("/") or ".." in posixpath.normpath(rel).split("/"):
            raise DatasetError(f"{join(dataset, MANIFEST)} lists a path outside the dataset: {rel!r}")
        path = join(dataset, rel)
        size = _size(path)
        if size is None:
            raise DatasetError(f"{path} is listed in {MANIFEST} but missing")
        if entry.get("bytes") is not None and size != entry["bytes"]:
            raise DatasetError(f"{path} has {size} bytes, {MANIFEST} says {entry['bytes']}: "
                               "the file changed after generation; regenerate the dataset")
        out.append(path)
    return sorted(out)


def split_parquet_files(dataset, split, manifest=None):
    """The Parquet shards of one split, as the manifest lists them."""
    return listed_files(dataset, f"parquet/{split}/", ".parquet", manifest=manifest)


def required_split_parquet_files(dataset, split, manifest=None):
    """split_parquet_files, or DatasetError naming the manifest when it lists none for the split."""
    files = split_parquet_files(dataset, split, manifest=manifest)
    if not files:
        raise DatasetError(f"{join(dataset, MANIFEST)} lists no parquet/{split}/ files "
                           f"(no split {split!r}, or the dataset was generated without --formats parquet)")
    return files


# The manifest key saying its relative local paths (input_root, inputs.<split>.path) hang from the
# dataset folder, so they resolve from any working folder; generate writes it when --input was relative.
RELATIVE_TO = "paths_relative_to"


def recorded_path(dataset, manifest, path):
    """A path the manifest records, as a path that works from here: one stored relative to the
    dataset folder (manifest[RELATIVE_TO] == "dataset") is joined with it; others are as stored."""
    if not path:
        return path
    path = str(path)
    if (manifest or {}).get(RELATIVE_TO) == "dataset" and not is_url(path) and not os.path.isabs(path):
        return os.path.normpath(join(dataset, path)) if not is_url(dataset) else join(dataset, path)
    return path


def image_root(dataset, manifest, override=None):
    """Where the rows' image_path is relative to: --image-root, else the manifest's `input_root`
    (relative to the dataset folder when the manifest says so; in older manifests a relative one is
    tried from the current folder, then from the dataset folder), else None."""
    if override:
        return str(override)
    if not manifest:
        return None
    root = manifest.get("input_root") or (manifest.get("config") or {}).get("input_root")
    if not root:
        return None
    root = recorded_path(dataset, manifest, root)
    if is_url(root) or os.path.isabs(root) or os.path.isdir(root):
        return root
    candidate = os.path.join(str(dataset), root)
    return candidate if os.path.isdir(candidate) else root


def image_file(root, image_path):
    """(location, None) of a row's image under `root`, or (None, why) when the rule of docs/rules.md
    section 1 says no: the one image-path rule of generate (`unsafe_file_name`,
    `file_name_outside_image_root`) applied again wherever an image is opened (infer, the report's
    samples, the lmms-eval hooks), because the folder may have changed since: an absolute path, a
    `..`, or (on a local disk) a file that resolves through symlinks outside the image root is not
    read. Without a root the path is used as it is (ad-hoc rows)."""
    if not isinstance(image_path, str) or not image_path or "\x00" in image_path:
        return None, f"image path {image_path!r} is not a file name"
    if not root:
        return image_path, None
    root = str(root)
    if is_url(image_path) or os.path.isabs(image_path) or ".." in image_path.replace("\\", "/").split("/"):
        return None, f"image path {image_path!r} lies outside the image root {root}"
    location = join(root, image_path)
    if not is_local(root):
        return location, None
    local_root = local_path(root)
    real_root = os.path.realpath(local_root)
    real = os.path.realpath(os.path.join(local_root, image_path))
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        return None, f"image {location} resolves to {real}, outside the image root {root}; not read"
    return location, None


def dataset_version(manifest) -> str:
    """The dataset version of docs/rules.md section 10: the manifest's `dataset_version`, else its
    `config_hash` (manifests written before the version field existed)."""
    return str(manifest.get("dataset_version") or manifest.get("config_hash") or "")
