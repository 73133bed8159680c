"""The Beam job of `sarchat stats`: thin steps around transforms/stats/dataset_stats.py.

`DatasetStats(StatsSettings)` is the whole job: pbegin -> the stats.json document (also written,
with stats.md and the plots, by `write_stats`).

Box level: one element per split (annotation path) -> `coco_chunks` parses the COCO JSON and
emits (split, box chunk) for every CHUNK_IMAGES images, plus (split, reject counts) -> Reshuffle ->
CombinePerKey(BoxStats). From a generated corpus the chunks come from the grounding rows instead
(one row per image holding every valid box).

Dialogue level: the Parquet shards the dataset's manifest lists -> ReadAllFromParquetBatched (Arrow
tables) -> (split, table) -> CombinePerKey(DialogueStats), whose add_table is vectorised over a
whole table.

Every accumulator merges exactly (integers, exact sums, order-free sketches), so the output is the
same whatever the bundle boundaries, merge order, runner or worker count.

Every step has one output (transforms/steps.py): `coco_chunks` emits `(tag, value)` pairs that
`select` splits, and the one step that writes files reads every summary through its main input
(GatherTagged), so every runner computes all of them, once.
"""
import collections
import functools
from dataclasses import dataclass, field
from typing import Tuple

import apache_beam as beam
import pyarrow.compute as pc
from apache_beam.metrics import Metrics

from sarchat.report import stats_report as stats_render
from sarchat.transforms import coco
from sarchat.transforms.fileio import join_path, read_bytes, write_bytes
from sarchat.transforms.progress import worker_count
from sarchat.transforms.steps import GatherTagged, select, tagged
from sarchat.transforms.stats import dataset_stats as stats

NAMESPACE = "sarchat.stats"
CHUNK_IMAGES = 2000
BOXES, DIALOGUES, REJECTS = "boxes", "dialogues", "rejects"   # the kinds of summary write_stats gathers


class SummaryFn(beam.CombineFn):
    """CombineFn over a dataset_stats accumulator: `make()` a new one, `add(accumulator, element)`;
    the accumulator's merge and summary do the rest."""

    def __init__(self, make, add):
        self.make, self.add = make, add

    def create_accumulator(self):
        return self.make()

    def add_input(self, accumulator, element):
        return self.add(accumulator, element)

    def merge_accumulators(self, accumulators):
        return functools.reduce(lambda total, accumulator: total.merge(accumulator), accumulators)

    def extract_output(self, accumulator):
        return accumulator.summary()


def sum_counters(counters):
    return sum(counters, collections.Counter())


def coco_chunks(element):
    """(split, annotation path) -> `tagged` pairs: BOXES, (split, box chunk) per CHUNK_IMAGES images;
    REJECTS, (split, Counter of reasons)."""
    split, path = element
    images, rejects = coco.parse_coco(coco.load_json(read_bytes(path), path), path, split, "")
    Metrics.counter(NAMESPACE, f"{split}_images").inc(len(images))
    worker_count("stats.images", len(images))  # progress on the launcher's terminal
    yield tagged(REJECTS, (split, collections.Counter(r["reason"] for r in rejects)))
    for start in range(0, len(images), CHUNK_IMAGES):
        yield tagged(BOXES, (split, stats.chunk_from_images(images[start:start + CHUNK_IMAGES])))


def tables_by_split(table):
    """A table -> [(split, table of that split)], splits in sorted order."""
    Metrics.counter(NAMESPACE, "dialogue_rows").inc(table.num_rows)
    worker_count("stats.rows", table.num_rows)  # progress on the launcher's terminal
    splits = sorted(pc.unique(table.column("split")).to_pylist())
    if len(splits) == 1:
        return [(splits[0], table)]
    return [(s, table.filter(pc.equal(table.column("split"), s))) for s in splits]


def grounding_chunks(element):
    """(split, dialogue table) -> (split, box chunk) from its grounding rows."""
    split, table = element
    g = table.filter(pc.equal(table.column("task"), "grounding"))
    if g.num_rows:
        cols = g.select(["width", "height", "gt_boxes", "gt_categories"]).to_pydict()
        yield split, stats.chunk_from_grounding(cols["width"], cols["height"], cols["gt_boxes"], cols["gt_categories"])


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


def write_stats(gathered, s: StatsSettings):
    """Runs once: assemble stats.json from every summary (`tagged` BOXES, DIALOGUES or REJECTS, as
    Gather lists them), then write it, stats.md and the plots. Returns the document."""
    def of(tag):
        return dict(sorted((split, v) for t, (split, v) in gathered if t == tag))

    doc = stats.assemble_stats(s.input_info, s.splits, boxes=of(BOXES), dialogues=of(DIALOGUES),
                               rejects={**s.extra_rejects, **of(REJECTS)}, exact_cap=s.exact_cap)
    write_bytes(join_path(s.output, "stats.json"), stats.dumps(doc).encode("utf-8"))
    links = {}
    if s.plot_format != "none":
        for name, data in stats_render.render_plots(doc, fmt=s.plot_format).items():
            write_bytes(join_path(s.output, "plots", f"{name}.{s.plot_format}"), data)
            links[name] = f"plots/{name}.{s.plot_format}"
    markdown = stats_render.stats_markdown(doc, plot_links=links)
    write_bytes(join_path(s.output, "stats.md"), markdown.encode("utf-8"))
    return doc


class DatasetStats(beam.PTransform):
    """pbegin -> PCollection of the one stats.json document (written with stats.md and the plots).

    Box statistics come from the annotations when the settings name them, else from the grounding
    rows of the dialogue files; dialogue statistics from the dialogue files when there are any."""

    def __init__(self, settings: StatsSettings, label=None):
        super().__init__(label)
        self.settings = settings

    def expand(self, pbegin):
        from apache_beam.io.parquetio import ReadAllFromParquetBatched

        s = self.settings
        box_stats = SummaryFn(functools.partial(stats.BoxStats, s.exact_cap), stats.BoxStats.add_chunk)
        summaries = {}  # tag -> (split, summary) PCollection
        if s.dialogue_files:
            tables = (pbegin
                      # not reshuffled here: the reader spreads the files' ranges itself (its Reshard)
                      | "DialogueFiles" >> beam.Create(list(s.dialogue_files), reshuffle=False)
                      | "ReadParquet" >> ReadAllFromParquetBatched(columns=list(stats.DIALOGUE_COLUMNS))
                      | "BySplit" >> beam.FlatMap(tables_by_split))
            summaries[DIALOGUES] = tables | "DialogueStats" >> beam.CombinePerKey(
                SummaryFn(stats.DialogueStats, stats.DialogueStats.add_table))
        if s.annotations:
            read = (pbegin
                    | "Annotations" >> beam.Create(sorted(s.annotations))
                    | "ReadCoco" >> beam.FlatMap(coco_chunks))
            summaries[BOXES] = (read
                                | "Chunks" >> select(BOXES)
                                | "SpreadChunks" >> beam.Reshuffle()
                                | "BoxStats" >> beam.CombinePerKey(box_stats))
            summaries[REJECTS] = (read
                                  | "Rejects" >> select(REJECTS)
                                  | "RejectCounts" >> beam.CombinePerKey(sum_counters))
        elif s.dialogue_files:
            summaries[BOXES] = (tables
                                | "GroundingBoxes" >> beam.FlatMap(grounding_chunks)
                                | "BoxStats" >> beam.CombinePerKey(box_stats))
        return summaries | "Once" >> GatherTagged() | "Write" >> beam.Map(write_stats, s)
