"""Everything `sarchat score` checks and decides before its job starts. Pure code, no Beam transforms.

- The test rows: a generated dataset's Parquet shards of the split, exactly as its manifest.json
  lists them (sarchat.transforms.dataset_files: a folder without a manifest, or a listed file of
  another size, is refused). For ad-hoc use, `--dataset` may also name a .parquet file or a glob;
  the dataset version is then unknown.
- The predictions: every file scanned once (sarchat.transforms.score.prediction_files), one
  source per model, and the dataset version each records compared with the dataset's: predictions
  made on another version are refused unless --allow-version-mismatch (docs/rules.md section 10).
- The box format per model, the image root of the samples section, the stats document.
Every failure is a SarchatError whose message names the file or flag.
"""
import os
from dataclasses import dataclass, field
from typing import Optional, Tuple

import pyarrow as pa

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
    report_context: Optional[dict] = None                # what the report's header says (report_context_of)

    @property
    def models(self):
        return tuple(sorted({m for f in self.prediction_files for m in f.models}))


def _is_adhoc(dataset):
    return str(dataset).endswith(".parquet") or any(ch in str(dataset) for ch in "*?[")


def test_split_files(dataset, split):
    """(the split's test Parquet files, the dataset manifest or None for an ad-hoc file / glob)."""
    dataset = str(dataset)
    if _is_adhoc(dataset):
        files = pf.match_paths(dataset)
        if not files:
            raise UsageError(f"--dataset {dataset}: no such Parquet file")
        return files, None
    if "://" not in dataset and not os.path.isdir(dataset):
        raise UsageError(f"--dataset {dataset}: {dataset_files.not_a_folder(dataset)}")
    manifest = dataset_files.read_manifest(dataset)
    return dataset_files.required_split_parquet_files(dataset, split, manifest=manifest), manifest


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


def load_stats(path):
    """The stats.json document of a `sarchat stats` output folder (or the file itself)."""
    import json

    path = str(path)
    candidate = path if path.endswith(".json") else join_path(path, "stats.json")
    if not exists(candidate, quiet=True) or os.path.isdir(candidate):
        raise UsageError(f"--stats {path}: no stats.json there (give the output folder of `sarchat stats`)")
    try:
        doc = json.loads(read_bytes(candidate).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"--stats {candidate} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise InputError(f"--stats {candidate} is not a stats document (a JSON object)")
    return doc


SYNTH_GENERATOR = "sarchat synth"


def annotation_info(split_input):
    """The COCO `info` object of a split's annotation file as the dataset manifest records it
    (`inputs.<split>`: path, bytes, sha256), or None when the file is gone or is not the one the
    dataset was generated from (other size or sha256): a changed file proves nothing."""
    import hashlib
    import json

    path = (split_input or {}).get("path")
    if not path:
        return None
    try:
        data = read_bytes(path, decompress=True)  # as generate read it (a .json.gz decompressed)
    except Exception:
        return None
    if split_input.get("bytes") not in (None, len(data)) or (
            split_input.get("sha256") and hashlib.sha256(data).hexdigest() != split_input["sha256"]):
        return None
    try:
        info = json.loads(data.decode("utf-8-sig")).get("info")
    except (ValueError, AttributeError):
        return None
    return info if isinstance(info, dict) else None


def data_source(manifest, split, dataset=None):
    """{'kind': 'synthetic' | 'dataset' | 'unknown', 'name', 'detail'} of the test rows.

    The signal: the COCO file the split was generated from (the manifest's `inputs.<split>.path`,
    checked against its recorded size and sha256) carries `info.generator == "sarchat synth"`, which
    only `sarchat synth` writes; a `generator` recorded in the manifest's input entry itself wins.
    Anything else with a readable, matching file is a named dataset (its `info.description`, else
    its input root); an ad-hoc Parquet or a file no longer there is 'unknown'."""
    if not manifest:
        return {"kind": "unknown", "name": "test rows given as Parquet files (no dataset manifest)", "detail": ""}
    entry = dict((manifest.get("inputs") or {}).get(split) or {})
    if dataset is not None and entry.get("path"):  # a path relative to the dataset folder, resolved here
        entry["path"] = dataset_files.recorded_path(dataset, manifest, entry["path"])
    root = str(manifest.get("input_root") or "")
    info = {"generator": entry["generator"]} if entry.get("generator") else annotation_info(entry)
    if info is None:
        return {"kind": "unknown", "name": root or str(entry.get("path") or "not recorded"),
                "detail": f"the annotation file {entry.get('path')} is not readable or changed since generation"}
    if info.get("generator") == SYNTH_GENERATOR:
        return {"kind": "synthetic", "name": str(info.get("description") or "synthetic data (sarchat synth)"),
                "detail": f"generated by `sarchat synth` (seed {info.get('seed', '?')}), annotations {entry.get('path')}"}
    return {"kind": "dataset", "name": str(info.get("description") or root or entry.get("path")),
            "detail": f"annotations {entry.get('path')}"}


def report_context_of(dataset, split, manifest, scanned):
    """What the report's header says about the inputs (no date: the report adds its own)."""
    counts = ((manifest or {}).get("counts") or {}).get(split) or {}
    models = {}
    for f in sorted(scanned, key=lambda f: f.source):
        run = f.run_manifest or {}
        for m in f.models:
            models.setdefault(m, {"backend": str(run.get("backend") or "unknown"),
                                  "adapter": str(run.get("adapter") or "unknown"),
                                  "run": f.source if f.run_manifest else None})
    return {"dataset": str(dataset), "split": split, "source": data_source(manifest, split, dataset),
            "dataset_version": dataset_files.dataset_version(manifest) if manifest else None,
            "images": counts.get("images"), "dialogues": counts.get("dialogues"), "models": models}


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
                       dataset_files.image_root(dataset, manifest, image_root), stats_doc,
                       report_context_of(dataset, split, manifest, scanned))
