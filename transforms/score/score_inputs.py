"""Everything `sarchat score` checks and decides before its job starts. Pure code, no Beam transforms.

- The test rows: a generated dataset's Parquet shards of the split, exactly as its manifest.json
  lists them (sarchat.transforms.dataset_files: a folder without a manifest, or a listed file of
  another size, is refused). For ad-hoc use, `--dataset` may also name a .parquet file or a glob;
  the dataset version is then unknown.
- The predictions: every file scanned once (sarchat.transforms.score.prediction_files), one
  source per model, and the dataset version each records compared with the dataset's: predictions
  made on another version are refused unless --allow-version-mismatch (SPEC section 4).
- The box format per model, the image root of the samples section, the stats document.
Every failure is a SarchatError whose message names the file or flag.
"""
import os
from dataclasses import dataclass, field
from typing import Optional, Tuple

import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from sarchat.transforms import dataset_files
from sarchat.transforms.errors import DatasetError, InputError, UsageError
from sarchat.transforms.fileio import exists, join_path, open_parquet, read_bytes
from sarchat.transforms.score import prediction_files as pf
from sarchat.transforms.score.box_format_choice import FormatChooser, discover_run_formats


@dataclass(frozen=True)
class ModelProvenance:
    """On which dataset version one model's predictions were made."""

    version: Optional[str]        # what its files record (several: comma-joined); None: nothing recorded
    mismatch: bool = False        # recorded, and another than the dataset's (scored anyway, by the flag)


@dataclass(frozen=True)
class ScoreInputs:
    test_files: Tuple[str, ...]
    dataset_version: Optional[str]
    prediction_files: Tuple[pf.PredictionFile, ...]
    formats: FormatChooser
    provenance: dict = field(default_factory=dict)      # {model: ModelProvenance}
    image_root: Optional[str] = None
    stats: Optional[dict] = None                         # a `sarchat stats` stats.json document

    @property
    def models(self):
        return tuple(sorted({m for f in self.prediction_files for m in f.models}))


def _is_adhoc(dataset):
    return str(dataset).endswith(".parquet") or any(ch in str(dataset) for ch in "*?[")


def _match(pattern):
    try:
        found = FileSystems.match([pattern])
    except Exception:
        return []
    return sorted(m.path for r in found for m in r.metadata_list)


def test_split_files(dataset, split):
    """(the split's test Parquet files, the dataset manifest or None for an ad-hoc file / glob)."""
    dataset = str(dataset)
    if _is_adhoc(dataset):
        files = _match(dataset)
        if not files:
            raise UsageError(f"--dataset {dataset}: no such Parquet file")
        return files, None
    if "://" not in dataset and not os.path.isdir(dataset):
        raise UsageError(f"--dataset {dataset}: no such folder")
    manifest = dataset_files.read_manifest(dataset)
    files = dataset_files.split_parquet_files(dataset, split, manifest=manifest)
    if not files:
        raise DatasetError(f"{dataset_files.join(dataset, dataset_files.MANIFEST)} lists no parquet/{split}/ files "
                           f"(no split {split!r}, or the dataset was generated without --formats parquet)")
    return files, manifest


def check_test_files(files):
    """DatasetError naming the first test file that is not Parquet (only its footer is read)."""
    for path in files:
        try:
            open_parquet(path).close()
        except (OSError, pa.ArrowException) as exc:
            raise DatasetError(f"cannot read dataset file {path}: {type(exc).__name__}: {exc}") from None


def provenance_of(files, dataset_version, allow_mismatch=False, dataset="the dataset"):
    """{model: ModelProvenance}; InputError for a file made on another dataset version unless allowed."""
    versions, mismatch = {}, {}
    for f in files:
        differs = bool(dataset_version and f.dataset_version and f.dataset_version != dataset_version)
        if differs and not allow_mismatch:
            raise InputError(f"{f.path} holds predictions made on dataset version {f.dataset_version}, but "
                             f"{dataset} is version {dataset_version}: rerun `sarchat infer` on this dataset, or "
                             "pass --allow-version-mismatch to score them anyway (the report then says so)")
        for m in f.models:
            if f.dataset_version:
                versions.setdefault(m, set()).add(f.dataset_version)
            mismatch[m] = mismatch.get(m, False) or differs
    return {m: ModelProvenance(",".join(sorted(versions[m])) if m in versions else None, mismatch[m])
            for m in mismatch}


def image_root_for(dataset, manifest, override=None):
    """--image-root, else the dataset manifest's `input_root` (relative: from the current folder,
    then from the dataset folder), else None."""
    if override:
        return str(override)
    if not manifest:
        return None
    root = manifest.get("input_root") or (manifest.get("config") or {}).get("input_root")
    if not root:
        return None
    root = str(root)
    if "://" in root or os.path.isabs(root) or os.path.isdir(root):
        return root
    candidate = os.path.join(str(dataset), root)
    return candidate if os.path.isdir(candidate) else root


def load_stats(path):
    """The stats.json document of a `sarchat stats` output folder (or the file itself)."""
    import json

    path = str(path)
    candidate = path if path.endswith(".json") else join_path(path, "stats.json")
    if not exists(candidate) or os.path.isdir(candidate):
        raise UsageError(f"--stats {path}: no stats.json there (give the output folder of `sarchat stats`)")
    try:
        doc = json.loads(read_bytes(candidate).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"--stats {candidate} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise InputError(f"--stats {candidate} is not a stats document (a JSON object)")
    return doc


def plan_score_inputs(dataset, split, predictions, adapters=None, allow_version_mismatch=False, image_root=None,
                      stats=None):
    """ScoreInputs for the flags of `sarchat score`; a SarchatError naming the file or flag otherwise."""
    if not predictions:
        raise UsageError("--predictions names no file")
    stats_doc = load_stats(stats) if stats else None
    test_files, manifest = test_split_files(dataset, split)
    check_test_files(test_files)
    dataset_version = dataset_files.dataset_version(manifest) if manifest else None
    scanned = tuple(pf.scan_prediction_file(path, source) for path, source in pf.expand_prediction_inputs(predictions))
    pf.check_model_sources(scanned)
    provenance = provenance_of(scanned, dataset_version, allow_version_mismatch, dataset)
    manifests = [f.run_manifest for f in sorted(scanned, key=lambda f: f.source) if f.run_manifest]
    formats = FormatChooser.from_flags(adapters, discover_run_formats(manifests))
    return ScoreInputs(tuple(test_files), dataset_version, scanned, formats, provenance,
                       image_root_for(dataset, manifest, image_root), stats_doc)
