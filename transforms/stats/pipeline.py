"""PTransforms and CombineFns of `sarchat stats`: thin wrappers around transforms/stats/dataset_stats.py.

`DatasetStats(StatsSettings)` is the whole job: pbegin -> the stats.json document (also written,
with stats.md and the plots, by WriteStatsFn).

Box level: one element per split (annotation path) -> ReadCocoChunksFn parses the COCO JSON and
emits (split, box chunk) for every CHUNK_IMAGES images, plus (split, reject counts) -> Reshuffle ->
CombinePerKey(BoxStatsFn). From a generated corpus the chunks come from the grounding rows instead
(one row per image holding every valid box).

Dialogue level: the Parquet shards the dataset's manifest lists -> ReadAllFromParquetBatched (Arrow
tables) -> (split, table) -> CombinePerKey(DialogueStatsFn), whose add_input is vectorised over a
whole table.

Every accumulator merges exactly (integers, exact sums, order-free sketches), so the output is the
same whatever the bundle boundaries, merge order, runner or worker count.

Every step has one output (transforms/steps.py): ReadCocoChunksFn emits `(tag, value)` pairs
that `select` splits, and the one step that writes files reads every summary through its main
input (Gather), so every runner computes all of them, once.
"""
import collections
from dataclasses import dataclass, field
from typing import Any, Tuple

import apache_beam as beam
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from sarchat.report import stats_report as stats_render
from sarchat.transforms import coco
from sarchat.transforms.fileio import read_bytes, write_bytes
from sarchat.transforms.progress import worker_count
from sarchat.transforms.steps import Gather, select, tag_as, tagged
from sarchat.transforms.stats import dataset_stats as stats

NAMESPACE = "sarchat.stats"
CHUNK_IMAGES = 2000


class _MergingCombineFn(beam.CombineFn):
    """CombineFn over an accumulator class with add_x(element) and merge(other)."""

    def merge_accumulators(self, accumulators):
        accumulators = iter(accumulators)
        first = next(accumulators)
        for acc in accumulators:
            first.merge(acc)
        return first

    def extract_output(self, accumulator):
        return accumulator.summary()


class BoxStatsFn(_MergingCombineFn):
    """box chunks (sarchat.transforms.stats.dataset_stats.chunk_from_*) -> BoxStats summary dict."""

    def __init__(self, exact_cap=stats.DEFAULT_EXACT_CAP):
        self.exact_cap = exact_cap

    def create_accumulator(self):
        return stats.BoxStats(self.exact_cap)

    def add_input(self, accumulator, chunk):
        return accumulator.add_chunk(chunk)


class DialogueStatsFn(_MergingCombineFn):
    """pyarrow Tables of dialogue rows -> DialogueStats summary dict."""

    def create_accumulator(self):
        return stats.DialogueStats()

    def add_input(self, accumulator, table):
        return accumulator.add_table(table)


class CounterSumFn(_MergingCombineFn):
    def create_accumulator(self):
        return collections.Counter()

    def add_input(self, accumulator, counts):
        accumulator.update(counts)
        return accumulator

    def merge_accumulators(self, accumulators):
        total = collections.Counter()
        for acc in accumulators:
            total.update(acc)
        return total

    def extract_output(self, accumulator):
        return dict(sorted(accumulator.items()))


class ReadCocoChunksFn(beam.DoFn):
    """(split, annotation path) -> `tagged` pairs: CHUNKS, (split, box chunk) per CHUNK_IMAGES images;
    REJECTS, (split, Counter of reasons)."""

    CHUNKS, REJECTS = "chunks", "rejects"

    def __init__(self, chunk_images=CHUNK_IMAGES):
        self.chunk_images = chunk_images

    def process(self, element):
        split, path = element
        data = coco.load_json(read_bytes(path), path)
        images, rejects = coco.parse_coco(data, path, split, "")
        Metrics.counter(NAMESPACE, f"{split}_images").inc(len(images))
        worker_count("stats.images", len(images))  # progress on the launcher's terminal
        yield tagged(self.REJECTS, (split, collections.Counter(r["reason"] for r in rejects)))
        for start in range(0, len(images), self.chunk_images):
            yield tagged(self.CHUNKS, (split, stats.chunk_from_images(images[start:start + self.chunk_images])))


def _by_split(table):
    """A table -> [(split, table of that split)], splits in sorted order."""
    if table.num_rows == 0:
        return []
    splits = sorted(pc.unique(table.column("split")).to_pylist())
    if len(splits) == 1:
        return [(splits[0], table)]
    return [(s, table.filter(pc.equal(table.column("split"), s))) for s in splits]


class TablesBySplitFn(beam.DoFn):
    def process(self, table):
        Metrics.counter(NAMESPACE, "dialogue_rows").inc(table.num_rows)
        worker_count("stats.rows", table.num_rows)  # progress on the launcher's terminal
        yield from _by_split(table)


class GroundingChunksFn(beam.DoFn):
    """(split, dialogue table) -> (split, box chunk) from its grounding rows."""

    def process(self, element):
        split, table = element
        g = table.filter(pc.equal(table.column("task"), "grounding"))
        if g.num_rows == 0:
            return
        cols = g.select(["width", "height", "gt_boxes", "gt_categories"]).to_pydict()
        yield split, stats.chunk_from_grounding(cols["width"], cols["height"], cols["gt_boxes"], cols["gt_categories"])


class BoxStatsFromCoco(beam.PTransform):
    """[(split, annotation path)] -> ((split, box summary), (split, reject counts))."""

    def __init__(self, split_paths, exact_cap=stats.DEFAULT_EXACT_CAP, chunk_images=CHUNK_IMAGES):
        super().__init__()
        self.split_paths, self.exact_cap, self.chunk_images = list(split_paths), exact_cap, chunk_images

    def expand(self, pbegin):
        read = (
            pbegin
            | "Annotations" >> beam.Create(self.split_paths)
            | "ReadCoco" >> beam.ParDo(ReadCocoChunksFn(self.chunk_images))
        )
        boxes = (
            read
            | "Chunks" >> select(ReadCocoChunksFn.CHUNKS, Tuple[str, Any])
            | "SpreadChunks" >> beam.Reshuffle()
            | "BoxStats" >> beam.CombinePerKey(BoxStatsFn(self.exact_cap))
        )
        rejects = (read
                   | "Rejects" >> select(ReadCocoChunksFn.REJECTS, Tuple[str, Any])
                   | "RejectCounts" >> beam.CombinePerKey(CounterSumFn()))
        return boxes, rejects


class ReadDialogueTables(beam.PTransform):
    """Parquet files (as the dataset manifest lists them) -> (split, pyarrow Table) batches with
    the columns the stats need."""

    def __init__(self, files):
        super().__init__()
        self.files = list(files)

    def expand(self, pbegin):
        from apache_beam.io.parquetio import ReadAllFromParquetBatched

        return (pbegin
                | "DialogueFiles" >> beam.Create(self.files)
                | "ReadParquet" >> ReadAllFromParquetBatched(columns=list(stats.DIALOGUE_COLUMNS))
                | "BySplit" >> beam.ParDo(TablesBySplitFn()).with_output_types(Tuple[str, Any]))


class DialogueStatsOf(beam.PTransform):
    """(split, table) -> (split, dialogue summary)."""

    def expand(self, tables):
        return tables | "DialogueStats" >> beam.CombinePerKey(DialogueStatsFn())


class BoxStatsFromDialogues(beam.PTransform):
    """(split, table) -> (split, box summary) from the grounding rows' integer boxes."""

    def __init__(self, exact_cap=stats.DEFAULT_EXACT_CAP):
        super().__init__()
        self.exact_cap = exact_cap

    def expand(self, tables):
        return (
            tables
            | "GroundingBoxes" >> beam.ParDo(GroundingChunksFn()).with_output_types(Tuple[str, Any])
            | "BoxStats" >> beam.CombinePerKey(BoxStatsFn(self.exact_cap))
        )


class WriteStatsFn(beam.DoFn):
    """Runs once: assemble stats.json, then write it, stats.md and the plots. Yields the document.
    Its one input: the list of every summary, `tagged` BOXES, DIALOGUES or REJECTS (Gather)."""

    BOXES, DIALOGUES, REJECTS = "boxes", "dialogues", "rejects"

    def __init__(self, output, input_info, splits, exact_cap, plot_format, extra_rejects=None):
        self.output, self.input_info, self.splits = output, input_info, list(splits)
        self.exact_cap, self.plot_format, self.extra_rejects = exact_cap, plot_format, extra_rejects or {}

    def process(self, gathered):
        def of(tag):
            return sorted(((split, v) for t, (split, v) in gathered if t == tag), key=lambda kv: kv[0])

        boxes, dialogues, rejects = of(self.BOXES), of(self.DIALOGUES), of(self.REJECTS)
        all_rejects = dict(self.extra_rejects)
        all_rejects.update(rejects)
        doc = stats.assemble_stats(self.input_info, self.splits, boxes=dict(boxes), dialogues=dict(dialogues),
                                   rejects=all_rejects, exact_cap=self.exact_cap)
        write_bytes(FileSystems.join(self.output, "stats.json"), stats.dumps(doc).encode("utf-8"))
        links = {}
        if self.plot_format != "none":
            for name, data in stats_render.render_plots(doc, fmt=self.plot_format).items():
                rel = f"plots/{name}.{self.plot_format}"
                write_bytes(FileSystems.join(self.output, "plots", f"{name}.{self.plot_format}"), data)
                links[name] = rel
        write_bytes(FileSystems.join(self.output, "stats.md"),
                    stats_render.stats_markdown(doc, plot_links=links).encode("utf-8"))
        yield doc


@dataclass(frozen=True)
class StatsSettings:
    """What `sarchat stats` computes, planned and checked at launch (beam_pipelines/stats.py plan)."""

    output: str                               # folder of stats.json, stats.md, plots/
    input_info: dict                          # stats.json's `input` block
    splits: Tuple[str, ...]
    annotations: Tuple[Tuple[str, str], ...] = ()   # (split, COCO JSON path): exact box stats from these
    dialogue_files: Tuple[str, ...] = ()      # the generated corpus's Parquet shards (its manifest's list)
    exact_cap: int = stats.DEFAULT_EXACT_CAP
    plot_format: str = "png"                  # png | svg | none
    extra_rejects: dict = field(default_factory=dict)   # the generator's rejects per split


class DatasetStats(beam.PTransform):
    """pbegin -> PCollection of the one stats.json document (written with stats.md and the plots).

    Box statistics come from the annotations when the settings name them, else from the grounding
    rows of the dialogue files; dialogue statistics from the dialogue files when there are any."""

    def __init__(self, settings: StatsSettings, label=None):
        super().__init__(label)
        self.settings = settings

    def expand(self, pbegin):
        s = self.settings
        summaries = {}  # tag -> (split, summary) PCollection
        tables = None
        if s.dialogue_files:
            tables = pbegin | "ReadDialogues" >> ReadDialogueTables(s.dialogue_files)
            summaries[WriteStatsFn.DIALOGUES] = tables | "Dialogues" >> DialogueStatsOf()
        if s.annotations:
            boxes, rejects = pbegin | "Boxes" >> BoxStatsFromCoco(sorted(s.annotations), exact_cap=s.exact_cap)
            summaries[WriteStatsFn.BOXES], summaries[WriteStatsFn.REJECTS] = boxes, rejects
        elif tables is not None:
            summaries[WriteStatsFn.BOXES] = tables | "BoxesFromGt" >> BoxStatsFromDialogues(exact_cap=s.exact_cap)
        tagged_summaries = tuple(pcoll | f"Tag{tag.title()}" >> tag_as(tag)
                                 for tag, pcoll in sorted(summaries.items()))
        return (
            tagged_summaries
            | "AllSummaries" >> beam.Flatten(pipeline=pbegin.pipeline)
            | "Once" >> Gather()
            | "Write" >> beam.ParDo(WriteStatsFn(s.output, s.input_info, s.splits, s.exact_cap, s.plot_format,
                                                 s.extra_rejects))
        )
