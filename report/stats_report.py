"""Render a stats.json document (transforms/stats/dataset_stats.py) as Markdown tables and plots. No Beam.

    stats_markdown(stats, paper=None, plot_links=None) -> str         # stats_model(...) through stats.md.j2
    render_plots(stats, fmt="png", paper=None) -> {name: bytes}       # names in PLOT_NAMES order
    PLOT_TITLES: {name: title}

Our numbers and the paper's published ones (transforms/stats/paper_stats.json) stand side by side and every
paper number is labelled with the table or figure it comes from. The paper reports a "Training" and a
"Test" set; they are compared with our splits named train and test only.

Plots use matplotlib's Agg backend, need no display, and are reproducible (no timestamps in the
files): PNG for stats/plots/*.png, SVG (fmt="svg") for inlining in an HTML report.
"""
import collections
import dataclasses
import io

import numpy as np

from sarchat.transforms.categories import CATEGORIES
from sarchat.transforms.rendering import render
from sarchat.transforms.tasks import TASK_LABELS, TASKS
from sarchat.transforms.stats.dataset_stats import (AR_BUCKETS, DESCRIBE_SIZE_ORDER, IDENTIFY_SIZE_ORDER, SHAPE_ORDER,
                              load_paper_stats)

PAPER_SPLITS = ("train", "test")
PLOT_NAMES = ("categories", "aspect_ratio", "ar_buckets", "shapes", "tasks", "image_sizes", "box_sizes", "cells")
PLOT_TITLES = {
    "categories": "Category distribution per split (Table 1)",
    "aspect_ratio": "Aspect ratio AR = h/w per split (Table 2)",
    "ar_buckets": "AR buckets per category (Table 4)",
    "shapes": "Shape words per split (Figure 7)",
    "tasks": "Task distribution (Table 5, Figures 8 and 9)",
    "image_sizes": "Image sizes",
    "box_sizes": "Box sizes: area ratio R",
    "cells": "Box centres on the 3x3 grid",
}
SPLIT_COLORS = {"train": "#4C72B0", "val": "#55A868", "test": "#DD8452"}
_EXTRA_COLORS = ("#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#CCB974", "#64B5CD")
BUCKET_COLORS = ("#4C72B0", "#BBBBBB", "#DD8452")
SUBSET_COLORS = {"all": "#4C72B0", "single": "#4C72B0", "multi": "#9FB7DA"}


def _fmt_int(n):
    return "–" if n is None else f"{n:,}"


def _fmt(v, nd=3):
    return "–" if v is None else f"{v:.{nd}f}"


def _cp(count, pct, nd=2):
    return "–" if count is None else f"{count:,} ({pct:.{nd}f}%)"


def _split_color(split, i=0):
    return SPLIT_COLORS.get(split, _EXTRA_COLORS[i % len(_EXTRA_COLORS)])


# --- Markdown -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Table:
    """A table's header and cells as shown (stats.md, report.md, report.html): the first `left` columns
    are text, aligned left; the rest are numbers, aligned right."""
    header: list[str]
    rows: list[list]
    left: int = 1

    @property
    def align(self) -> list[str]:
        return ["---"] * self.left + ["---:"] * (len(self.header) - self.left)


@dataclasses.dataclass(frozen=True)
class StatsReport:
    """The values stats.md shows; report/stats.md.j2 holds the words. A section whose data is
    missing is None (or empty) and the template leaves it out."""
    input_kind: str
    input_root: str
    box_source: str
    notes: list[str]
    overview: Table
    degenerate: list[str]                   # "split n" of the splits with zero-size boxes
    categories: Table | None
    aspect_ratio: Table | None
    quantile_methods: str
    ar_diff: list[tuple[str, str, str]] | None  # (statistic, test minus train, the paper's); None unless both
    ar_by_category: Table | None
    shapes: Table | None
    identify_shapes: Table | None
    roughly_square: int                     # identify answers stating "roughly square", all splits
    tasks: Table | None
    task_subsets: Table | None
    task_features: Table | None
    sizes: Table | None
    image_sizes: list[tuple[str, Table]]
    cells: list[tuple[str, Table]]
    relations: Table | None
    rejects: Table | None
    plots: list[tuple[str, str]]            # (title, link)
    methods: list[tuple[str, str]]
    paper_notes: list[str]


def stats_markdown(stats, paper=None, plot_links=None) -> str:
    """stats.md: readable tables, ours beside the paper's published figures (labelled)."""
    return render(__file__, "stats.md.j2", **vars(stats_model(stats, paper, plot_links))).rstrip() + "\n"


def stats_model(stats, paper=None, plot_links=None) -> StatsReport:
    """The report's values from a stats.json document and the paper's numbers."""
    paper = paper or load_paper_stats()
    info, boxes = stats["input"], stats["boxes"]
    overview, degenerate = _overview(stats, paper)
    shapes, identify_shapes, roughly_square = _shapes(stats, paper)
    tasks, subsets, features = _tasks(stats, paper) or (None, None, None)
    ar = _aspect_ratio(stats, paper) if boxes else None
    return StatsReport(
        input_kind=info["kind"], input_root=info["root"], box_source=info.get("box_source") or "",
        notes=info.get("notes", []), overview=overview, degenerate=degenerate,
        categories=_categories(stats, paper) if boxes else None,
        aspect_ratio=ar[0] if ar else None, quantile_methods=ar[1] if ar else "", ar_diff=ar[2] if ar else None,
        ar_by_category=_ar_by_category(stats, paper) if boxes else None,
        shapes=shapes, identify_shapes=identify_shapes, roughly_square=roughly_square,
        tasks=tasks, task_subsets=subsets, task_features=features, sizes=_sizes(stats) if boxes else None,
        image_sizes=_image_sizes(stats), cells=_cells(stats), relations=_relations(stats), rejects=_rejects(stats),
        plots=[(PLOT_TITLES[name], (plot_links or {})[name]) for name in PLOT_NAMES if name in (plot_links or {})],
        methods=list(stats.get("methods", {}).items()), paper_notes=paper.get("notes", []))


def _overview(stats, paper):
    ref = paper["sardet100k_scale"]
    header = ["Split", "Images", "Boxes", "Boxes / image", "Dialogues", "SARDet-100K images / boxes (docs/rules.md §1)"]
    rows = []
    for s in stats["splits"]:
        b = stats["boxes"].get(s, {})
        d = stats.get("dialogues", {}).get(s, {})
        per = b["boxes"] / b["images"] if b.get("images") else None
        r = ref.get(s)
        rows.append([s, _fmt_int(b.get("images")), _fmt_int(b.get("boxes")), _fmt(per, 2), _fmt_int(d.get("dialogues")),
                     f"{r['images']:,} / {r['boxes']:,}" if r else "–"])
    degenerate = [f"{s} {b['degenerate_boxes']:,}" for s, b in stats["boxes"].items() if b.get("degenerate_boxes")]
    return Table(header, rows), degenerate


def _ours_and_paper_columns(splits, first, papers):
    """(header, [(kind, split)]) of a table: per split ours, then each of the paper's where it has the
    split; papers: [(kind, the table or figure it comes from)], "{fig}" in one being 8 for train, 9 for test."""
    header, cols = [first], []
    for s in splits:
        header.append(f"{s} (ours)")
        cols.append(("ours", s))
        for kind, source in papers if s in PAPER_SPLITS else ():
            header.append(f"{s} (*paper*, {source.format(fig=8 if s == 'train' else 9)})")
            cols.append((kind, s))
    return header, cols


def _box_splits(stats):
    return [s for s in stats["splits"] if stats["boxes"].get(s)]


def _categories(stats, paper):
    t1 = paper["table1_categories"]
    header, cols = _ours_and_paper_columns(_box_splits(stats), "Category", [("paper", "Table 1")])
    rows = []
    for cat in CATEGORIES:
        cells = [stats["boxes"][s]["categories"][cat] if kind == "ours" else t1[s][cat] for kind, s in cols]
        rows.append([cat] + [_cp(c["count"], c["percent"]) for c in cells])
    rows.append(["total"] + [f"{stats['boxes'][s]['boxes'] if kind == 'ours' else sum(v['count'] for v in t1[s].values()):,}"
                             for kind, s in cols])
    return Table(header, rows)


_AR_ROWS = (("Mean", "mean", 3), ("Median", "median", 4), ("SD", "std", 3), ("P25", "p25", 3), ("P75", "p75", 3),
            ("Min", "min", 4), ("Max", "max", 2))


def _aspect_ratio(stats, paper):
    """(table, quantile methods, test-minus-train differences or None)."""
    t2 = paper["table2_aspect_ratio"]
    header, cols = _ours_and_paper_columns(_box_splits(stats), "Metric", [("paper", "Table 2")])
    ours = {s: stats["boxes"][s]["aspect_ratio"]["all"] for _, s in cols}
    rows = [[label] + [_fmt(ours[s].get(key) if kind == "ours" else t2[s].get(key), nd) for kind, s in cols]
            for label, key, nd in _AR_ROWS]
    rows += [[f"{bucket} (%)"] + [_fmt(ours[s]["buckets"][bucket]["percent"], 2) if kind == "ours"
                                  else _fmt(paper["appendix_a2_shapes"][s][bucket], 2) + " (A.2 text)" for kind, s in cols]
             for bucket in AR_BUCKETS]
    methods = ", ".join(sorted({ours[s]["quantile_method"] for _, s in cols}))
    diff = None
    if all(s in stats["splits"] for s in PAPER_SPLITS):
        a, b = (stats["boxes"][s]["aspect_ratio"]["all"] for s in PAPER_SPLITS)
        diff = [(k, f"{b[k] - a[k]:+.3f}", f"{t2['diff_rate'][k]:+}") for k in ("mean", "median", "std")
                if a[k] is not None and b[k] is not None]
    return Table(header, rows), methods, diff


def _ar_by_category(stats, paper):
    t4 = paper["table4_aspect_ratio_by_category"]
    header = ["Category", "Split", "Source", "N", "Mean AR", "Median AR", "SD"] + [f"{b} (%)" for b in AR_BUCKETS]
    rows = []
    for cat in CATEGORIES:
        for s in stats["splits"]:
            a = stats["boxes"].get(s, {}).get("aspect_ratio", {}).get("by_category", {}).get(cat)
            if a:
                rows.append([cat, s, "ours", _fmt_int(a["count"]), _fmt(a["mean"]), _fmt(a["median"], 4), _fmt(a["std"])] +
                            [_fmt(a["buckets"][b]["percent"], 2) for b in AR_BUCKETS])
            if s in PAPER_SPLITS and s in stats["boxes"]:
                p = t4[s][cat]
                n = _fmt_int(p["count"]) if p["count"] is not None else f"'{p['count_as_printed']}'"
                rows.append([cat, s, "*paper* (Table 4)", n, _fmt(p["mean"]), _fmt(p["median"], 4), _fmt(p["std"])] +
                            [_fmt(v, 2) for v in p["buckets"]])
    return Table(header, rows, left=3)


def _shapes(stats, paper):
    """(every box's shape table or None, identify answers' shape table or None, roughly square total)."""
    boxes = Table(["Split"] + list(SHAPE_ORDER), [
        [s] + [_cp(stats["boxes"][s]["shapes"]["all"][w]["count"], stats["boxes"][s]["shapes"]["all"][w]["percent"])
               for w in SHAPE_ORDER] for s in _box_splits(stats)]) if stats["boxes"] else None
    dl = stats.get("dialogues", {})
    if not dl:
        return boxes, None, 0
    rows, total_square = [], 0
    for s in (s for s in stats["splits"] if dl.get(s)):
        sh = dl[s].get("identify_shapes", {})
        total_square += sh.get("roughly square", {}).get("count", 0)
        rows.append([s] + [_cp(sh[w]["count"], sh[w]["percent"]) if w in sh else "0" for w in SHAPE_ORDER] +
                    [f"{dl[s].get('identify_shape_stated_percent', 0):.2f}%"])
    fig7 = paper["figure7_identify_shapes"]["all_splits"]["roughly square"]
    rows.append(["all splits (*paper*, Figure 7)", "–", f"{fig7:,}", "–", "–"])
    return boxes, Table(["Split"] + list(SHAPE_ORDER) + ["identify answers stating a shape"], rows), total_square


def _tasks(stats, paper):
    """(task distribution, single/multi subsets or None, per-dialogue features), None without dialogues."""
    dl = stats.get("dialogues", {})
    if not dl:
        return None
    splits = [s for s in stats["splits"] if s in dl]
    tasks = list(TASKS) + sorted({t for s in splits for t in dl[s]["tasks"]} - set(TASKS))
    return _task_counts(dl, splits, tasks, paper), _task_subsets(dl, splits, tasks), _task_features(dl, splits, tasks)


def _task_counts(dl, splits, tasks, paper):
    t5, f89 = paper["table5_tasks"], paper["figures8_9_tasks"]
    header, cols = _ours_and_paper_columns(splits, "Task", [("t5", "Table 5"), ("f89", "Fig. {fig} text")])
    source = {"ours": {s: dl[s]["tasks"] for s in splits}, "t5": t5, "f89": f89}
    rows = []
    for task in tasks:
        cells = [(kind, source[kind].get(s, {}).get(task)) for kind, s in cols]
        rows.append([TASK_LABELS.get(task, task)] + [_cp(e["count"], e["percent"], 2 if kind != "t5" else 1) if e else "–"
                                                     for kind, e in cells])
    totals = {"ours": lambda s: dl[s]["dialogues"], "t5": lambda s: sum(v["count"] for v in t5[s].values()),
              "f89": lambda s: f89[s]["total"]}
    rows.append(["total"] + [f"{totals[kind](s):,}" for kind, s in cols])
    return Table(header, rows)


def _task_subsets(dl, splits, tasks):
    rows = []
    for task in tasks:
        by_split = [dl[s]["tasks"].get(task, {}).get("subsets", {}) for s in splits]
        for sub in sorted({k for subsets in by_split for k in subsets}, key=lambda k: ({"single": 0, "multi": 1}.get(k, 2), k)):
            entries = [subsets.get(sub) for subsets in by_split]
            rows.append([TASK_LABELS.get(task, task), sub] + [_fmt_int(e["count"]) if e else "0" for e in entries] +
                        [_fmt(e["percent_of_task"], 2) if e else "0" for e in entries])
    header = ["Task", "Subset"] + list(splits) + [f"{s} % of task" for s in splits]
    return Table(header, rows, left=2) if rows else None


def _task_features(dl, splits, tasks):
    header = ["Task", "Split", "Answer words (mean)", "Question words (mean)", "Boxes per answer (mean)", "Templates used"]
    entries = [(task, s, dl[s]["tasks"].get(task)) for task in tasks for s in splits]
    return Table(header, [[TASK_LABELS.get(task, task), s, _fmt(e["answer_words_mean"], 1), _fmt(e["question_words_mean"], 1),
                           _fmt(e["boxes_mean"], 2), e["templates_used"]] for task, s, e in entries if e], left=2)


def _sizes(stats):
    boxes, splits = stats["boxes"], _box_splits(stats)
    rows = [[label] + [_fmt(boxes[s]["area_ratio"][key], 5) for s in splits]
            for key, label in (("median", "R median"), ("mean", "R mean"), ("p25", "R P25"), ("p75", "R P75"))]
    for rule, words in (("identify", IDENTIFY_SIZE_ORDER), ("describe", DESCRIBE_SIZE_ORDER)):
        rows += [[f"{rule}: {w}"] + [_cp(boxes[s][f"{rule}_sizes"][w]["count"], boxes[s][f"{rule}_sizes"][w]["percent"])
                                     for s in splits] for w in words]
    return Table(["Statistic"] + splits, rows)


def _image_sizes(stats, top=10):
    """[(split, table)]: the most frequent image sizes, the rest summed in one row."""
    out = []
    for s in _box_splits(stats):
        b = stats["boxes"][s]
        items = list(b["image_sizes"].items())
        rows = [[k, f"{v:,}", _fmt(100.0 * v / b["images"], 2)] for k, v in items[:top]]
        if len(items) > top:
            rest = sum(v for _, v in items[top:])
            rows.append([f"{len(items) - top} other sizes", f"{rest:,}", _fmt(100.0 * rest / b["images"], 2)])
        out.append((s, Table(["Size", "Images", "%"], rows)))
    return out


def _cells(stats):
    """[(split, table)]: % of the split's boxes per cell of the 3x3 grid."""
    return [(s, Table(["", "left", "center", "right"], [
        [r] + [_fmt(b["cells"][f"{r} {c}"]["percent"], 2) for c in ("left", "center", "right")]
        for r in ("top", "middle", "bottom")])) for s, b in ((s, stats["boxes"][s]) for s in _box_splits(stats))]


def _relations(stats):
    dl = stats.get("dialogues", {})
    rows = []
    for s in stats["splits"]:
        d = dl.get(s, {})
        rel = d.get("grounding_relations", {})
        if rel:
            top = sorted(d.get("grounding_directions", {}).items(), key=lambda kv: (-kv[1]["count"], kv[0]))[:4]
            rows.append([s] + [_cp(rel[w]["count"], rel[w]["percent"]) if w in rel else "0" for w in ("near", "far from")] +
                        ["; ".join(f"{k} {v['percent']:.1f}%" for k, v in top)])
    return Table(["Split", "near", "far from", "most frequent directions"], rows) if rows else None


def _rejects(stats):
    rej = {s: r for s, r in stats.get("rejects", {}).items() if r}
    if not rej:
        return None
    reasons = sorted({k for r in rej.values() for k in r})
    return Table(["Reason"] + list(rej), [[k] + [_fmt_int(rej[s].get(k, 0)) for s in rej] for k in reasons])


# --- plots ----------------------------------------------------------------------------------------

def pyplot():
    """matplotlib.pyplot on the Agg backend; SVG text stays text and SVG ids are the same in every run."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    matplotlib.rcParams["svg.fonttype"] = "none"  # chart text stays text: readable, searchable, measurable
    matplotlib.rcParams["svg.hashsalt"] = "sarchat"  # the same ids in every run
    return plt


# The smallest chart text (pt): about 11 px at 100% zoom, readable without zooming in.
MIN_FONT = 8.5
_RC = {"svg.fonttype": "none", "font.size": 9, "axes.titlesize": 10, "axes.spines.top": False, "axes.spines.right": False,
       "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.6, "legend.frameon": False, "svg.hashsalt": "sarchat"}


def save_figure(fig, fmt, dpi: float | None = 120, metadata=None):
    """The figure's file bytes, no timestamp or software version in them unless `metadata` says so."""
    buf = io.BytesIO()
    metadata = metadata or ({"Software": None} if fmt == "png" else {"Date": None, "Creator": None})
    fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight", metadata=metadata)
    pyplot().close(fig)
    return buf.getvalue()


def render_plots(stats, fmt="png", paper=None):
    """{name: image bytes} for the plots that have data; fmt 'png' or 'svg'."""
    import matplotlib as mpl

    if fmt not in ("png", "svg"):
        raise ValueError(f"fmt must be png or svg, got {fmt!r}")
    paper, plt = paper or load_paper_stats(), pyplot()
    splits = [s for s in stats["splits"] if s in stats.get("boxes", {}) and stats["boxes"][s]["boxes"]]
    makers = {"categories": _plot_categories, "aspect_ratio": _plot_histogram, "ar_buckets": _plot_ar_buckets,
              "shapes": _plot_shapes, "tasks": _plot_tasks, "image_sizes": _plot_image_sizes,
              "box_sizes": _plot_histogram, "cells": _plot_cells}
    out = {}
    with mpl.rc_context(_RC):
        for name in PLOT_NAMES:  # shapes and tasks also draw dialogue statistics; the others box statistics only
            fig = makers[name](plt, stats, paper, splits, name) if splits or name in ("shapes", "tasks") else None
            if fig is not None:
                out[name] = save_figure(fig, fmt)
    return out


def _split_bars(ax, x, series, annotate=True, markers=None):
    """Bars side by side at each x, one per (split, values, label) in series, values written above
    them. markers: {split: ([the paper's value at each x], label)}, drawn as diamonds once the
    split's bars are; a value label goes above the bar and above its marker, and is drawn over it,
    so a paper marker never hides a value."""
    width = 0.8 / max(len(series), 1)
    for i, (split, values, label) in enumerate(series):
        pos = x - 0.4 + width * (i + 0.5)
        bars = ax.bar(pos, values, width * 0.92, color=_split_color(split, i), label=label)
        marks, marks_label = (markers or {}).get(split) or ([None] * len(values), None)
        for b, v, mk in zip(bars, values, marks) if annotate else ():
            y, lift = (v, 2) if mk is None or mk < v - 0.5 else (mk, 6)  # clear of a marker at or above the bar top
            ax.annotate(f"{v:.1f}", (b.get_x() + b.get_width() / 2, max(v, y)), xytext=(0, lift),
                        textcoords="offset points", ha="center", va="bottom", fontsize=MIN_FONT, zorder=5)
        if marks_label:
            _paper_marks(ax, pos, marks, 22, marks_label)


def _paper_marks(ax, x, y, size, label):
    """The paper's values as white diamonds over the bars."""
    ax.scatter(x, y, marker="D", s=size, facecolor="white", edgecolor="black", linewidth=1, zorder=3, label=label)


def _plot_categories(plt, stats, paper, splits, name):
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    x = np.arange(len(CATEGORIES))
    t1 = paper["table1_categories"]
    _split_bars(ax, x, [(s, [stats["boxes"][s]["categories"][c]["percent"] for c in CATEGORIES],
                         f"{s} (ours, n={stats['boxes'][s]['boxes']:,})") for s in splits],
                markers={s: ([t1[s][c]["percent"] for c in CATEGORIES], f"{s} (paper, Table 1)")
                         for s in splits if s in PAPER_SPLITS})
    ax.set_xticks(x, CATEGORIES)
    ax.set(ylabel="% of boxes", title=PLOT_TITLES[name])
    ax.grid(axis="x", visible=False)
    ax.set_ylim(0, max(ax.get_ylim()[1], 5) * 1.08)
    ax.legend(fontsize=MIN_FONT, ncol=2)
    return fig


_SIZE_BOUNDS = (0.01, 0.03, 0.10, 0.25, 0.40, 1.0)  # the identify size words' bounds on R
# per histogram: (stats key, the legend's median, dashed bounds, room above the highest bin, x label, legend place)
_HISTOGRAMS = {
    "aspect_ratio": ("ar_histogram", lambda b: f"median {b['aspect_ratio']['all']['median']:.3f}", (0.67, 1.5), 1.14,
                     "aspect ratio AR = h / w (log scale)", "center right"),
    "box_sizes": ("area_histogram", lambda b: f"median R {b['area_ratio']['median']:.4f}", _SIZE_BOUNDS[1:-1], 1.3,
                  "area ratio R = w*h / (W*H) (log scale); dashed: identify size thresholds", "upper left"),
}


def _plot_histogram(plt, stats, paper, splits, name):
    """stats["boxes"][split][key] as % of boxes per inner bin, an outline over a pale fill per split,
    on a log x axis with the rule's bounds dashed and named; the aspect ratio also says how much of a
    split lies outside the bins (under/overflow)."""
    key, median, bounds, headroom, xlabel, legend_place = _HISTOGRAMS[name]
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    for i, s in enumerate(splits):
        h = stats["boxes"][s][key]
        edges, counts = np.asarray(h["edges"]), np.asarray(h["all"], dtype=float)
        inner = counts[1:-1] / counts.sum() * 100.0
        ax.stairs(inner, edges, color=_split_color(s, i), linewidth=1.6, label=f"{s} ({median(stats['boxes'][s])})")
        ax.stairs(inner, edges, color=_split_color(s, i), alpha=0.12, fill=True)
        outside = (counts[0] + counts[-1]) / counts.sum() * 100.0
        if name == "aspect_ratio" and outside >= 0.05:
            ax.annotate(f"{s}: {outside:.1f}% outside {edges[0]:g}..{edges[-1]:g}", (0.99, 0.97 - 0.07 * i),
                        xycoords="axes fraction", ha="right", va="top", fontsize=MIN_FONT, color=_split_color(s, i))
    ax.set_xscale("log")
    for v in bounds:
        ax.axvline(v, color="0.35", linestyle="--", linewidth=0.9)
    ymax = ax.get_ylim()[1] * headroom
    ax.set_ylim(0, ymax)
    if name == "aspect_ratio":
        for x, label in ((0.3, "AR<=0.67"), (1.0, "0.67<AR\n<=1.5"), (3.5, "AR>1.5")):
            # two lines far enough apart that a browser's font never makes them touch
            ax.text(x, ymax * 0.985, label, ha="center", va="top", fontsize=MIN_FONT, color="0.3", linespacing=1.5)
    else:
        words = ("very small", "small", "medium", "large", "very large")
        for lo, hi, w in zip(_SIZE_BOUNDS, _SIZE_BOUNDS[1:], words):
            ax.text((lo * hi) ** 0.5 if w != "very small" else 0.027, ymax * 0.985, w, va="top", fontsize=MIN_FONT,
                    ha="right" if w == "very small" else "center", color="0.3", rotation=0 if w == "very small" else 90)
    ax.set(xlabel=xlabel, ylabel="% of boxes per bin", title=PLOT_TITLES[name])
    ax.legend(fontsize=MIN_FONT, loc=legend_place)
    return fig


def _plot_ar_buckets(plt, stats, paper, splits, name):
    t4 = paper["table4_aspect_ratio_by_category"]
    bars, y = [], 0.0  # (label, bucket percents, the paper's, y) per bar
    for cat in CATEGORIES:
        start = y
        for s in splits:
            a = stats["boxes"][s]["aspect_ratio"]["by_category"].get(cat)
            if a:
                bars.append((f"{cat} · {s}", [a["buckets"][b]["percent"] for b in AR_BUCKETS], False, y))
                y += 1
            if s in PAPER_SPLITS:
                bars.append((f"{s}, paper T4", list(t4[s][cat]["buckets"]), True, y))
                y += 1
        if y > start:
            y += 0.6                                   # gap between categories
    labels, rows, is_paper, ys = (list(column) for column in zip(*bars))
    fig, ax = plt.subplots(figsize=(7.5, 0.26 * y + 1.3))
    left = [0.0] * len(rows)
    for j, bucket in enumerate(AR_BUCKETS):
        vals = [r[j] for r in rows]
        for yy, lft, v, pap in zip(ys, left, vals, is_paper):
            ax.barh(yy, v, left=lft, height=0.8, color=BUCKET_COLORS[j], alpha=0.45 if pap else 1.0,
                    edgecolor="white", linewidth=0.5, label=bucket if yy == ys[0] else None)
            if v >= 6:
                ax.text(lft + v / 2, yy, f"{v:.1f}", ha="center", va="center", fontsize=MIN_FONT,
                        color="white" if (j != 1 and not pap) else "black")
        left = [a + b for a, b in zip(left, vals)]
    ax.set_yticks(ys, labels, fontsize=MIN_FONT)
    for tick, pap in zip(ax.get_yticklabels(), is_paper):
        if pap:
            tick.set(color="0.35", fontstyle="italic")
    ax.invert_yaxis()
    ax.set(xlim=(0, 100), xlabel="% of the category's boxes (pale bars, italic labels: the paper's Table 4)")
    ax.grid(axis="y", visible=False)
    ax.legend(fontsize=MIN_FONT, ncol=3, loc="lower center", bbox_to_anchor=(0.5, 1.0), borderaxespad=0.3)
    ax.set_title(PLOT_TITLES[name], pad=24)
    fig.tight_layout()
    return fig


def _plot_shapes(plt, stats, paper, splits, name):
    dl = stats.get("dialogues", {})
    dsplits = [s for s in stats["splits"] if dl.get(s, {}).get("identify_shapes")]
    if not splits and not dsplits:
        return None
    panels = [("boxes", splits)] + ([("identify", dsplits)] if dsplits else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(3.9 * len(panels), 3.4), squeeze=False)
    x = np.arange(len(SHAPE_ORDER))
    for ax, (kind, ss) in zip(axes[0], panels):
        series = []
        for s in ss:
            src = stats["boxes"][s]["shapes"]["all"] if kind == "boxes" else dl[s]["identify_shapes"]
            n = sum(src.get(w, {}).get("count", 0) for w in SHAPE_ORDER)
            series.append((s, [src.get(w, {}).get("percent", 0.0) for w in SHAPE_ORDER], f"{s} (n={n:,})"))
        _split_bars(ax, x, series)
        ax.set_xticks(x, SHAPE_ORDER)
        ax.grid(axis="x", visible=False)
        ax.set(ylim=(0, 100), ylabel="%",
               title="every valid box (w/h rule)" if kind == "boxes" else "shape stated in identify answers")
        ax.legend(fontsize=MIN_FONT, loc="upper left")
    fig.suptitle(PLOT_TITLES[name], fontsize=10)
    fig.tight_layout()
    return fig


def _plot_tasks(plt, stats, paper, _, name):
    from matplotlib.patches import Patch

    dl = stats.get("dialogues", {})
    splits = [s for s in stats["splits"] if dl.get(s)]
    if not splits:
        return None
    f89 = paper["figures8_9_tasks"]
    tasks = [t for t in TASKS if any(t in dl[s]["tasks"] for s in splits)]
    fig, axes = plt.subplots(1, len(splits), figsize=(4.6 * len(splits), 0.42 * len(tasks) + 1.4), squeeze=False, sharey=True)
    y = list(range(len(tasks)))[::-1]
    for ax, s in zip(axes[0], splits):
        pct = {t: f89[s][t]["percent"] for t in tasks if t in f89.get(s, {})} if s in PAPER_SPLITS else {}
        _task_bars(ax, dl[s], tasks, y, pct)
        if s in PAPER_SPLITS:
            _paper_marks(ax, [pct[t] for t in tasks if t in pct], [yy for yy, t in zip(y, tasks) if t in pct], 20,
                         f"paper (Fig. {8 if s == 'train' else 9})")
        handles = [Patch(color=SUBSET_COLORS["single"], label="single (or whole task)"),
                   Patch(color=SUBSET_COLORS["multi"], label="multi")] + ax.get_legend_handles_labels()[0]
        ax.legend(handles=handles, fontsize=MIN_FONT, loc="upper right", bbox_to_anchor=(1.0, 0.93))
        ax.set_yticks(y, [TASK_LABELS[t] for t in tasks])
        ax.set(xlim=(0, 118), xlabel="% of the split's dialogues", title=f"{s}: {dl[s]['dialogues']:,} dialogues")
        ax.grid(axis="y", visible=False)
    fig.suptitle(PLOT_TITLES[name], fontsize=10, x=0.02, ha="left")
    fig.tight_layout()
    return fig


def _task_bars(ax, d, tasks, y, paper_pct):
    """One split's bar per task, stacked by subset, its count written right of the bar and of the
    paper's marker (paper_pct: {task: the paper's percent})."""
    for yy, t in zip(y, tasks):
        e = d["tasks"].get(t)
        if not e:
            continue
        subsets = e.get("subsets") or {"all": {"percent": e["percent"], "count": e["count"]}}
        left = 0.0
        for sub, v in subsets.items():
            ax.barh(yy, v["percent"], left=left, height=0.7, color=SUBSET_COLORS.get(sub, "#8C8C8C"),
                    edgecolor="white", linewidth=0.5)
            left += v["percent"]
        ax.text(max(left, paper_pct.get(t, 0.0)) + 2.5, yy, f"{e['count']:,} ({e['percent']:.1f}%)", va="center",
                fontsize=MIN_FONT)


def _plot_image_sizes(plt, stats, paper, splits, name, top=8):
    totals = collections.Counter()
    for s in splits:
        totals.update(stats["boxes"][s]["image_sizes"])
    keys = [k for k, _ in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:top]]
    has_other = len(totals) > top
    labels = keys + (["other"] if has_other else [])
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    series = []
    for s in splits:
        sizes = stats["boxes"][s]["image_sizes"]
        n = stats["boxes"][s]["images"]
        vals = [sizes.get(k, 0) for k in keys] + ([n - sum(sizes.get(k, 0) for k in keys)] if has_other else [])
        series.append((s, [100.0 * v / n for v in vals], f"{s} ({n:,} images)"))
    x = np.arange(len(labels))
    _split_bars(ax, x, series, annotate=False)
    ax.set_xticks(x, labels, rotation=0 if len(labels) <= 6 else 30, ha="center" if len(labels) <= 6 else "right")
    ax.set(ylabel="% of images", xlabel="image size W x H (pixels)", title=PLOT_TITLES[name])
    ax.grid(axis="x", visible=False)
    ax.legend(fontsize=MIN_FONT)
    return fig


def _plot_cells(plt, stats, paper, splits, name):
    fig, axes = plt.subplots(1, len(splits), figsize=(2.7 * len(splits) + 1.0, 3.0), squeeze=False,
                             layout="constrained")
    grids = [np.array([[stats["boxes"][s]["cells"][f"{r} {c}"]["percent"] for c in ("left", "center", "right")]
                       for r in ("top", "middle", "bottom")]) for s in splits]
    vmax = max(float(g.max()) for g in grids) or 1.0
    for i, (ax, s, g) in enumerate(zip(axes[0], splits, grids)):
        im = ax.imshow(g, cmap="Blues", vmin=0, vmax=vmax)
        for (r, c), v in np.ndenumerate(g):
            ax.text(c, r, f"{v:.1f}%", ha="center", va="center", fontsize=MIN_FONT,
                    color="white" if v > vmax * 0.6 else "black")
        ax.set_xticks(range(3), ["left", "center", "right"], fontsize=MIN_FONT)
        ax.set_yticks(range(3), ["top", "middle", "bottom"] if i == 0 else [], fontsize=MIN_FONT)
        ax.tick_params(length=0)
        ax.grid(False)
        ax.set_title(f"{s} ({stats['boxes'][s]['boxes']:,} boxes)", fontsize=9)
        ax.spines[:].set_visible(False)
    fig.colorbar(im, ax=list(axes[0]), shrink=0.8, label="% of boxes")
    fig.suptitle(PLOT_TITLES[name], fontsize=10)
    return fig
