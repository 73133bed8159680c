"""`sarchat stats`: the paper's quantitative analysis (section 3.2, appendix A.2-A.3) for any input.

    sarchat stats --dataset ROOT|GENERATED_OUT --output DIR [--splits train,test]
                  [--box-source auto|annotations|gt] [--plots png|svg|none] [--no-progress] [any Beam pipeline option]

(--input is the old spelling of --dataset: accepted with a note until 0.3.0.)

The input kind is detected:
- a generated corpus (OUT/manifest.json): dialogue-level stats from the parquet/<split>/ shards
  the manifest lists (a listed shard of another size than the manifest says is refused; files the
  manifest does not list are never read) (tasks and subsets as Table 5 / Figures 8-9, attribute words, answer lengths, templates) and
  box-level stats from the annotation files the manifest names when they still exist with the same
  sha256 (exact), else from the grounding dialogues' integer boxes (approximate; --box-source picks);
- a dataset root (ROOT/Annotations/<split>.json, COCO detection JSON): box-level stats only.

Box-level: category distribution (Table 1), aspect ratio AR = h/w per split and per category with the
three AR buckets (Tables 2 and 4), identify shape words (Figure 7), area ratio and size words, grid
cells, image sizes. Writes DIR/stats.json, DIR/stats.md (our numbers beside the paper's) and
DIR/plots/*.png. Flags this module does not know are Beam's (see beam_pipelines/beam_options.py).
"""
import hashlib
import sys
import time
from dataclasses import dataclass
from typing import Optional, Tuple

import pyarrow as pa

from sarchat.beam_pipelines import flags
from sarchat.beam_pipelines.beam_options import launch_and_read_json, make_pipeline
from sarchat.transforms import coco, dataset_files, ownership
from sarchat.transforms.errors import DatasetError, InputError, SarchatError, UsageError
from sarchat.transforms.fileio import check_no_overlap, exists, join_path, match, open_parquet, read_bytes
from sarchat.transforms.stats import dataset_stats

# Beam (fileio on first use, the stats pipeline) is imported inside the functions that run after the flags
# are parsed: `sarchat stats --help` answers without loading it.


@dataclass(frozen=True)
class StatsConfig:
    """The settings of `sarchat stats`, one field per flag."""
    dataset: str
    output: str
    splits: Optional[str] = None
    box_source: str = "auto"
    annotations: Tuple[str, ...] = ()
    plots: str = "png"
    exact_cap: int = dataset_stats.DEFAULT_EXACT_CAP
    no_progress: bool = False
    beam_args: Tuple[str, ...] = ()


_D = flags.defaults(StatsConfig)


def build_parser():
    p = flags.command_parser("sarchat stats", __doc__)
    p.add_argument("--dataset", default=None,
                   help="dataset root (Annotations/*.json) or a `sarchat generate` output (manifest.json)")
    p.add_renamed("--input", "--dataset")
    p.require("--dataset")
    p.add_argument("--output", required=True, type=flags.output_folder("--output"), help="folder for stats.json, stats.md and plots/")
    p.add_argument("--splits", default=None, help="comma-separated splits (default: every split found)")
    p.add_argument("--box-source", "--box_source", choices=("auto", "annotations", "gt"), default=_D["box_source"],
                   help="generated input only: box stats from the source annotations (exact) or the grounding "
                        "rows' integer boxes (approximate); auto = annotations when unchanged, else gt (default %(default)s)")
    p.add_argument("--annotations", action="append", default=[], metavar="SPLIT=PATH",
                   help="COCO JSON of a split, overriding ROOT/Annotations/<split>.json (repeatable)")
    p.add_argument("--plots", choices=("png", "svg", "none"), default=_D["plots"], help="plot format (default png)")
    p.add_argument("--exact-cap", "--exact_cap", type=flags.positive_int, default=_D["exact_cap"],
                   help="exact medians up to this many values per key, log-histogram beyond (default %(default)s)")
    flags.add_progress_flag(p)
    return p


def _pairs(values):
    out = {}
    for v in values:
        split, sep, path = v.partition("=")
        if not sep or not split or not path:
            raise UsageError(f"--annotations expects SPLIT=PATH, got {v!r}")
        out[split] = path
    return out


def _wanted(found, requested):
    found = sorted(found, key=dataset_stats.split_sort_key)
    if requested is None:
        return found
    wanted = [s.strip() for s in requested.split(",") if s.strip()]
    missing = [s for s in wanted if s not in found]
    if missing:
        raise UsageError(f"--splits: split(s) {missing} not in the input (found: {', '.join(found) or 'none'})")
    if not wanted:
        raise UsageError("--splits names no split")
    return wanted


def plan(config):
    """StatsSettings of a StatsConfig: the input's kind (a generated corpus has manifest.json, a dataset
    root Annotations/*.json) and what the run reads from it."""
    from sarchat.transforms.stats.pipeline import StatsSettings

    overrides = _pairs(config.annotations)  # {split: path} of --annotations
    generated = exists(join_path(config.dataset, dataset_files.MANIFEST), quiet=True)
    info, splits, annotations, files, rejects = (_plan_generated if generated else _plan_dataset)(config, overrides)
    return StatsSettings(output=config.output, input_info=info, splits=tuple(splits),
                         annotations=tuple(sorted(annotations.items())), dialogue_files=tuple(files),
                         exact_cap=config.exact_cap, plot_format=config.plots, extra_rejects=rejects)


def _plan_dataset(config, overrides):
    """(input info, splits, {split: annotation file}, dialogue files, the manifest's rejects) of a dataset root."""
    root = config.dataset
    matched = match(join_path(root, "Annotations", "*.json"))
    found = {p.rstrip("/").rsplit("/", 1)[-1][:-len(".json")]: p for p in sorted(matched)}
    found.update(overrides)
    if not found:
        raise DatasetError(f"{root}: neither manifest.json (a generated corpus; a generation that did not finish "
                           "has none) nor Annotations/*.json (a dataset root)")
    splits = _wanted(found, config.splits)
    annotations = {s: found[s] for s in splits}
    info = {"kind": "dataset", "root": root, "box_source": "annotations", "annotations": annotations}
    return info, splits, annotations, (), {}


def _plan_generated(config, overrides):
    """The same as _plan_dataset's of a generated corpus."""
    root = config.dataset
    manifest = dataset_files.read_manifest(root)
    found = _dialogue_files_by_split(root, manifest)
    splits = _wanted(found, config.splits)
    annotations, notes = _annotation_sources(config, manifest, splits, overrides)
    info = {"kind": "generated", "root": root, "box_source": "annotations" if annotations else "gt_boxes",
            "manifest": {k: manifest.get(k) for k in ("generator", "version", "seed", "config_hash", "dataset_version") if k in manifest},
            "annotations": annotations}
    if notes:
        info["notes"] = notes
    files = [f for s in splits for f in sorted(found[s])]
    return info, splits, annotations, files, {s: r for s, r in manifest.get("rejects", {}).items() if s in splits}


def _dialogue_files_by_split(root, manifest):
    """{split: the parquet/<split>/ files the manifest lists}; DatasetError when it lists none."""
    found = {}
    for path in dataset_files.listed_files(root, "parquet/", ".parquet", manifest=manifest):
        parts = path[len(str(root)):].lstrip("/\\").replace("\\", "/").split("/")
        if len(parts) >= 3:  # parquet/<split>/<file>
            found.setdefault(parts[1], []).append(path)
    if not found:
        raise DatasetError(f"{join_path(root, dataset_files.MANIFEST)} lists no parquet/<split>/ files "
                           "(was the corpus generated with --formats parquet?)")
    return found


def _annotation_sources(config, manifest, splits, overrides):
    """({split: annotation file} of a generated corpus's box statistics, or {} for the grounding rows'
    boxes; the notes saying why a file is not used, then that the boxes fall back). One source for every
    split, so splits compare."""
    if config.box_source == "gt":
        return {}, []
    if (manifest.get("config") or {}).get("category_map"):
        # the annotation files name categories otherwise (generate --category-map); read raw, their
        # boxes would be rejected for their category, so the statistics use the rows' boxes
        notes = ["the dataset was generated with --category-map, so the annotation files' own category "
                 "names are not read"]
    else:
        annotations, notes = {}, []
        for split in splits:
            entry = manifest.get("inputs", {}).get(split, {})
            path = overrides.get(split) or dataset_files.recorded_path(config.dataset, manifest, entry.get("path"))
            why = _annotation_problem(path, entry.get("sha256") if split not in overrides else None)
            if why:
                notes.append(f"{split}: {why}")
            else:
                annotations[split] = path
        if not notes:
            return annotations, notes
    if config.box_source == "annotations":
        raise InputError("--box-source annotations: " + "; ".join(notes))
    return {}, notes + ["box statistics fall back to the grounding rows' integer boxes"]


def _annotation_problem(path, sha256):
    if not path:
        return "the manifest names no annotation file"
    if not exists(path):
        return f"{path} not found"
    if sha256 and hashlib.sha256(read_bytes(path)).hexdigest() != sha256:
        return f"{path} changed since generation (sha256 differs)"
    return None


def settings_of(config):
    """StatsSettings of a StatsConfig: the input planned and checked (SarchatError naming the file/flag)."""
    if config.exact_cap < 1:
        raise UsageError(f"--exact-cap must be >= 1, got {config.exact_cap}")
    settings = plan(config)
    annotations = dict(settings.annotations)  # fail fast on unusable JSON, before any worker starts
    for path in [annotations[s] for s in settings.splits if s in annotations]:  # in the splits' order
        try:
            coco.check_structure(coco.load_json(read_bytes(path), path), path)
        except coco.InputError as e:
            raise InputError(str(e)) from None
    for path in settings.dialogue_files:  # only the footer is read: a launcher error, not a worker traceback
        try:
            open_parquet(path).close()
        except (OSError, pa.ArrowException) as exc:
            raise DatasetError(f"cannot read dialogue file {path}: {type(exc).__name__}: {exc}") from None
    return settings


def stats(config: StatsConfig, test=None):
    """The stats stage: stats.json, stats.md and plots of config.dataset in config.output. Returns
    the stats.json document, None when the job was only submitted. `test(stats_pcoll)` may add
    assertions on the document inside the pipeline."""
    from sarchat.transforms.stats.pipeline import DatasetStats

    check_no_overlap([("the dataset (--dataset)", config.dataset)], config.output)
    reading = ownership.reading(config.dataset)  # one dataset version, checked again at the end
    settings = settings_of(config)
    with ownership.claim(config.output, "stats", legacy=own_older_output, keep_on_failure=False) as claim:
        claim.remove_previous()  # what the last stats run here wrote: nothing stale stays
        p = make_pipeline(config.beam_args)
        doc = p | "Stats" >> DatasetStats(settings)
        if test is not None:
            test(doc)
        written = launch_and_read_json(p, join_path(config.output, "stats.json"), progress_of(settings))
        reading.verify()
    return written


def print_summary(config: StatsConfig, written, seconds):
    """What `sarchat stats` prints after the stage (the demo writes it to its log); `written` is the
    stage's result, the stats.json document."""
    if written is None:
        print(f"sarchat stats: pipeline submitted; the job writes {join_path(config.output, 'stats.json')}, "
              "stats.md and plots/")
        return
    print(summary_text(written, seconds))
    print(f"sarchat stats: outputs in {config.output} (stats.json, stats.md"
          + (", plots/" if config.plots != "none" else "") + ")")


def run(argv=None, test=None):
    """`sarchat stats`: the stage, then its summary on stdout."""
    config = flags.parse_config(build_parser(), argv, StatsConfig, beam=True)
    started = time.time()
    written = stats(config, test)
    print_summary(config, written, time.time() - started)
    return 0


def own_older_output(folder, files):
    """The files of a stats folder written before the ownership marker existed (it has our
    stats.json); None when the folder is not a stats output."""
    if "stats.json" not in files:
        return None
    return [f for f in files if f in ("stats.json", "stats.md") or f.startswith("plots/")]


def progress_of(settings):
    """(label, stage, total, unit) of the run's progress (beam_options.launch): dialogue rows of a
    generated corpus (the manifest's counts give the total), else annotation images."""
    if settings.dialogue_files:
        total = None
        try:
            counts = dataset_files.read_manifest(settings.input_info["root"]).get("counts") or {}
            total = sum(int(counts[s]["dialogues"]) for s in settings.splits)
        except (SarchatError, KeyError, TypeError, ValueError):
            pass
        return "sarchat stats: reading dialogues", "stats.rows", total, "rows"
    return "sarchat stats: reading annotations", "stats.images", None, "images"


def summary_text(doc, elapsed=None) -> str:
    lines = [f"input: {doc['input']['kind']} {doc['input']['root']} (boxes from {doc['input']['box_source']})"]
    for split in doc["splits"]:
        b = doc["boxes"].get(split)
        if b:
            ar = b["aspect_ratio"]["all"]
            lines.append(f"split {split}: {b['images']:,} images, {b['boxes']:,} boxes; AR mean {ar['mean']}, "
                         f"median {ar['median']}, SD {ar['std']}")
        d = doc.get("dialogues", {}).get(split)
        if d:
            tasks = ", ".join(f"{t} {v['count']:,}" for t, v in d["tasks"].items())
            lines.append(f"  {d['dialogues']:,} dialogues: {tasks}")
    if elapsed is not None:
        lines.append(f"wrote stats.json, stats.md in {elapsed:.1f} s")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(run())
