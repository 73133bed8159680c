"""`sarchat generate`: COCO-format SAR detections -> the six SARChat tasks' dialogues.

    sarchat generate --input ROOT --output OUT [--splits train,test] [--formats parquet,tfrecord,swift,authors]
                     [--seed S] [--identify-variants K] [--no-progress] [any Beam pipeline option]

Flags this module does not know are Beam's (e.g. --runner, --direct_num_workers,
--direct_running_mode, --project); see beam_pipelines/beam_options.py for the default runner.
"""
import argparse
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from typing import Optional, Tuple

from sarchat import templates
from sarchat.beam_pipelines import flags
from sarchat.beam_pipelines.beam_options import launch_and_read_json, make_pipeline
from sarchat.transforms import coco, dataset_files, ownership
from sarchat.transforms.categories import CATEGORIES, canonical_category
from sarchat.transforms.errors import UsageError
from sarchat.transforms.generate.lifecycle import clear_previous_output
from sarchat.transforms.generate.dialogues import DEFAULT_IDENTIFY_VARIANTS
from sarchat.transforms.fileio import check_no_overlap, exists, is_compressed, join_path, read_bytes
from sarchat.transforms.generate.export_formats import DEFAULT_FORMATS, FORMATS, TFRECORD_COMPRESSIONS

# Beam (fileio on first use, the pipeline module) is imported inside the functions that run after the flags
# are parsed: `sarchat generate --help` and a bad flag answer without loading it.

# 0.2.0: the real SARChat question forms (issue 11); each template bank is also fingerprinted in the manifest.
# 0.3.0: identify's K templates per box by a per-box hash score, not random.Random.sample (issue 18:
# one columnar builder); only the identify rows' templates changed (docs/rules.md section 6).
VERSION = "0.3.0"


@dataclasses.dataclass(frozen=True)
class GenerateConfig:
    """The settings of `sarchat generate`, one field per flag; `sarchat regenerate` sets
    output_base instead of output (its folder is BASE/v-<dataset version>)."""
    input: str
    output: str = ""
    output_base: str = ""
    splits: str = "train,test"
    formats: str = ",".join(DEFAULT_FORMATS)
    seed: int = 0
    identify_variants: int = DEFAULT_IDENTIFY_VARIANTS
    images_per_shard: int = 4000
    annotations: Tuple[str, ...] = ()
    image_dir: Tuple[str, ...] = ()
    tfrecord_compression: str = "none"
    image_root: Optional[str] = None
    category_map: Optional[str] = None
    no_progress: bool = False
    beam_args: Tuple[str, ...] = ()


_D = flags.defaults(GenerateConfig)


def build_parser():
    p = flags.ArgumentParser(prog="sarchat generate", description=__doc__,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="dataset root (local path or gs://): Annotations/<split>.json, JPEGImages/<split>/")
    p.add_argument("--output", required=True, type=flags.output_folder("--output"),
                   help="output folder (local path or gs://)")
    add_generation_arguments(p)
    flags.add_progress_flag(p)
    return p


def add_generation_arguments(p):
    """The flags that shape the dataset (everything but where it goes); shared with `sarchat regenerate`.

    Multi-word flags also answer to their underscore spelling (--identify_variants), the form Flex
    Template parameters use (beam_pipelines/flex_templates/*.json)."""
    p.add_argument("--splits", default=_D["splits"], help="comma-separated splits (default: train,test)")
    p.add_argument("--formats", default=_D["formats"],
                   help=f"any of {','.join(FORMATS)} (default: {','.join(DEFAULT_FORMATS)}); authors = the SARChat "
                        "authors' JSON files (SARChat_<task>_test.json, SARChat_total_task_train.json)")
    p.add_argument("--seed", type=flags.seed, default=_D["seed"], help="template-choice seed (default 0)")
    p.add_argument("--identify-variants", "--identify_variants", type=flags.identify_variants, default=_D["identify_variants"],
                   help="identify questions per box (default 7)")
    p.add_argument("--images-per-shard", "--images_per_shard", type=flags.positive_int, default=_D["images_per_shard"], help="images per output shard (default 4000)")
    p.add_argument("--annotations", action="append", default=[], metavar="SPLIT=PATH",
                   help="COCO JSON of a split, overriding ROOT/Annotations/<split>.json (repeatable)")
    p.add_argument("--image-dir", "--image_dir", action="append", default=[], metavar="SPLIT=DIR",
                   help="image folder of a split relative to ROOT, overriding JPEGImages/<split> (repeatable)")
    p.add_argument("--tfrecord-compression", "--tfrecord_compression", choices=TFRECORD_COMPRESSIONS, default=_D["tfrecord_compression"],
                   help="compression of the TFRecord files: none (default) or gzip (dialogues-*.tfrecord.gz, "
                        "read with tf.data.TFRecordDataset(path, compression_type='GZIP'))")
    p.add_argument("--image-root", "--image_root", default=None,
                   help="prefix of image paths in the swift files (default: the --input root)")
    p.add_argument("--category-map", "--category_map", default=None, metavar="NAME=CATEGORY,...|FILE.json",
                   help="rename the annotation files' category names to the six SARDet categories ("
                        + ", ".join(CATEGORIES) + "), e.g. vessel=ship,plane=aircraft, or a JSON file "
                        "{\"vessel\": \"ship\"}; recorded in the manifest and the dataset version (default: none)")
    return p


def parse_category_map(text):
    """--category-map NAME=CATEGORY,... or a JSON file of {name: category} -> {name (lower case): category}.
    UsageError naming the flag for anything else, or a target that is not one of the six categories."""
    if text is None:
        return {}
    if text.strip().lower().endswith(".json"):
        try:
            with open(text, encoding="utf-8") as fh:
                raw = json.load(fh)
        except OSError as e:
            raise UsageError(f"--category-map {text}: cannot read it ({e.strerror or e})") from e
        except ValueError as e:
            raise UsageError(f"--category-map {text}: not valid JSON ({e})") from e
        if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
            raise UsageError(f"--category-map {text}: expected a JSON object of name -> category strings")
        pairs = list(raw.items())
    else:
        pairs = []
        for item in (i.strip() for i in text.split(",")):
            name, sep, target = item.partition("=")
            if not sep or not name.strip() or not target.strip():
                raise UsageError(f"--category-map: expected NAME=CATEGORY pairs separated by commas "
                                 f"(e.g. vessel=ship,plane=aircraft) or a .json file, got {item!r}")
            pairs.append((name, target))
    out = {}
    for name, target in pairs:
        category = canonical_category(target)
        if category is None:
            raise UsageError(f"--category-map: {target.strip()!r} (for {name.strip()!r}) is not one of the "
                             f"categories {', '.join(CATEGORIES)}")
        out[name.strip().lower()] = category
    if not out:
        raise UsageError("--category-map: names no category")
    return dict(sorted(out.items()))


def _name_key(cat):
    """A category entry's name as --category-map looks it up (lower case), None without a name."""
    name = cat.get("name") if isinstance(cat, dict) else None
    return name.strip().lower() if isinstance(name, str) else None


def apply_category_map(splits, category_map):
    """The split plans with the pre-flight categories lists the pipeline reads renamed (the annotation
    files stay as they are). UsageError when a name of the map is in no split's categories (a typo
    would map nothing)."""
    if not category_map:
        return splits
    renamed_splits = [dataclasses.replace(s, categories=[
        {**cat, "name": category_map[_name_key(cat)]} if _name_key(cat) in category_map else cat
        for cat in s.categories]) for s in splits]
    missing = sorted(set(category_map) - {_name_key(cat) for s in splits for cat in s.categories})
    if missing:
        names = sorted({str(c.get("name")) for s in renamed_splits for c in s.categories if isinstance(c, dict)})
        raise UsageError(f"--category-map: {', '.join(repr(m) for m in missing)} is no category name of the "
                         f"annotation files (their names: {', '.join(names)})")
    return renamed_splits


def unknown_category_names(splits):
    """{split: [category names of its file that are none of the six, after --category-map]}."""
    names = {s.split: sorted({str(c.get("name")) for c in s.categories
                              if isinstance(c, dict) and canonical_category(c.get("name")) is None}) for s in splits}
    return {split: unknown for split, unknown in names.items() if unknown}


def _pairs(values, flag):
    out = {}
    for v in values:
        split, sep, path = v.partition("=")
        if not sep or not split or not path:
            raise coco.InputError(f"{flag} expects SPLIT=VALUE, got {v!r}")
        out[split] = path
    return out


def plan_splits(config):
    """Resolve and pre-flight each split: fail fast (file, position) before any worker starts."""
    from sarchat.transforms.generate.pipeline import SplitPlan, fingerprint

    ann_override = _pairs(config.annotations, "--annotations")
    dir_override = _pairs(config.image_dir, "--image-dir")
    splits = []
    for split in [s.strip() for s in config.splits.split(",") if s.strip()]:
        path = ann_override.get(split) or join_path(config.input, "Annotations", f"{split}.json")
        if not exists(path):
            raise coco.InputError(f"{path}: annotation file of split '{split}' not found")
        # an `annotations.json.gz` is read decompressed, as the pipeline's reader does
        data = read_bytes(path, decompress=True)
        # Structure, counts and the pieces the workers parse, without parsing the file here
        # (coco.preflight); a compressed file is read whole by one worker.
        index = coco.preflight(data, path, split_into_pieces=not is_compressed(path))
        splits.append(SplitPlan(
            split=split,
            annotations=path,
            image_dir=dir_override.get(split, f"JPEGImages/{split}"),
            input_root=config.input,
            num_shards=max(1, math.ceil(index["images"] / config.images_per_shard)),
            fingerprint={"sha256": fingerprint(data), "bytes": len(data), "images": index["images"],
                         "annotations": index["annotations"]},
            pieces=index["pieces"],
            categories=index["categories"],
        ))
    if not splits:
        raise coco.InputError("--splits names no split")
    return splits


def dataset_config(config, splits, formats, category_map):
    """The `config` the manifest records: the settings that shape the dataset."""
    recorded = {
        "splits": [s.split for s in splits],
        "formats": list(formats),
        "seed": config.seed,
        "identify_variants": config.identify_variants,
        "images_per_shard": config.images_per_shard,
        "image_dirs": {s.split: s.image_dir for s in splits},
        "image_root": absolute_local(config.image_root if config.image_root is not None else config.input),
    }
    if config.tfrecord_compression != "none":  # only when set, so the default's config (and its hash) is unchanged
        recorded["tfrecord_compression"] = config.tfrecord_compression
    if category_map:  # only when set, likewise; it changes the dataset, so it is part of its version
        recorded["category_map"] = category_map
    return recorded


def absolute_local(path):
    """A local relative path made absolute (the swift and authors files' image paths must resolve
    from any working folder); URLs and absolute paths as given."""
    if path is None or "://" in str(path) or os.path.isabs(str(path)):
        return path
    return os.path.abspath(str(path))


def recorded_paths(config, splits):
    """(input_root, {split: annotation path}, relative) as the manifest records them: a relative local
    --input (or --annotations) is stored relative to the output folder, and the manifest says so
    (dataset_files.RELATIVE_TO), so infer, score and stats resolve it from any working folder."""
    paths = {s.split: s.annotations for s in splits}
    if not any(not os.path.isabs(p) and "://" not in p for p in (config.input, *paths.values())):
        return config.input, paths, False
    if not config.output or "://" in config.output:
        # regenerate (the folder is BASE/v-<hash>, not known yet) or a remote output: absolute paths
        return absolute_local(config.input), {k: absolute_local(v) for k, v in paths.items()}, False
    base = os.path.abspath(config.output)

    def rel(p):
        return p if "://" in p else os.path.relpath(os.path.abspath(p), base).replace(os.sep, "/")
    return rel(config.input), {k: rel(v) for k, v in paths.items()}, True


def config_hash(config, splits) -> str:
    """Fingerprint of the inputs, the configuration and the generator version: names the versions of
    `sarchat regenerate` (BASE/v-<config_hash>)."""
    key = json.dumps({"config": config, "inputs": {s.split: s.fingerprint["sha256"] for s in splits},
                      "version": VERSION}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def dataset_version(config, splits, template_fingerprints) -> str:
    """The dataset version of docs/rules.md section 10: a hash of the generator version, the template banks
    (each bank's version and content hash), the configuration and the input fingerprints. Every
    predictions file records it, and score refuses predictions of another version."""
    key = json.dumps({"generator": VERSION, "templates": template_fingerprints, "config": config,
                      "inputs": {s.split: s.fingerprint for s in splits}}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def prepare(config):
    """Validate the settings and pre-flight the inputs: (formats, splits, manifest_base)."""
    formats = [f.strip() for f in config.formats.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise UsageError(f"--formats: unknown format(s) {unknown}; choose from {', '.join(FORMATS)}")
    category_map = parse_category_map(config.category_map)
    try:
        splits = apply_category_map(plan_splits(config), category_map)
    except coco.InputError as e:
        raise UsageError(str(e)) from e
    recorded = dataset_config(config, splits, formats, category_map)
    template_fingerprints = templates.fingerprints()
    input_root, annotation_paths, relative = recorded_paths(config, splits)
    manifest_base = {
        "generator": "sarchat-bench",
        "version": VERSION,
        "input_root": input_root,
        "inputs": {s.split: {"path": annotation_paths[s.split], **s.fingerprint} for s in splits},
        "seed": config.seed,
        "config": recorded,
        "config_hash": config_hash(recorded, splits),
        "dataset_version": dataset_version(recorded, splits, template_fingerprints),
        "templates": template_fingerprints,
        "num_shards": {s.split: s.num_shards for s in splits},
    }
    if relative:
        manifest_base[dataset_files.RELATIVE_TO] = "dataset"
    unknown = unknown_category_names(splits)
    if unknown:  # only when some are, so a clean dataset's manifest is unchanged
        manifest_base["unknown_category_names"] = unknown
    return formats, splits, manifest_base


def build(p, config, output, formats, splits, manifest_base):
    """Add the generation graph writing under `output` to pipeline `p`: (manifest, rejects) PCollections."""
    from sarchat.transforms.generate.pipeline import GenerateDialogues

    return p | "Generate" >> GenerateDialogues(
        splits, output, formats, config.seed, config.identify_variants, manifest_base["config"]["image_root"],
        manifest_base, tfrecord_compression=config.tfrecord_compression)


def generate(config: GenerateConfig, test=None):
    """The generate stage: the dataset of `config` in config.output. Returns its manifest, None when
    the job was only submitted. `test(manifest_pcoll, rejects_pcoll)` may add assertions inside the
    pipeline."""
    formats, splits, manifest_base = prepare(config)  # UsageError: `sarchat` prints it, exits 2
    # docs/rules.md section 10: the old manifest goes first, then what its run wrote; ours comes last.
    check_no_overlap([("the input folder (--input)", config.input)]
                     + [(f"the {s.split} annotations", s.annotations) for s in splits], config.output)
    with ownership.claim(config.output, "generate", legacy=own_older_output):  # one writer, our folder only
        clear_previous_output(config.output)
        pipeline = make_pipeline(config.beam_args)
        manifest, rejects = build(pipeline, config, config.output, formats, splits, manifest_base)
        if test is not None:
            test(manifest, rejects)
        return launch_and_read_json(pipeline, join_path(config.output, "manifest.json"), progress_of(splits))


def print_summary(config: GenerateConfig, written, seconds):
    """What `sarchat generate` prints after the stage (the demo writes it to its log): the manifest's
    counts per split and where the dataset is; `written` is the stage's result."""
    manifest_path = join_path(config.output, "manifest.json")
    if written is None:
        print(f"sarchat generate: submitted; {manifest_path} is written last, when the job finishes")
        return
    print(summary_table(written, seconds))
    print(f"sarchat generate: dataset in {config.output} ({', '.join(written['config']['formats'])}; "
          f"file list: {manifest_path})")


def run(argv=None, test=None):
    """`sarchat generate`: the stage, then its summary on stdout."""
    config = flags.parse_config(build_parser(), argv, GenerateConfig, beam=True)
    started = time.time()
    written = generate(config, test)
    print_summary(config, written, time.time() - started)
    return 0


def own_older_output(folder, files):
    """A folder without ownership marker that an older `sarchat generate` wrote (or a killed one
    left): only our manifest, card and folders. Their lifecycle (clear_previous_output) decides what
    goes, and refuses a foreign manifest.json or README.md with its own line."""
    from sarchat.transforms.generate.lifecycle import OWN_FOLDERS

    ours = all(f in ("manifest.json", "README.md") or f.split("/", 1)[0] in OWN_FOLDERS for f in files)
    return [] if ours else None


def progress_of(splits):
    """(label, stage, total, unit) of the run's progress (beam_options.launch): images written into
    dialogue shards, out of the annotation files' images."""
    return ("sarchat generate: writing dialogues", "generate.images",
            sum(s.fingerprint["images"] for s in splits), "images")


def summary_table(manifest, elapsed=None) -> str:
    lines = []
    for split, c in manifest["counts"].items():
        lines.append(f"split {split}: {c['images']:,} images, {c['boxes']:,} boxes -> {c['dialogues']:,} dialogues")
        lines += [f"  {task if subset == 'all' else f'{task}/{subset}':<20} {n:>10,}"
                  for task, subsets in c["by_task"].items() for subset, n in subsets.items()]
        for title, key in (("rejected (reason: count)", "rejects"),
                           ("left out of describe only (reason: count)", "describe_filtered")):
            reasons = manifest.get(key, {}).get(split, {})
            if reasons:
                lines += [f"  {title}", *(f"    {reason:<28} {n:>8,}" for reason, n in reasons.items())]
    lines += category_warnings(manifest)
    if elapsed is not None:
        lines.append(f"wrote {', '.join(manifest['config']['formats'])} in {elapsed:.1f} s")
    return "\n".join(lines)


def category_warnings(manifest):
    """A line per split where most annotations were rejected for their category: the file names its
    categories otherwise than the six SARDet ones, and --category-map is the remedy."""
    lines = []
    for split, reasons in sorted((manifest.get("rejects") or {}).items()):
        total = ((manifest.get("inputs") or {}).get(split) or {}).get("annotations") or 0
        bad = reasons.get("unknown_category", 0)
        if total and bad * 2 > total:
            names = (manifest.get("unknown_category_names") or {}).get(split) or []
            named = f" (category names not among the six: {', '.join(names)})" if names else ""
            lines.append(f"warning: split {split}: {bad:,} of {total:,} boxes rejected for their category{named}; "
                         f"map them with --category-map NAME=CATEGORY,... (categories: {', '.join(CATEGORIES)})")
    return lines


if __name__ == "__main__":
    sys.exit(run())
