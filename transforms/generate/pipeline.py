"""Composite PTransforms of the generation pipeline; thin wrappers around the pure modules.

Read (pieces of each split's COCO file, byte ranges the launcher's pre-flight found, parsed by the
workers in parallel) -> each record keyed by its image's shard (a hashlib key) -> GroupByKey -> per
shard: validate (coco.assemble: duplicates, an annotation's image and category, boxes), build all
dialogues, sort by id, write Parquet/TFRecord/swift parts and the shard's rejects, sorted -> one
finalize step that joins swift parts, merges each split's reject parts as a stream (finalize.py)
and, last, writes manifest.json. Working per shard (thousands of images) rather than
per dialogue keeps Beam's per-element overhead off the hot path, and makes every shard file
byte-identical whatever the runner or worker count.

Every step has one output (steps.py): ReadCoco and WriteShards emit `(tag, value)` pairs that
`select` splits. ReadCoco sends the rejects it finds to the shards with the records, so every reject
is written by a shard and none is ever in a side input or in one list (issue 20). Finalize gathers
the shards' results (one small record per shard) through its main input, so it runs after (and
depends on) every step that writes files, on every runner.
"""
import collections
import dataclasses
import gzip
import hashlib
import io
import itertools
import json
from typing import Optional, Tuple

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics
from msgspec.structs import astuple

from sarchat.transforms import coco
from sarchat.transforms.steps import GatherTagged, select, select_keyed, tagged
from sarchat.transforms.generate import records, tfrecord
from sarchat.transforms.fileio import delete_tree, exists, join_path, open_read, open_write, read_bytes, write_bytes
from sarchat.transforms.progress import worker_count
from sarchat.transforms.generate.dataset_card import CARD_FILE, render_card
from sarchat.transforms.generate.dialogues import DialogueBuilder
from sarchat.transforms.generate.finalize import (AuthorsArray, RejectTally, listed_files, merge_reject_lines,
                                                   shard_reject_lines, split_counts)
from sarchat.transforms.schema import DIALOGUE_SCHEMA, seeded_int

NAMESPACE = "sarchat.generate"
# Formats built from the per-shard ms-swift part files.
_SWIFT_BASED = ("swift", "authors")


def shard_of(split, image_id, num_shards) -> int:
    return seeded_int("shard", split, image_id) % num_shards


class ReadCocoPieceFn(beam.DoFn):
    """(split, annotation path, image dir, num_shards, input root, piece) -> `tagged` pairs: RECORDS,
    per shard the piece's records of that shard ((split, shard), ("images" or "annotations",
    [record, ...])), and its rejects (the records' own faults, and the split's category faults once,
    with its first piece) spread over the shards as ((split, shard), ("rejects", [reject, ...]));
    ANN_IDS ((split, annotation ids, their indices): for duplicate_annotation_ids).

    A piece is a byte range of the file that the launcher's pre-flight found (coco.preflight), so
    workers parse a split in parallel and each holds one piece; piece None is the whole file,
    parsed here as before (compressed input, or a file only json.loads accepts)."""

    RECORDS, ANN_IDS = "records", "ann_ids"

    def __init__(self, categories):
        self.categories = categories  # {split: the categories list the pre-flight read}

    def process(self, element):
        split, path, image_dir, num_shards, input_root, piece = element
        folder = coco.local_image_folder(input_root, image_dir) if input_root is not None else None
        if piece is None:
            data = coco.load_json(read_bytes(path, decompress=True), path)
            coco.check_structure(data, path)
            parts = [("images", data["images"], 0), ("annotations", data["annotations"], 0)]
            del data
        else:
            text = read_range(path, piece["start"], piece["end"])
            parts = [(piece["array"], coco.load_piece(text, path, piece), piece["first"])]
        rejects = []
        if parts[0][0] == "images" and parts[0][2] == 0:
            rejects += coco.read_categories(self.categories[split], split, path)[1]
        for array, entries, first in parts:
            if array == "images":
                records, more = coco.read_image_records(entries, first, split, path, folder)
                shards = [shard_of(split, r.image_id, num_shards) for r in records]
            else:
                records, more = coco.read_annotation_records(entries, first, split, path)
                shards = annotation_shards(split, [r.image_id for r in records], num_shards)
                yield tagged(self.ANN_IDS, (split, _int_array([r.ann_id for r in records]),
                                            np.fromiter((r.index for r in records), dtype=np.int64, count=len(records))))
            rejects += more
            yield from _to_shards(split, array, shards, [astuple(r) for r in records])  # plain, for the shuffle
        count_reasons("rejected_", rejects)
        # each reject to a shard by a hash of itself: the shards write them, so no step holds every reject of a split
        yield from _to_shards(split, REJECTS_BATCH, [reject_shard(split, r, num_shards) for r in rejects], rejects)


def _to_shards(split, kind, shards, items):
    """RECORDS pairs ((split, shard), (kind, [item, ...])): the items of each shard, shards in order."""
    by_shard = collections.defaultdict(list)
    for shard, item in zip(shards, items):
        by_shard[shard].append(item)
    for shard in sorted(by_shard):
        yield tagged(ReadCocoPieceFn.RECORDS, ((split, shard), (kind, by_shard[shard])))


REJECTS_BATCH = "rejects"  # the kind of a batch of read rejects among a shard's record batches
# Records cross the shuffle as plain tuples and are typed again on the other side: Beam's coder
# writes any other object through pickle, one record at a time (for a NamedTuple, about 20 times
# slower than a tuple and twice the bytes).
RECORD_TYPES = {"images": coco.ImageRecord, "annotations": coco.AnnotationRecord}


def reject_shard(split, reject, num_shards):
    """The shard that writes a reject found while reading: any shard would do (finalize merges the
    split's sorted parts), a hash of the reject spreads them."""
    return seeded_int("reject", split, reject["file"], reject["index"], reject["record"], reject["reason"]) % num_shards


def annotation_shards(split, image_ids, num_shards):
    """The shard of the image each annotation names (coco.image_key), each distinct image's shard
    hashed once; an image_id that can name no image goes to shard 0, where it is rejected as
    unknown_image like anywhere else."""
    keys = [coco.image_key(image_id) for image_id in image_ids]
    shards = {key: shard_of(split, key, num_shards) for key in set(keys) if key is not None}
    return [0 if key is None else shards[key] for key in keys]


def count_reasons(prefix, rejects):
    """The step's counters of these rejects, one increment per reason (not one per reject)."""
    for reason, n in sorted(collections.Counter(r["reason"] for r in rejects).items()):
        Metrics.counter(NAMESPACE, prefix + reason).inc(n)


def read_range(path, start, end):
    """Bytes [start, end) of an uncompressed file (local or object store), without reading the rest."""
    with open_read(path) as f:
        f.seek(start)
        return f.read(end - start)


def _int_array(values):
    try:
        return np.fromiter(values, dtype=np.int64, count=len(values))
    except OverflowError:  # ids beyond 64 bits stay Python ints
        return np.array(values, dtype=object)


def each_reject(element):
    if element[0] == WriteShardFn.REJECTS:
        yield from element[1]


def duplicates_by_split(id_batches):
    """[(split, ids, indices), ...] of every piece -> {split: {annotation id: first index}}."""
    out = {}
    for split in {batch[0] for batch in id_batches}:
        _, ids, indices = zip(*[batch for batch in id_batches if batch[0] == split])
        # a piece with ids beyond 64 bits (an object array) makes the whole split's array an object array
        out[split] = coco.duplicate_annotation_ids(np.concatenate(ids), np.concatenate(indices))
    return out


class WriteShardFn(beam.DoFn):
    """((split, shard), (record batches, duplicated annotation ids of the split)) -> the shard's
    images validated (coco.assemble), its dialogue files, its rejects' sorted part file; `tagged`
    pairs: REJECTS (the shard's rejects, one list), and RESULTS (one record of what the shard holds
    and which files it wrote)."""

    RESULTS, REJECTS = "results", "rejects"

    def __init__(self, job):
        self.job = job

    def setup(self):
        self.builder = DialogueBuilder(self.job.seed, self.job.identify_variants)
        self.categories = {s.split: coco.read_categories(s.categories, s.split, s.annotations)[0] for s in self.job.splits}

    def process(self, element, duplicates_by_split):
        (split, shard), batches = element
        duplicates = duplicates_by_split.get(split, {})  # {} almost always
        by_array = {"images": [], "annotations": [], REJECTS_BATCH: []}
        for array, batch in batches:
            by_array[array].extend(batch if array == REJECTS_BATCH else itertools.starmap(RECORD_TYPES[array], batch))
        plan = next(s for s in self.job.splits if s.split == split)
        images, *found = coco.assemble(split, plan.annotations, plan.image_dir, self.categories[split], by_array["images"],
                                       by_array["annotations"], duplicates)
        rejects = by_array[REJECTS_BATCH]  # what reading found, counted there
        del by_array
        found = [r for group in found for r in group]
        count_reasons("rejected_", found)
        rejects.extend(found)
        result = {"split": split, "shard": shard, "images": 0, "boxes": 0, "counts": {}, "files": [], "rejects": None}
        if images:  # a shard without a kept image has no dialogue file of its own: Finalize writes it empty
            result.update(self._write(split, shard, images, rejects))
        if rejects:  # sorted, as the shard's part of rejects/<split>.jsonl (Finalize merges the parts)
            path = join_path(self.job.output, "rejects", "_parts", split, f"rejects-{shard:05d}.jsonl")
            write_bytes(path, shard_reject_lines(rejects))
            result["rejects"] = {"path": path, "rows": len(rejects)}
            yield tagged(self.REJECTS, rejects)
        yield tagged(self.RESULTS, result)

    def _write(self, split, shard, images, rejects):
        """The shard's dialogue files; appends describe's rejects to `rejects`; returns its counts and files."""
        boxes = sum(len(i["boxes"]) for i in images)
        Metrics.counter(NAMESPACE, f"{split}_images_kept").inc(len(images))
        Metrics.counter(NAMESPACE, f"{split}_boxes_kept").inc(boxes)
        table, describe_rejects = self.builder.table(images)
        count_reasons("describe_dropped_", describe_rejects)
        rejects.extend(dict(r, file="", index=-1, task="describe") for r in describe_rejects)
        counts = records.task_counts(table)
        for key, value in counts.items():
            Metrics.counter(NAMESPACE, f"dialogues_{key.rstrip('/').replace('/', '_')}").inc(value)
        files = write_dialogue_files(self.job, split, shard, table)
        if any(f in self.job.formats for f in _SWIFT_BASED):
            for task_file, data in records.swift_parts(table, self.job.image_root):
                write_bytes(swift_part_path(self.job.output, split, task_file, shard), data)
        worker_count("generate.images", len(images))  # progress on the launcher's terminal
        return {"images": len(images), "boxes": boxes, "counts": dict(counts), "files": files}


def write_dialogue_files(job, split, shard, table):
    """A shard's Parquet and TFRecord files of `table`, those of job.formats: [{"path", "rows", "bytes"}].
    TFRecord is gzip-compressed for --tfrecord-compression gzip (what tf.data.TFRecordDataset(path,
    compression_type="GZIP") reads); mtime 0 keeps it deterministic."""
    files = []
    if "parquet" in job.formats:
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        files.append(("parquet", "parquet", buf.getvalue()))
    if "tfrecord" in job.formats:
        data = tfrecord.encode_table(table)
        if job.tfrecord_compression == "gzip":
            files.append(("tfrecord", "tfrecord.gz", gzip.compress(data, compresslevel=6, mtime=0)))
        else:
            files.append(("tfrecord", "tfrecord", data))
    out = []
    for folder, ext, data in files:
        name = f"dialogues-{shard:05d}-of-{job.num_shards[split]:05d}.{ext}"
        path = join_path(job.output, folder, split, name)
        write_bytes(path, data)
        out.append({"path": path, "rows": table.num_rows, "bytes": len(data)})
    return out


def swift_part_path(output, split, task_file, shard):
    return join_path(output, "swift", "_parts", split, f"{task_file}-{shard:05d}.jsonl")


SWIFT_TASK_FILES = ("classify", "describe", "count", "grounding_single", "grounding_multi",
                    "identify_single", "identify_multi", "refer_single", "refer_multi")
# The authors' file names (their inference script reads these): SARChat_<name>_<split>.json per task
# file, the name classify_<task file> but for classify and describe, and the training set as one
# SARChat_total_task_train.json.
AUTHORS_TASK_NAMES = {t: t if t in ("classify", "describe") else f"classify_{t}" for t in SWIFT_TASK_FILES}


def authors_files(split):
    """[(file name, [task files it holds])] of the authors' layout for one split."""
    if split == "train":
        return [(f"SARChat_total_task_{split}.json", list(SWIFT_TASK_FILES))]
    return [(f"SARChat_{AUTHORS_TASK_NAMES[t]}_{split}.json", [t]) for t in SWIFT_TASK_FILES]


class FinalizeFn(beam.DoFn):
    """Runs once, after every shard, on the list of the shards' `tagged` RESULTS records
    (GatherTagged): the empty shards' files, swift and authors files, rejects, the dataset card,
    then manifest.json last. Each step streams what the shards wrote, so its memory does not grow
    with the input."""

    def __init__(self, job):
        self.job = job

    def process(self, gathered):
        results = sorted((result for _, result in gathered), key=lambda r: (r["split"], r["shard"]))
        files = [f for r in results for f in r["files"]]
        written = {(r["split"], r["shard"]) for r in results if r["images"]}
        for split, n in sorted(self.job.num_shards.items()):  # a shard without an image gets empty files: no gaps
            for shard in range(n):
                if (split, shard) not in written:
                    files += write_dialogue_files(self.job, split, shard, DIALOGUE_SCHEMA.empty_table())
        files += self._write_swift_based()
        reject_files, reject_counts, describe_counts = self._write_rejects(results)
        manifest = {**self.job.manifest_base, "counts": split_counts(results, self.job.num_shards),
                    "rejects": reject_counts, "describe_filtered": describe_counts,
                    "files": listed_files(self.job.output, files + reject_files)}
        self._write_card(manifest)
        write_bytes(join_path(self.job.output, "manifest.json"),
                    (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8"))
        yield manifest

    def _write_swift_based(self):
        """swift/ and authors/ from the shards' swift part files (one part in memory), which then go."""
        output, formats, files = self.job.output, self.job.formats, []
        for split in sorted(self.job.num_shards):
            if "swift" in formats:  # swift/<split>/<task file>.jsonl: the parts concatenated
                for task_file in SWIFT_TASK_FILES:
                    files.append(write_stream(join_path(output, "swift", split, f"{task_file}.jsonl"),
                                              (read_bytes(part) for part in self._parts(split, [task_file]))))
            if "authors" in formats:  # authors/SARChat_*.json: JSON arrays of the same rows, one row per line
                for name, task_files in authors_files(split):
                    lines = (line for part in self._parts(split, task_files) for line in read_bytes(part).split(b"\n"))
                    array = AuthorsArray()
                    entry = write_stream(join_path(output, "authors", name), array.chunks(lines))
                    files.append({**entry, "rows": array.rows})
        if any(f in formats for f in _SWIFT_BASED):
            delete_tree(join_path(output, "swift", "_parts"))
        return files

    def _write_rejects(self, results):
        """rejects/<split>.jsonl: the split's sorted part files merged as a stream, then removed.
        Returns (files, {split: reasons}, {split: describe's reasons})."""
        files, reasons, describe = [], {}, {}
        for split in sorted(self.job.num_shards):
            parts = [r["rejects"]["path"] for r in results if r["split"] == split and r["rejects"]]
            tally = RejectTally()
            path = join_path(self.job.output, "rejects", f"{split}.jsonl")
            files.append(write_stream(path, tally_lines(merge_reject_lines(read_lines(p) for p in parts), tally)))
            reasons[split], describe[split] = tally.as_dicts()
        delete_tree(join_path(self.job.output, "rejects", "_parts"))
        return files, reasons, describe

    def _write_card(self, manifest):
        """README.md: the dataset card names the data files, so it is written once they are all known,
        and is itself listed in the manifest, which is still written last."""
        card = render_card(manifest).encode("utf-8")
        write_bytes(join_path(self.job.output, CARD_FILE), card)
        manifest["files"] = sorted(manifest["files"] + [{"path": CARD_FILE, "rows": 0, "bytes": len(card)}],
                                   key=lambda f: f["path"])

    def _parts(self, split, task_files):
        """The existing part files of these task files, task file by task file, shard by shard."""
        for task_file in task_files:
            for s in range(self.job.num_shards[split]):
                path = swift_part_path(self.job.output, split, task_file, s)
                if exists(path):
                    yield path


def tally_lines(merged, tally):
    """(line, reject) pairs -> their lines, each reject counted in `tally` on the way."""
    for line, reject in merged:
        tally.add(reject)
        yield line


def write_stream(path, chunks):
    """Write the chunks one after the other (one in memory): {"path", "rows" (newlines), "bytes"}."""
    rows = size = 0
    with open_write(path) as f:
        for data in chunks:
            f.write(data)
            rows += data.count(b"\n")
            size += len(data)
    return {"path": path, "rows": rows, "bytes": size}


def read_lines(path):
    """The lines of a file (each with its newline but a last one without), one in memory."""
    with open_read(path) as f:
        yield from f


@dataclasses.dataclass(frozen=True)
class SplitPlan:
    """One split as the launcher planned it (beam_pipelines/generate.py, plan_splits)."""
    split: str
    annotations: str  # its COCO file
    image_dir: str  # the images' folder, relative to the input root
    input_root: Optional[str]
    num_shards: int
    fingerprint: dict  # {"sha256", "bytes", "images", "annotations"} of the file, as the manifest records it
    pieces: Optional[list]  # the byte ranges the workers parse (coco.preflight); None: read whole
    categories: list  # the file's categories list, after --category-map


@dataclasses.dataclass(frozen=True)
class Job:
    """GenerateDialogues' settings, which its shards and finalize step write by."""
    splits: Tuple[SplitPlan, ...]
    output: str
    formats: Tuple[str, ...]
    seed: int
    identify_variants: int
    image_root: str
    manifest_base: dict  # the manifest's fields known before the run; finalize adds counts, rejects, files
    tfrecord_compression: str

    @property
    def num_shards(self):
        return {s.split: s.num_shards for s in self.splits}


class GenerateDialogues(beam.PTransform):
    """Split plans -> dialogue files under `output`; returns (manifest PCollection, rejects PCollection)."""

    def __init__(self, splits, output, formats, seed, identify_variants, image_root, manifest_base,
                 tfrecord_compression="none"):
        super().__init__()
        self.job = Job(tuple(splits), output, tuple(formats), seed, identify_variants, image_root, manifest_base,
                       tfrecord_compression)

    def expand(self, pbegin):
        splits = self.job.splits
        pieces = [(s.split, s.annotations, s.image_dir, s.num_shards, s.input_root, piece)
                  for s in splits for piece in (s.pieces or [None])]
        parsed = (
            pbegin
            | "Pieces" >> beam.Create(pieces)  # reshuffled when several: one piece per bundle, workers share a split
            | "ReadCoco" >> beam.ParDo(ReadCocoPieceFn({s.split: s.categories for s in splits}))
        )
        # a side input, so it only reads: a runner may compute it again for each reader (steps.py);
        # {} when no piece has an annotation
        duplicates = beam.pvalue.AsSingleton(
            parsed
            | "AnnotationIds" >> select_keyed(ReadCocoPieceFn.ANN_IDS)
            | "CollectAnnotationIds" >> beam.CombinePerKey(beam.combiners.ToListCombineFn())
            | "DuplicateAnnotationIds" >> beam.MapTuple(lambda _, batches: duplicates_by_split(batches)),
            default_value={})
        shards = (
            parsed
            | "Records" >> select(ReadCocoPieceFn.RECORDS)
            | "GroupByShard" >> beam.GroupByKey()
            # each shard gets its split's duplicated annotation ids beside its records
            | "WriteShards" >> beam.ParDo(WriteShardFn(self.job), duplicates_by_split=duplicates)
        )
        # every reject, read or built, is written by a shard; this PCollection is for a caller's checks
        rejects = shards | "EachReject" >> beam.FlatMap(each_reject)
        manifest = (
            {WriteShardFn.RESULTS: shards}
            | "CollectResults" >> GatherTagged(select=[WriteShardFn.RESULTS])  # one small record per shard
            | "Finalize" >> beam.ParDo(FinalizeFn(self.job))
        )
        return manifest, rejects


def fingerprint(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
