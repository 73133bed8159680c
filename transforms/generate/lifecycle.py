"""The output lifecycle of `sarchat generate` (docs/rules.md section 10): what a rerun removes, and in which order.

A rerun into a folder first removes the old `manifest.json` (from then on the folder is incomplete
and no command reads it as a dataset), then every file its predecessor wrote as that manifest lists
them, then any file of our own naming that a killed run may have left unlisted (dialogue shards of
any shard count, swift and reject part files); the run writes its new manifest last. So a rerun with another
shard count, seed or --formats never leaves old shards beside the new manifest, and a rerun killed
half-way leaves a folder without a manifest, never an old manifest over a mix of old and new files.

Only our own files are ever removed: a manifest that is not a `sarchat generate` manifest makes
the run refuse the folder, and a listed path outside our folders (absolute, with `..`, or under
a folder we never write) is skipped. The decisions are pure functions of paths (`removable`,
`is_generated_name`); `clear_previous_output` does the I/O through fileio, so local
paths and object stores (gs://, where "folders" are only name prefixes) behave the same.
"""
import json
import posixpath
import re

from sarchat.transforms import fileio
from sarchat.transforms.errors import OutputError
from sarchat.transforms.generate.dataset_card import CARD_FILE, is_generated_card
from sarchat.transforms.generate.finalize import relative

MANIFEST = "manifest.json"
GENERATOR = "sarchat-bench"
# Top-level folders a generate run writes into; nothing outside them is ever removed.
OWN_FOLDERS = ("parquet", "tfrecord", "swift", "authors", "rejects")
# dialogues-<shard>-of-<count>.<ext> under parquet/<split>/ or tfrecord/<split>/ (pipeline.write_dialogue_files).
_SHARD_RE = re.compile(r"(parquet/[^/]+/dialogues-\d{5}-of-\d{5}\.parquet|tfrecord/[^/]+/dialogues-\d{5}-of-\d{5}\.tfrecord(?:\.gz)?)")
# swift/_parts/<split>/<task file>-<shard>.jsonl (pipeline.swift_part_path) and
# rejects/_parts/<split>/rejects-<shard>.jsonl (pipeline.WriteShardFn), joined and removed by the
# finalize step; a killed run leaves them behind.
_PART_RE = re.compile(r"(?:swift|rejects)/_parts/[^/]+/[a-z_]+-\d{5}\.jsonl")


def is_generated_name(rel: str) -> bool:
    """A path (relative to the output root) that only a generate run writes: a dialogue shard of
    any shard count, a swift or a reject part file."""
    return bool(_SHARD_RE.fullmatch(rel) or _PART_RE.fullmatch(rel))


def safe_listed_path(rel) -> bool:
    """A path from an old manifest that may be removed: relative, clean, inside one of our folders."""
    if not isinstance(rel, str) or "\\" in rel or "\x00" in rel:
        return False
    # a clean path (normpath leaves it as it is) can hold ".." only at its start, never in one of our folders
    return posixpath.normpath(rel) == rel and rel.split("/", 1)[0] in OWN_FOLDERS and "/" in rel


def check_own_manifest(raw: bytes, where: str) -> dict:
    """The old manifest as a dict when it is one of ours; OutputError naming it otherwise (we never
    overwrite or delete a file we did not write)."""
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise OutputError(f"{where} exists and is not a manifest of sarchat generate (not JSON: {exc}); "
                          "refusing to write over it: remove it or choose another --output") from None
    if not isinstance(manifest, dict) or manifest.get("generator") != GENERATOR or not isinstance(manifest.get("files"), list):
        raise OutputError(f"{where} exists and is not a manifest of sarchat generate; refusing to write over "
                          "its folder: choose another --output")
    return manifest


def removable(old_manifest, present):
    """Relative paths to remove before a rerun: what the old manifest lists (when safe) plus every
    present file of our own naming. `present` is the relative paths found under our folders."""
    entries = old_manifest.get("files", []) if old_manifest else []
    listed = {e["path"] for e in entries if isinstance(e, dict) and safe_listed_path(e.get("path"))}
    return sorted(listed | {rel for rel in present if is_generated_name(rel)})


def parent_folders(removed):
    """The folders (relative, deepest first) that held the removed files, up to and including our
    top-level folders: the ones a rerun may remove when they are left empty."""
    folders = set()
    for rel in removed:
        parts = rel.split("/")[:-1]
        while parts and parts[0] in OWN_FOLDERS:
            folders.add("/".join(parts))
            parts = parts[:-1]
    return sorted(folders, key=lambda f: (-f.count("/"), f))


def _remove_emptied_folders(output, removed):
    """Local outputs only (an object store has no folders): remove the folders our deletions left
    empty, so a rerun with fewer --formats leaves no empty format folder behind. os.rmdir refuses a
    folder that still holds anything, so nothing of the user's can go."""
    import os

    if "://" in output:
        return
    for rel in parent_folders(removed):
        try:
            os.rmdir(os.path.join(output, *rel.split("/")))
        except OSError:  # not empty (or already gone): keep it
            pass


def _present(output):
    """Relative paths of the files under our folders of `output` (an empty list where there are none)."""
    out = []
    for folder in OWN_FOLDERS:
        # a path not under `output` stays as it is, which no name of ours matches (is_generated_name)
        out += [relative(output, path.replace("\\", "/"))
                for path in fileio.match(fileio.join_path(output, folder) + "/**", quiet=True)]
    return out


def clear_previous_output(output):
    """Make `output` ready for a new run: remove the old manifest first, then what its run wrote.

    Returns the relative paths removed (the manifest first). OutputError when `output` holds a
    manifest.json that is not ours.
    """
    # Checked before anything is deleted. The dataset card sits at the root, outside our folders:
    # ours when it carries our mark, else the user's, and then we refuse the folder and touch nothing.
    card_path = fileio.join_path(output, CARD_FILE)
    if fileio.exists(card_path):
        with fileio.open_read(card_path) as f:
            if not is_generated_card(f.read()):
                raise OutputError(f"{card_path} exists and was not written by sarchat generate (its dataset "
                                  "card goes there); refusing to overwrite it: move it or choose another --output")
    manifest_path = fileio.join_path(output, MANIFEST)
    old = None
    if fileio.exists(manifest_path):
        with fileio.open_read(manifest_path) as f:
            old = check_own_manifest(f.read(), manifest_path)
    removed = []
    for rel in [MANIFEST, CARD_FILE] + removable(old, _present(output)):  # the manifest first
        path = fileio.join_path(output, *rel.split("/"))
        if fileio.exists(path):
            fileio.delete([path])
            removed.append(rel)
    _remove_emptied_folders(output, removed)
    return removed
