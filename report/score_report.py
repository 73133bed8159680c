"""Benchmark reports: report.md (Table-3-style) and report.html (one self-contained file).

    render_markdown(models_metrics, breakdowns=None, extra_sections=())   # report_model(...) through report.md.j2
    render_html(models_metrics, breakdowns=None, extra_sections=())       # report_model(...) through report.html.j2

Each report is the one typed model of the values it shows (`report_model` -> `ScoreReport`) and a
Jinja2 template beside this module that holds the words (report_parts.j2: the notes both print and
the Markdown table); leaderboard.md is render_leaderboard_md's rows through leaderboard.md.j2.

`models_metrics` is a list of metrics.json dicts (docs/rules.md section 12), `breakdowns` maps a model name to
its breakdown.json dict (per category / per size). An extra section is a `Section(title, html=...,
markdown=...)`, or any object with those attributes, or a callable returning one; sections are
appended in order after the built-in ones (a dataset section and a samples section can be added
this way without touching this module; the scoring pipeline passes its samples section and, with
--stats, its dataset section, both built by sarchat.report.sample_sections from its own outputs).
`write_reports(output_dir, ...)` writes report.md and report.html in one go.

Charts are drawn with matplotlib's Agg backend into inline SVG, so report.html has no external
resource: a radar chart of the six task scores per model (as the paper's Figure 1), grouped bar
charts of the task scores per category and per object size (grounding: recall per size), and
tables of grounding's boxes per category and size and of classification's per-class counts with
its confusion matrix as a heat-table (docs/scoring.md, "Breakdowns"). The paper's published Table 3 rows come
from report/paper_table3.json and are labelled as the paper's everywhere they appear.
"""
import datetime
import html
import json
import math
import os
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from sarchat import __version__ as TOOLKIT_VERSION
from sarchat.report.stats_report import Table, pyplot, save_figure
from sarchat.transforms.categories import CATEGORY_INDEX
from sarchat.transforms.fileio import join_path, write_text
from sarchat.transforms.geometry import IDENTIFY_SIZES
from sarchat.transforms.rendering import render
from sarchat.transforms.score.metrics import COLUMNS, TASK_COLUMNS, overall_score, task_score
from sarchat.transforms.tasks import COLUMN_LABELS, TASK_LABELS, TASKS  # noqa: F401 (re-exported)

PAPER_LABEL = "paper, Table 3"


@dataclass
class Section:
    """An extra report section: a title and its body as HTML and/or Markdown."""

    title: str
    html: str = ""
    markdown: str = ""


def load_paper_table():
    """The paper's published Table 3 (report/paper_table3.json)."""
    text = resources.files("sarchat.report").joinpath("paper_table3.json").read_text(encoding="utf-8")
    return json.loads(text)


def paper_task_scores(row):
    """Eq. 5 task scores recomputed from a paper row's published columns."""
    return {t: task_score(row["columns"].get(c) for c in TASK_COLUMNS[t]) for t in TASKS}


def paper_recomputed_overall(row, paper=None):
    """Eq. 4 from a paper row's columns and the paper's test task sizes (its Avg is not exactly this)."""
    paper = paper or load_paper_table()
    return overall_score(paper_task_scores(row), paper["test_task_counts"])


def _fmt(v, nd=2):
    return "–" if v is None else f"{v:.{nd}f}"


def _resolve_sections(extra_sections) -> list[Section]:
    """The extra sections as Sections: a callable called, None left out, a missing body empty."""
    given: list[Any] = [s() if callable(s) and not hasattr(s, "title") else s for s in extra_sections or ()]
    return [Section(s.title, getattr(s, "html", "") or "", getattr(s, "markdown", "") or "")
            for s in given if s is not None]


# ---------------------------------------------------------------------------------------------
# Tables (shared by Markdown and HTML)


def table3_rows(models_metrics, include_paper=True):
    """Rows of the Table-3-style table: [source, model, params, avg, *columns in paper order]."""
    # this run's rows ranked by their Avg score (highest first; a model without one last, then by name)
    ranked = sorted(models_metrics, key=lambda m: (m.get("overall") is None, -(m.get("overall") or 0.0), m["model"]))
    paper = load_paper_table()["rows"] if include_paper else []
    return ([["this run", m["model"], "", m.get("overall")] + [m["columns"].get(c) for c in COLUMNS] for m in ranked]
            + [[PAPER_LABEL, r["model"], r["params"], r["avg_score"]] + [r["columns"].get(c) for c in COLUMNS]
               for r in paper])


TABLE3_HEADER = ["Source", "Model", "Param", "Avg score"] + [COLUMN_LABELS[c] for c in COLUMNS]


def _ci(m):
    """The 95% interval of a metrics.json's (or leaderboard row's) overall score."""
    lo, hi = (m.get("overall_ci95") or [None, None])[:2]
    return "–" if lo is None else f"[{lo:.2f}, {hi:.2f}]"


def _total(m, key):
    return sum((v.get("count") or 0) if isinstance(v, dict) else (v or 0) for v in (m.get(key) or {}).values())


def summary_rows(models_metrics, breakdowns=None):
    """Per model: overall, 95% CI, unweighted mean, task scores, missing, inference errors, rejected."""
    rejected = {m: sum((b.get("rejected") or {}).values()) for m, b in (breakdowns or {}).items() if b}
    return [[m["model"], _fmt(m.get("overall")), _ci(m), _fmt(m.get("overall_macro"))]
            + [_fmt(m["tasks"].get(t)) for t in TASKS]
            + [str(m.get("missing_predictions", 0)), str(_total(m, "inference_errors")),
               str(rejected.get(m["model"], 0))]
            for m in models_metrics]


SUMMARY_HEADER = (["Model", "Overall (Eq. 4)", "95% CI", "Unweighted mean"] + [TASK_LABELS[t] for t in TASKS]
                  + ["Missing predictions", "Inference errors", "Rejected predictions"])


def _failure(v):
    """'rate (count)' of one task's failures: {'rate', 'count'}, or a bare count with no rate."""
    rate, count = (v.get("rate"), v.get("count")) if isinstance(v, dict) else (None, v)
    return f"{_fmt(rate, 1)} ({count or 0})"


def failure_rows(models_metrics, key="parse_failures"):
    """Per model: parse-failure (or inference-error) rate per task in percent (count in parentheses)."""
    return [[m["model"]] + [_failure((m.get(key) or {}).get(t)) for t in TASKS] for m in models_metrics]


TEMPLATE_SPREAD_HEADER = ["Model", "Task", "Templates", "Min", "Max", "Range", "Std dev", "Task score"]


def template_spread_rows(models_metrics):
    """One row per (model, task) with a per-template spread in its metrics.json (template_spread)."""
    return [[m["model"], TASK_LABELS[t], str(sp.get("templates", 0))]
            + [_fmt(sp.get(k)) for k in ("min", "max", "range", "stdev")] + [_fmt((m.get("tasks") or {}).get(t))]
            for m in models_metrics for t in TASKS if (sp := (m.get("template_spread") or {}).get(t))]


def provenance_lines(models_metrics):
    """One sentence per model: on which dataset version its predictions were made (docs/rules.md section 10)."""
    out = []
    for m in models_metrics:
        if "dataset_version" not in m:
            continue
        ds, pv = m.get("dataset_version"), m.get("predictions_dataset_version")
        if m.get("dataset_version_mismatch"):
            out.append(f"{m['model']}: WARNING: predictions made on dataset version {pv}, scored on version {ds} "
                       "(allowed by --allow-version-mismatch); these numbers are not comparable with the others")
        elif ds is None:
            out.append(f"{m['model']}: dataset version unknown (test rows given as files)"
                       + (f"; predictions made on {pv}" if pv else ""))
        elif pv is None:
            out.append(f"{m['model']}: dataset version {ds}; the predictions record no version (external "
                       "predictions): unknown whether they were made on this dataset")
        else:
            out.append(f"{m['model']}: dataset version {ds}, predictions made on the same version")
    return out


FAILURE_HEADER = ["Model"] + [TASK_LABELS[t] for t in TASKS]

# ---------------------------------------------------------------------------------------------
# Grounding and classification breakdowns (breakdown.json's grounding_boxes, classify_classes,
# classify_confusion; docs/scoring.md, "Breakdowns")

GROUNDING_BOX_HEADER = ["Category", "Truth boxes", "Predicted boxes", "TP", "FP", "FN", "Precision", "Recall"]
GROUNDING_SIZE_HEADER = ["Object size", "Truth boxes", "Found", "Recall"]
CLASS_HEADER = ["Class", "Support", "Predicted", "TP", "FP", "FN", "Precision", "Recall", "F1", "Score (Eq. 3)"]
CONFUSION_CORNER = "truth ↓, predicted →"


def _category_rows(entries, counts, rates):
    """Rows of {category: entry}, categories in order: the entry's counts as they are, then its rates."""
    return [[c] + [v[k] for k in counts] + [_fmt(v[k]) for k in rates]
            for c, v in sorted(entries.items(), key=lambda kv: _cat_order(kv[0]))]


def _t3_cells(row):
    return [row[0], row[1], row[2] or "–"] + [_fmt(v) for v in row[3:]]


# ---------------------------------------------------------------------------------------------
# Header: what the report shows (data source, test split, versions, date, each model's backend)


def _utc_now():
    """The report's date. SOURCE_DATE_EPOCH (the reproducible-builds convention) fixes it, so two
    runs on the same inputs can give byte-identical reports; otherwise the current time, UTC."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    when = (datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) if epoch.isdigit()
            else datetime.datetime.now(datetime.timezone.utc))
    return when.strftime("%Y-%m-%d %H:%M UTC")


def _test_dialogues(context, models_metrics):
    n = (context or {}).get("dialogues")
    if n is None and models_metrics:
        n = sum((models_metrics[0].get("n") or {}).get("tasks", {}).values()) or None
    return n


def header_facts(context, models_metrics, now=None):
    """[(label, text)] of the report's header. `context` is the scorer's report context
    (score_inputs.report_context_of; None: only what metrics.json says); `now` the date shown."""
    ctx = context or {}
    src = ctx.get("source") or {"kind": "unknown", "name": "not recorded", "detail": ""}
    kind = {"synthetic": "SYNTHETIC", "dataset": "dataset", "unknown": "unknown"}.get(src.get("kind"), "unknown")
    source = f"{kind}: {src.get('name')}" + (f" ({src['detail']})" if src.get("detail") else "")
    images, dialogues = ctx.get("images"), _test_dialogues(ctx, models_metrics)
    split = ctx.get("split") or "test"
    version = ctx.get("dataset_version") or next(
        (m.get("dataset_version") for m in models_metrics if m.get("dataset_version")), None)
    facts = [("Data source", source),
             (f"Test split ({split})", f"{_count(images)} images, {_count(dialogues)} dialogues"),
             ("Dataset version", version or "unknown (test rows given as files)"),
             ("Toolkit", f"sarchat {TOOLKIT_VERSION}"),
             ("Date", now or _utc_now())]
    if ctx.get("dataset"):
        facts.insert(1, ("Dataset folder", ctx["dataset"]))
    return facts


def _count(n):
    return "unknown" if n is None else f"{n:,}"


def model_rows(context, models_metrics):
    """[model, backend, adapter, run folder] per model (from the run manifest beside its predictions)."""
    known = (context or {}).get("models") or {}
    return [[m["model"], k.get("backend") or "unknown", k.get("adapter") or "unknown",
             k.get("run") or "– (no run manifest)"]
            for m, k in ((m, known.get(m["model"]) or {}) for m in models_metrics)]


MODEL_HEADER = ["Model", "Backend", "Adapter", "Run folder"]


def test_set_warning(context, models_metrics, paper=None):
    """A plain sentence when this run's test set is not the paper's (synthetic, or another size or
    other task sizes than the paper's test split), else None."""
    paper = paper or load_paper_table()
    paper_counts = paper["test_task_counts"]
    paper_n = sum(paper_counts.values())
    src = ((context or {}).get("source") or {}).get("kind")
    n = _test_dialogues(context, models_metrics)
    ours = (models_metrics[0].get("n") or {}).get("tasks") if models_metrics else None
    tail = (f"the paper's rows were measured on its SARDet-100K test split ({paper_n:,} dialogues), so they are "
            "not comparable with this run's rows.")
    if src == "synthetic":
        return f"Warning: this run's test set is synthetic ({_count(n)} dialogues made by `sarchat synth`); " + tail
    if n is not None and n != paper_n:
        return f"Warning: this run's test set is not the paper's: {_count(n)} dialogues; " + tail
    if ours and any(ours.get(t) != c for t, c in paper_counts.items()):
        return ("Warning: this run's test set is not the paper's: its task sizes differ from the paper's "
                "test split; " + tail)
    return None


def _slug(title):
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def _md_anchor(title):
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


# ---------------------------------------------------------------------------------------------
# The report's model: the values report.md and report.html show; report.md.j2 and report.html.j2
# (with report_parts.j2, what both print) hold the words.


@dataclass(frozen=True)
class ModelBreakdown:
    """One model's breakdown tables (docs/scoring.md, "Breakdowns"); None where its breakdown.json
    has no such part."""
    model: str
    categories: Table | None        # task score by category
    identify_sizes: Table | None    # identification score by object size
    grounding: Table | None         # grounding boxes by category
    grounding_sizes: Table | None   # grounding truth boxes found by object size (None: no row)
    classes: Table | None           # classification per class
    confusion: Table | None         # classification confusion matrix
    heat_rows: list                 # the confusion matrix as (truth label, [(count, css class, shade)])


@dataclass(frozen=True)
class Charts:
    """Inline SVG charts (report.html only)."""
    radar: str
    radar_paper: str | None         # the paper's rows on their own panel when the test set is another
    categories: list[str]
    sizes: list[str]


@dataclass(frozen=True)
class ScoreReport:
    """The values of report.md and report.html. A part without data is None (or empty) and the
    templates leave it out."""
    title: str
    paper_label: str
    facts: list[tuple[str, str]]
    models: Table | None            # each model's backend, adapter and run folder
    include_paper: bool
    warning: str | None             # the test set is not the paper's
    table3: Table
    table3_classes: list[str]       # "run" or "paper" per row of table3
    paper_avg: Table | None         # the paper's Avg as published beside Eq. 4 from its columns
    summary: Table
    parse_failures: Table
    inference_errors: Table
    provenance: list[str]
    unattributed_rejects: int
    template_spread: Table | None
    breakdowns: list[ModelBreakdown] | None  # one per model; None: no breakdown.json given
    charts: Charts | None           # None: no chart (report.md, --plots none)
    sections: list[Section]


def report_model(models_metrics, breakdowns=None, extra_sections=(), include_paper=True, unattributed_rejects=0,
                 context=None, now=None, charts=False, title="SARChat-Bench results") -> ScoreReport:
    """The report's values from the metrics.json and breakdown.json documents; `charts` draws them."""
    paper = load_paper_table() if include_paper else None
    warning = test_set_warning(context, models_metrics, paper) if include_paper else None
    t3 = table3_rows(models_metrics, include_paper)
    spread = template_spread_rows(models_metrics)
    return ScoreReport(
        title=title, paper_label=PAPER_LABEL, facts=header_facts(context, models_metrics, now),
        models=Table(MODEL_HEADER, model_rows(context, models_metrics), left=4) if models_metrics else None,
        include_paper=include_paper, warning=warning, table3=Table(TABLE3_HEADER, [_t3_cells(r) for r in t3], left=3),
        table3_classes=["run" if r[0] == "this run" else "paper" for r in t3],
        paper_avg=Table(["Model (paper)", "Avg as published", "Eq. 4 from its columns"],
                        [[r["model"], _fmt(r["avg_score"]), _fmt(paper_recomputed_overall(r, paper))]
                         for r in paper["rows"]]) if paper else None,
        summary=Table(SUMMARY_HEADER, summary_rows(models_metrics, breakdowns)),
        parse_failures=Table(FAILURE_HEADER, failure_rows(models_metrics)),
        inference_errors=Table(FAILURE_HEADER, failure_rows(models_metrics, "inference_errors")),
        provenance=provenance_lines(models_metrics), unattributed_rejects=unattributed_rejects,
        template_spread=Table(TEMPLATE_SPREAD_HEADER, spread, left=2) if spread else None,
        breakdowns=[model_breakdown(m["model"], breakdowns.get(m["model"]) or {}) for m in models_metrics]
        if breakdowns else None,
        charts=_charts(models_metrics, breakdowns, include_paper, warning) if charts else None,
        sections=_resolve_sections(extra_sections))


def model_breakdown(model, b) -> ModelBreakdown:
    """The breakdown tables of one model's breakdown.json dict `b`."""
    bc = b.get("by_category") or {}
    cats = sorted({c for v in bc.values() for c in v}, key=_cat_order)
    sizes = (b.get("by_size") or {}).get("identify") or {}
    boxes = b.get("grounding_boxes") or {}
    size_rows = [[s, v["truth_boxes"], v["found"], _fmt(v["recall"])] for s, v in (boxes.get("by_size") or {}).items()]
    grounding = _category_rows(boxes.get("by_category") or {}, ("truth_boxes", "predicted_boxes", "tp", "fp", "fn"),
                               ("precision", "recall"))
    classes, confusion, heat = _classify_tables(b)
    return ModelBreakdown(
        model=model,
        categories=Table(["Task"] + cats, [[TASK_LABELS[t]] + [_fmt(bc[t].get(c)) for c in cats] for t in bc])
        if bc else None,
        identify_sizes=Table(list(sizes), [[_fmt(v) for v in sizes.values()]]) if sizes else None,
        grounding=Table(GROUNDING_BOX_HEADER, grounding) if boxes else None,
        grounding_sizes=Table(GROUNDING_SIZE_HEADER, size_rows) if size_rows else None,
        classes=classes, confusion=confusion, heat_rows=heat)


def _classify_tables(b):
    """(per-class table, confusion matrix, its heat rows) of a breakdown.json dict; (None, None, []) without one."""
    conf = b.get("classify_confusion")
    if not conf:
        return None, None, []
    rows = [[t] + list(row) for t, row in zip(conf["truth"], conf["counts"])]
    classes = _category_rows(b.get("classify_classes") or {}, ("support", "predicted", "tp", "fp", "fn"),
                             ("precision", "recall", "f1", "score"))
    return Table(CLASS_HEADER, classes), Table([CONFUSION_CORNER] + list(conf["predicted"]), rows), heat_rows(rows)


def heat_rows(rows):
    """The confusion matrix as a heat-table: every count printed, the cell shaded by its count over
    the largest count (green on the diagonal, red off it, none for 0); the last row (none) has no
    diagonal."""
    vmax = max([v for r in rows for v in r[1:]] + [1])
    out = []
    for i, (label, *counts) in enumerate(rows):
        cells = []
        for j, v in enumerate(counts):
            diag = i == j and i < len(rows) - 1
            shade = f"rgba({'46,125,50' if diag else '198,40,40'},{0.12 + 0.5 * v / vmax:.3f})" if v else ""
            cells.append((v, "diag" if diag else ("zero" if not v else "off"), shade))
        out.append((label, cells))
    return out


def _charts(models_metrics, breakdowns, include_paper, warning):
    if include_paper and warning:
        # another test set: the paper's rows get their own panel, so no one reads one set of axes as a comparison
        radar = radar_svg(models_metrics, include_paper=False)
        radar_paper = radar_svg([], include_paper=True, paper_title=True)
    else:
        radar, radar_paper = radar_svg(models_metrics, include_paper), None
    if not breakdowns:
        return Charts(radar, radar_paper, [], [])
    per_model = [(m["model"], breakdowns.get(m["model"]) or {}) for m in models_metrics]
    return Charts(radar, radar_paper, category_charts(per_model), size_charts(per_model))


def render_markdown(models_metrics, breakdowns=None, extra_sections=(), include_paper=True, unattributed_rejects=0,
                    context=None, now=None):
    """report.md (report_model through report.md.j2)."""
    model = report_model(models_metrics, breakdowns, extra_sections, include_paper, unattributed_rejects, context, now)
    return render(__file__, "report.md.j2", contents=[], anchor=_md_anchor, **vars(model)).rstrip() + "\n"


def render_html(models_metrics, breakdowns=None, extra_sections=(), include_paper=True,
                title="SARChat-Bench results", unattributed_rejects=0, context=None, now=None, charts=True):
    """The whole report as one self-contained HTML page (inline SVG charts, inline CSS): a header
    saying what it shows, a table of contents, then the sections (each <h2> with an anchor).
    `charts=False` (`--plots none`) leaves out the matplotlib charts, the tables stay."""
    model = report_model(models_metrics, breakdowns, extra_sections, include_paper, unattributed_rejects, context, now,
                         charts, title)
    return _with_toc(render(__file__, "report.html.j2", **vars(model)))


def render_leaderboard_md(board):
    header = ["Rank", "Model", "Overall", "95% CI", "Unweighted"] + [TASK_LABELS[t] for t in TASKS] + [
        "Parse failures", "Inference errors", "Missing", "Rejected"]
    rows = [[r["rank"], r["model"], _fmt(r["overall"]), _ci(r), _fmt(r["overall_macro"])]
            + [_fmt(r["tasks"].get(t)) for t in TASKS]
            + [r["parse_failures"], r.get("inference_errors", 0), r["missing_predictions"], r["rejected"]] for r in board]
    return render(__file__, "leaderboard.md.j2", table=Table(header, rows))


# ---------------------------------------------------------------------------------------------
# Charts (matplotlib, Agg, inline SVG)


def _svg(fig):
    return svg_element(save_figure(fig, "svg", dpi=None, metadata={"Date": None}).decode("utf-8"))


def svg_element(svg):
    """An SVG file's text from its <svg> element on (no XML declaration inside a page)."""
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


def _cat_order(c):
    return CATEGORY_INDEX.get(c, 99)


def radar_svg(models_metrics, include_paper=True, paper_title=False):
    """Radar chart of the six task scores per model (the paper's Figure 1).

    This run's models: thick saturated lines with markers, drawn on top. The paper's models: thin
    lines in muted colours, each named in the legend and, in the page, on hover (an SVG <title> on
    its line). Text is kept as SVG text (svg.fonttype none) so that it stays readable and
    searchable; task labels sit outside the 100 circle (tick padding) and the radial tick labels
    between two axes, so neither collides with a marker."""
    plt = pyplot()
    n = len(TASKS)
    angles = [2 * math.pi * i / n for i in range(n)] + [0.0]
    fig = plt.figure(figsize=(9.5, 6.2))
    ax = fig.add_axes([0.04, 0.08, 0.52, 0.8], polar=True)
    ax.set_theta_offset(math.pi / 2)
    ax.set_theta_direction(-1)
    ax.set_xticks(angles[:-1], [TASK_LABELS[t].replace(" ", "\n", 1) for t in TASKS], fontsize=9)
    ax.tick_params(axis="x", pad=24)
    ax.set_ylim(0, 100)
    ax.set_yticks([20, 40, 60, 80, 100], ["20", "40", "60", "80", "100"], fontsize=9, color="#555")
    ax.set_rlabel_position(180 / n)  # halfway between the first two axes: no line passes there at a marker
    titles = {}  # gid -> the line's name on hover
    styles = ("-", "--", ":", "-.")
    handles_paper = []
    if include_paper:
        muted = plt.get_cmap("tab20")
        for i, r in enumerate(load_paper_table()["rows"]):
            s = paper_task_scores(r)
            vals = [s[t] or 0.0 for t in TASKS]
            titles[f"radar-paper-{i}"] = f"{PAPER_LABEL}: {r['model']}"
            handles_paper += ax.plot(angles, vals + vals[:1], color=muted((2 * i + 1) % 20), linewidth=1.0,
                                     linestyle=styles[(i // 10) % len(styles)], alpha=0.9, zorder=2,
                                     label=f"{r['model']} ({r.get('params') or '?'})", gid=f"radar-paper-{i}")
    cmap = plt.get_cmap("tab10")
    handles_ours = []
    for i, m in enumerate(models_metrics):
        vals = [m["tasks"].get(t) or 0.0 for t in TASKS]
        titles[f"radar-run-{i}"] = f"this run: {m['model']}"
        # markers and line styles keep models with equal scores on some tasks apart
        handles_ours += ax.plot(angles, vals + vals[:1], color=cmap(i % 10), linewidth=2.6, marker="o", markersize=5,
                                linestyle=styles[i % len(styles)], label=m["model"], zorder=5, gid=f"radar-run-{i}")
        ax.fill(angles, vals + vals[:1], color=cmap(i % 10), alpha=0.06, zorder=4)
    if handles_ours:
        leg = fig.legend(handles=handles_ours, loc="upper left", bbox_to_anchor=(0.6, 0.95), fontsize=9,
                         frameon=False, title="this run", title_fontsize=9)
        leg._legend_box.align = "left"
    if handles_paper:
        fig.legend(handles=handles_paper, loc="upper left", bbox_to_anchor=(0.6, 0.95 - 0.045 * (len(handles_ours) + 2)),
                   fontsize=9, frameon=False, ncol=2, title=f"{PAPER_LABEL} (thin lines)", title_fontsize=9,
                   columnspacing=1.0, handlelength=2.2)
    fig.suptitle("The paper's task scores (%), its test split" if paper_title else "Task scores (%)",
                 fontsize=11, x=0.3, y=0.99)
    svg = _svg(fig)
    for gid, text in titles.items():  # names on hover: an SVG <title> as the first child of the line's group
        svg = svg.replace(f'<g id="{gid}">', f'<g id="{gid}" class="radar-line"><title>{html.escape(text)}</title>', 1)
    return svg


def grouped_bars_svg(title, groups, series, ylabel="score (%)"):
    """Grouped bar chart: `groups` are the x labels, `series` is [(name, [value or None per group])]."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(groups) + 2.5), 3.4))
    k = max(1, len(series))
    width = 0.8 / k
    cmap = plt.get_cmap("tab10")
    for i, (name, values) in enumerate(series):
        xs = [g + (i - (k - 1) / 2) * width for g in range(len(groups))]
        ys = [v if v is not None else 0.0 for v in values]
        bars = ax.bar(xs, ys, width=width * 0.95, color=cmap(i % 10), label=name)
        for b, v in zip(bars, values):
            if v is None:
                b.set_alpha(0.0)
    ax.set_xticks(range(len(groups)), groups, fontsize=9)
    ax.set_ylim(0, 105)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    if len(series) > 1 or series:
        ax.legend(fontsize=9, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _svg(fig)


def category_charts(per_model):
    """One grouped bar chart per task with a per-category breakdown (count, identify, refer); per_model:
    [(model, its breakdown.json)]."""
    per_model = [(model, b.get("by_category", {})) for model, b in per_model]
    charts = []
    for t in dict.fromkeys(t for _, by_task in per_model for t in by_task):  # tasks in order of appearance
        cats = sorted({c for _, by_task in per_model for c in (by_task.get(t) or {})}, key=_cat_order)
        series = [(model, [(by_task.get(t) or {}).get(c) for c in cats]) for model, by_task in per_model]
        charts.append(grouped_bars_svg(f"{TASK_LABELS[t]}: task score by category", cats, series))
    return charts


def size_charts(per_model):
    """Identification's score and grounding's recall per object size, each a grouped bar chart over the
    size words any model has (smallest first), one series per model, where a model has them;
    per_model: [(model, its breakdown.json)]."""
    identify = [(model, (b.get("by_size") or {}).get("identify") or {}) for model, b in per_model]
    grounding = [(model, (b.get("grounding_boxes") or {}).get("by_size") or {}) for model, b in per_model]
    recall = [(model, {s: (v or {}).get("recall") for s, v in by_size.items()}) for model, by_size in grounding]
    charts = []
    for title, ylabel, values in (("Cross-modal identification: score by object size", "score (%)", identify),
                                  ("Spatial grounding: truth boxes found by object size", "recall (%)", recall)):
        present = [s for s in reversed(IDENTIFY_SIZES) if any(s in by_size for _, by_size in values)]
        if present:
            series = [(model, [by_size.get(s) for s in present]) for model, by_size in values]
            charts.append(grouped_bars_svg(title, present, series, ylabel=ylabel))
    return charts


def _with_toc(page):
    """Give every <h2> an anchor and put a table of contents where the page says @@TOC@@."""
    titles, seen = [], set()

    def add_id(m):
        text = re.sub(r"<[^>]+>", "", m.group(1))
        sid = "sec-" + _slug(html.unescape(text))
        while sid in seen:
            sid += "-2"
        seen.add(sid)
        titles.append((sid, text))
        # the id on an empty anchor just before the heading keeps the heading itself a bare <h2>
        return f"<a class='anchor' id='{sid}'></a><h2>{m.group(1)}</h2>"

    page = re.sub(r"<h2>(.*?)</h2>", add_id, page)
    toc = ("<nav class='toc' id='contents'><b>Contents</b><ol>"
           + "".join(f"<li><a href='#{sid}'>{text}</a></li>" for sid, text in titles) + "</ol></nav>")
    return page.replace("@@TOC@@", toc, 1)



def write_reports(output_dir, models_metrics, breakdowns=None, extra_sections=(), unattributed_rejects=0,
                  context=None, now=None, charts=True):
    """Write report.md and report.html into `output_dir` (local or gs://); `context`: what the header
    says about the inputs (score_inputs.report_context_of), `now`: the date shown (default: now, UTC)."""
    now = now or _utc_now()
    write_text(join_path(output_dir, "report.md"),
               render_markdown(models_metrics, breakdowns, extra_sections, unattributed_rejects=unattributed_rejects,
                               context=context, now=now),
               "text/markdown")
    write_text(join_path(output_dir, "report.html"),
               render_html(models_metrics, breakdowns, extra_sections, unattributed_rejects=unattributed_rejects,
                           context=context, now=now, charts=charts),
               "text/html")
