"""The Hugging Face dataset card (OUT/README.md) of a generated dataset, from its manifest. Pure.

`load_dataset(OUT)` reads the card's `configs:` block: the default config is the Parquet rows of
every split (all columns of docs/rules.md section 8, ids and ground truth included). Without a card,
`datasets` would guess and pick the swift JSONL files, losing the ids and the ground truth. The
ms-swift files get no config of their own: `datasets` uses one loader for every config of a folder
(huggingface/datasets#6447), so a JSONL config beside the Parquet one fails to load; the card gives
the one-line `load_dataset("json", ...)` call for them instead. The files are listed one by one from the
manifest (not globbed), so a stray file in the folder is never part of the dataset.
"""
import dataclasses
import hashlib
import json

from sarchat.transforms.rendering import render
from sarchat.transforms.schema import DIALOGUE_SCHEMA
from sarchat.transforms.tasks import TASKS

CARD_FILE = "README.md"
# The card's last line. A README.md ending with it was written by generate and is replaced on a
# rerun; any other README.md in the output folder is the user's, and generate refuses the folder
# rather than overwrite it (transforms/generate/lifecycle.py).
CARD_MARK = "<!-- written by sarchat generate from manifest.json; replaced on every run -->"


def fmt_int(n) -> str:
    """Counts are printed one way everywhere: 3,267."""
    return f"{int(n):,}"


def _files(manifest, folder, suffix):
    """{split: [relative paths]} of the manifest's files under folder/<split>/ ending in suffix (a
    string or a tuple), or for authors/ the JSON arrays authors/SARChat_<name>_<split>.json."""
    out = {}
    for entry in manifest.get("files", []):
        path = entry.get("path", "")
        parts = path.split("/")
        if len(parts) == (2 if folder == "authors" else 3) and parts[0] == folder and path.endswith(suffix):
            split = parts[1][:-len(suffix)].rsplit("_", 1)[-1] if folder == "authors" else parts[1]
            out.setdefault(split, []).append(path)
    return {split: sorted(paths) for split, paths in sorted(out.items(), key=lambda kv: (kv[0] != "train", kv[0]))}


DATA_FOLDERS = ("parquet/", "tfrecord/", "swift/", "authors/")


def data_fingerprint(manifest) -> str:
    """A digest of what the data files hold: the dataset version and every data file's path, size and
    row count (generation is deterministic, so equal inputs give equal bytes).

    It goes into the card's config `description`, which `datasets` hashes into its cache folder name:
    the card lists the files by relative paths, the same in every dataset, so without it `load_dataset`
    of another folder of the same name, or of this folder regenerated, returns the rows it cached
    first. hashlib, never hash(): the card is persisted."""
    files = sorted([f.get("path", ""), f.get("bytes"), f.get("rows")] for f in manifest.get("files", [])
                   if str(f.get("path", "")).startswith(DATA_FOLDERS))
    key = json.dumps({"dataset_version": manifest.get("dataset_version") or manifest.get("config_hash", ""),
                      "version": manifest.get("version", ""), "files": files}, sort_keys=True)
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class CardModel:
    """The values the card shows; card.md.j2 beside this module holds the words around them."""
    files: dict[str, dict[str, list[str]]]  # {kind: {split: relative paths}}: parquet, swift, authors, tfrecord
    default_kind: str | None    # the kind `load_dataset(OUT)` reads: the first of `files` written
    formats: list[str]
    tfrecord_gzip: bool
    tasks: tuple[str, ...]
    count_rows: list[list[str]]  # [split, images, boxes, dialogues, dialogues of each task]
    columns: list[tuple[str, str]]  # (name, Arrow type) of each Parquet column; the template says what each holds
    image_root: str
    dataset_version: str
    generator: str
    version: str
    fingerprint: str            # data_fingerprint(manifest)
    config_hash: str
    seed: object
    identify_variants: object
    category_map: str           # JSON with sorted keys, "" without a map
    inputs: list[tuple[str, str]]  # (split, input fingerprint as JSON with sorted keys)


def card_model(manifest: dict) -> CardModel:
    """The card's values, from the manifest alone."""
    # {kind: {split: relative paths}} of the data files listed, kinds in the order the default config picks them
    files = {"parquet": _files(manifest, "parquet", ".parquet"), "swift": _files(manifest, "swift", ".jsonl"),
             "authors": _files(manifest, "authors", ".json"),
             "tfrecord": _files(manifest, "tfrecord", (".tfrecord", ".tfrecord.gz"))}
    config = manifest.get("config", {})
    return CardModel(
        files=files, default_kind=next((kind for kind, by_split in files.items() if by_split), None),
        formats=list(config.get("formats", [])), tfrecord_gzip=config.get("tfrecord_compression") == "gzip",
        tasks=TASKS, count_rows=[[split, fmt_int(c.get("images", 0)), fmt_int(c.get("boxes", 0)),
                                  fmt_int(c.get("dialogues", 0))]
                                 + [fmt_int(sum(c.get("by_task", {}).get(t, {}).values())) for t in TASKS]
                                 for split, c in manifest.get("counts", {}).items()],
        columns=[(field.name, str(field.type)) for field in DIALOGUE_SCHEMA],
        image_root=config.get("image_root") or "",
        dataset_version=manifest.get("dataset_version") or manifest.get("config_hash", ""),
        generator=manifest.get("generator", ""), version=manifest.get("version", ""),
        fingerprint=data_fingerprint(manifest), config_hash=manifest.get("config_hash", ""),
        seed=config.get("seed", ""), identify_variants=config.get("identify_variants", ""),
        category_map=json.dumps(config["category_map"], sort_keys=True) if config.get("category_map") else "",
        inputs=[(name, json.dumps(fp, sort_keys=True)) for name, fp in sorted((manifest.get("inputs") or {}).items())])


def render_card(manifest: dict) -> str:
    """README.md text: YAML front matter with `configs:`, then what the dataset is and how to use it.

    The default config is the first of parquet, swift, authors that was written (`datasets` reads one
    kind of file per folder, huggingface/datasets#6447); the other kinds get a `load_dataset("json",
    data_files=...)` line, whose cache key `datasets` derives from the files themselves. A TFRecord-only
    dataset lists its .tfrecord files, so `load_dataset(OUT)` fails naming them instead of reading
    manifest.json as data, and the card shows the tf.data code that reads them."""
    return render(__file__, "card.md.j2", **vars(card_model(manifest)), mark=CARD_MARK)


def is_generated_card(data: bytes) -> bool:
    """A README.md that generate wrote (its last line is CARD_MARK)."""
    return data.rstrip().endswith(CARD_MARK.encode("utf-8"))
