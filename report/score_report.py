"""Benchmark reports: report.md (Table-3-style) and report.html (one self-contained file).

Functions only, so that other stages can add sections:

    render_markdown(models_metrics, breakdowns=None, extra_sections=())
    render_html(models_metrics, breakdowns=None, extra_sections=())

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
import io
import json
import math
import os
import re
from dataclasses import dataclass
from importlib import resources

from sarchat import __version__ as TOOLKIT_VERSION
from sarchat.transforms.categories import CATEGORY_INDEX
from sarchat.transforms.fileio import join_path, write_text
from sarchat.transforms.geometry import IDENTIFY_SIZES
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


def _resolve_sections(extra_sections):
    out = []
    for s in extra_sections or ():
        if callable(s) and not hasattr(s, "title"):
            s = s()
        if s is not None:
            out.append(s)
    return out


# ---------------------------------------------------------------------------------------------
# Tables (shared by Markdown and HTML)


def table3_rows(models_metrics, include_paper=True):
    """Rows of the Table-3-style table: [source, model, params, avg, *columns in paper order]."""
    rows = []
    # this run's rows ranked by their Avg score (highest first; a model without one last, then by name)
    ranked = sorted(models_metrics, key=lambda m: (m.get("overall") is None, -(m.get("overall") or 0.0), m["model"]))
    for m in ranked:
        rows.append(["this run", m["model"], "", m.get("overall")] + [m["columns"].get(c) for c in COLUMNS])
    if include_paper:
        for r in load_paper_table()["rows"]:
            rows.append([PAPER_LABEL, r["model"], r["params"], r["avg_score"]]
                        + [r["columns"].get(c) for c in COLUMNS])
    return rows


TABLE3_HEADER = ["Source", "Model", "Param", "Avg score"] + [COLUMN_LABELS[c] for c in COLUMNS]


def _total(m, key):
    return sum((v.get("count") or 0) if isinstance(v, dict) else (v or 0) for v in (m.get(key) or {}).values())


def summary_rows(models_metrics, breakdowns=None):
    """Per model: overall, 95% CI, unweighted mean, task scores, missing, inference errors, rejected."""
    rows = []
    for m in models_metrics:
        b = (breakdowns or {}).get(m["model"]) or {}
        lo, hi = (m.get("overall_ci95") or [None, None])[:2]
        ci = "–" if lo is None else f"[{lo:.2f}, {hi:.2f}]"
        rows.append([m["model"], _fmt(m.get("overall")), ci, _fmt(m.get("overall_macro"))]
                    + [_fmt(m["tasks"].get(t)) for t in TASKS]
                    + [str(m.get("missing_predictions", 0)), str(_total(m, "inference_errors")),
                       str(sum((b.get("rejected") or {}).values()))])
    return rows


SUMMARY_HEADER = (["Model", "Overall (Eq. 4)", "95% CI", "Unweighted mean"] + [TASK_LABELS[t] for t in TASKS]
                  + ["Missing predictions", "Inference errors", "Rejected predictions"])


def _failure_rate(m, t, key="parse_failures"):
    v = (m.get(key) or {}).get(t)
    return v.get("rate") if isinstance(v, dict) else None


def _failure_count(m, t, key="parse_failures"):
    v = (m.get(key) or {}).get(t)
    return v.get("count") if isinstance(v, dict) else v


def failure_rows(models_metrics, key="parse_failures"):
    """Per model: parse-failure (or inference-error) rate per task in percent (count in parentheses)."""
    return [[m["model"]] + [f"{_fmt(_failure_rate(m, t, key), 1)} ({_failure_count(m, t, key) or 0})" for t in TASKS]
            for m in models_metrics]


TEMPLATE_SPREAD_HEADER = ["Model", "Task", "Templates", "Min", "Max", "Range", "Std dev", "Task score"]
TEMPLATE_SPREAD_NOTE = ("Prompt sensitivity: each task's score (Eq. 5) computed over the samples of each question "
                        "template alone, then the spread of those per-template scores (population standard deviation; "
                        "range = max - min). A wide spread means the model's score depends on how it was asked. "
                        "metrics.json's template_spread has the score of every template.")


def template_spread_rows(models_metrics):
    """One row per (model, task) with a per-template spread in its metrics.json (template_spread)."""
    rows = []
    for m in models_metrics:
        spread = m.get("template_spread") or {}
        for t in TASKS:
            sp = spread.get(t)
            if not sp:
                continue
            rows.append([m["model"], TASK_LABELS[t], str(sp.get("templates", 0)), _fmt(sp.get("min")),
                         _fmt(sp.get("max")), _fmt(sp.get("range")), _fmt(sp.get("stdev")),
                         _fmt((m.get("tasks") or {}).get(t))])
    return rows


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


def _md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Grounding and classification breakdowns (breakdown.json's grounding_boxes, classify_classes,
# classify_confusion; docs/scoring.md, "Breakdowns")

GROUNDING_BOX_HEADER = ["Category", "Truth boxes", "Predicted boxes", "TP", "FP", "FN", "Precision", "Recall"]
GROUNDING_SIZE_HEADER = ["Object size", "Truth boxes", "Found", "Recall"]
CLASS_HEADER = ["Class", "Support", "Predicted", "TP", "FP", "FN", "Precision", "Recall", "F1", "Score (Eq. 3)"]
CONFUSION_CORNER = "truth ↓, predicted →"
BREAKDOWN_NOTE = ("Count, identification and referring: the task score over the samples about each category. "
                  "Spatial grounding: per truth box, boxes matched within their category at IoU 0.5; the score "
                  "of a category is the mean of the Ground Single and Ground Multi columns over that category's "
                  "boxes. Classification: per class label, Eq. 3 = TP / (TP + FP + FN) over the samples.")
GROUNDING_NOTE = ("Boxes of all grounding samples. A truth box is found when a predicted box of its category "
                  "matches it at IoU >= 0.5; FP: predicted boxes of the category left unmatched. The size word is "
                  "the truth box's area over the image area (the identification thresholds); a predicted box "
                  "has no truth size until it is matched, so sizes show recall only.")
CONFUSION_NOTE = ("Rows: truth labels; columns: predicted labels. A label both true and named counts on the "
                  "diagonal; each missed truth label is paired with each wrongly named label of the same sample; "
                  "a missed label with nothing wrongly named goes to the column none, a wrongly named label with "
                  "nothing missed to the row none. An unparseable or missing answer names nothing.")


def grounding_category_rows(breakdown):
    bc = ((breakdown or {}).get("grounding_boxes") or {}).get("by_category") or {}
    return [[c, v["truth_boxes"], v["predicted_boxes"], v["tp"], v["fp"], v["fn"], _fmt(v["precision"]),
             _fmt(v["recall"])] for c, v in sorted(bc.items(), key=lambda kv: _cat_order(kv[0]))]


def grounding_size_rows(breakdown):
    bs = ((breakdown or {}).get("grounding_boxes") or {}).get("by_size") or {}
    return [[s, v["truth_boxes"], v["found"], _fmt(v["recall"])] for s, v in bs.items()]


def classify_class_rows(breakdown):
    cc = (breakdown or {}).get("classify_classes") or {}
    return [[c, v["support"], v["predicted"], v["tp"], v["fp"], v["fn"], _fmt(v["precision"]), _fmt(v["recall"]),
             _fmt(v["f1"]), _fmt(v["score"])] for c, v in sorted(cc.items(), key=lambda kv: _cat_order(kv[0]))]


def confusion_table(breakdown):
    """(header, rows) of the classify confusion matrix, or None when there is none."""
    conf = (breakdown or {}).get("classify_confusion")
    if not conf:
        return None
    return ([CONFUSION_CORNER] + list(conf["predicted"]),
            [[t] + list(row) for t, row in zip(conf["truth"], conf["counts"])])


def _models_with(models_metrics, breakdowns, key):
    """[(model, its breakdown)] of the models whose breakdown has `key`, in the report's model order."""
    return [(m["model"], breakdowns.get(m["model"]) or {}) for m in models_metrics
            if (breakdowns.get(m["model"]) or {}).get(key)]


def _md_breakdown_sections(models_metrics, breakdowns):
    """The Markdown of the grounding and classification breakdowns (empty when no model has one)."""
    out = []
    grounding = _models_with(models_metrics, breakdowns, "grounding_boxes")
    if grounding:
        out += ["## Spatial grounding per category and per object size (this run)", "", GROUNDING_NOTE, ""]
        for model, b in grounding:
            out += [f"**{model}**, grounding boxes by category:", "",
                    _md_table(GROUNDING_BOX_HEADER, grounding_category_rows(b)), ""]
            if grounding_size_rows(b):
                out += [f"**{model}**, grounding truth boxes found by object size:", "",
                        _md_table(GROUNDING_SIZE_HEADER, grounding_size_rows(b)), ""]
    classify = _models_with(models_metrics, breakdowns, "classify_confusion")
    if classify:
        out += ["## Classification per class and confusion matrix (this run)", "",
                "Precision, recall, F1 and score in percent (– where undefined).", ""]
        for model, b in classify:
            header, rows = confusion_table(b) or ([], [])
            out += [f"**{model}**, classification per class:", "", _md_table(CLASS_HEADER, classify_class_rows(b)), "",
                    f"**{model}**, classification confusion matrix:", "", _md_table(header, rows), ""]
        out += [CONFUSION_NOTE, ""]
    return out


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
    rows = []
    for m in models_metrics:
        k = known.get(m["model"]) or {}
        rows.append([m["model"], k.get("backend") or "unknown", k.get("adapter") or "unknown",
                     k.get("run") or "– (no run manifest)"])
    return rows


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
# Markdown


def render_markdown(models_metrics, breakdowns=None, extra_sections=(), include_paper=True, unattributed_rejects=0,
                    context=None, now=None):
    paper = load_paper_table() if include_paper else None
    out = ["# SARChat-Bench results", ""]
    out += [f"- **{label}:** {text}" for label, text in header_facts(context, models_metrics, now)]
    out.append("")
    if models_metrics:
        out.append(_md_table(MODEL_HEADER, model_rows(context, models_metrics)))
        out.append("")
    out.append("@@TOC@@")
    out.append("")
    out.append("Scores in percent. Columns follow the paper's Table 3; *Avg score* is the overall score of "
               "Eq. 4 (task scores weighted by the number of test samples of the task, a task score being the "
               "mean of its non-null columns, Eq. 5). `–` marks a column without samples.")
    out.append("")
    out.append("## Table 3 (this run and the paper's published rows)" if include_paper else "## Table 3 (this run)")
    out.append("")
    warning = test_set_warning(context, models_metrics, paper) if include_paper else None
    if warning:
        out += [f"> **{warning}**", ""]
    out.append(_md_table(TABLE3_HEADER, [_t3_cells(r) for r in table3_rows(models_metrics, include_paper)]))
    out.append("")
    if include_paper:
        out.append(f"Rows marked *{PAPER_LABEL}* are copied from the paper (SARChat-Bench-2M, Table 3); they were "
                   "not produced by this toolkit. The paper's Avg score is shown as published; recomputing Eq. 4 "
                   "from its own columns and test task sizes gives slightly different values:")
        out.append("")
        out.append(_md_table(["Model (paper)", "Avg as published", "Eq. 4 from its columns"],
                             [[r["model"], _fmt(r["avg_score"]), _fmt(paper_recomputed_overall(r, paper))]
                              for r in paper["rows"]]))
        out.append("")
    out.append("## Summary per model (this run)")
    out.append("")
    out.append(_md_table(SUMMARY_HEADER, summary_rows(models_metrics, breakdowns)))
    out.append("")
    out.append("The 95% interval is a seeded percentile bootstrap of the overall score that resamples the test "
               "samples of each task with replacement. Unparseable answers and missing predictions score as misses.")
    out.append("")
    out.append("## Parse failures per task, % of the task's samples (count)")
    out.append("")
    out.append(_md_table(FAILURE_HEADER, failure_rows(models_metrics)))
    out.append("")
    out.append("## Inference errors per task, % of the task's samples (count)")
    out.append("")
    out.append(_md_table(FAILURE_HEADER, failure_rows(models_metrics, "inference_errors")))
    out.append("")
    out.append("Samples whose prediction row carries an error (the model was never heard); they score as misses "
               "and are not parse failures.")
    out.append("")
    prov = provenance_lines(models_metrics)
    if prov:
        out.append("## Dataset version")
        out.append("")
        out += [f"- {line}" for line in prov]
        out.append("")
    if unattributed_rejects:
        out.append(f"{unattributed_rejects} malformed prediction lines belong to no model (files of several models): "
                   "see rejected.jsonl.")
        out.append("")
    spread_rows = template_spread_rows(models_metrics)
    if spread_rows:
        out.append("## Prompt sensitivity: score per question template")
        out.append("")
        out.append(_md_table(TEMPLATE_SPREAD_HEADER, spread_rows))
        out.append("")
        out.append(TEMPLATE_SPREAD_NOTE)
        out.append("")
    if breakdowns:
        out.append("## Per category and per object size (this run)")
        out.append("")
        for m in models_metrics:
            b = breakdowns.get(m["model"]) or {}
            bc = b.get("by_category") or {}
            if bc:
                cats = sorted({c for v in bc.values() for c in v}, key=_cat_order)
                out.append(f"**{m['model']}**, task score by category:")
                out.append("")
                out.append(_md_table(["Task"] + cats, [[TASK_LABELS[t]] + [_fmt(bc[t].get(c)) for c in cats]
                                                       for t in bc]))
                out.append("")
            bs = (b.get("by_size") or {}).get("identify") or {}
            if bs:
                out.append(f"**{m['model']}**, identification score by object size:")
                out.append("")
                out.append(_md_table(list(bs), [[_fmt(v) for v in bs.values()]]))
                out.append("")
        out.append(BREAKDOWN_NOTE)
        out.append("")
        out += _md_breakdown_sections(models_metrics, breakdowns)
    for s in _resolve_sections(extra_sections):
        out += _section_md(s)
    titles = [line[3:] for line in out if line.startswith("## ")]
    toc = "**Contents:** " + " · ".join(f"[{t}](#{_md_anchor(t)})" for t in titles)
    return "\n".join(toc if line == "@@TOC@@" else line for line in out).rstrip() + "\n"


def _section_md(s):
    return [f"## {s.title}", "", getattr(s, "markdown", "") or "", ""]


def render_leaderboard_md(board):
    header = ["Rank", "Model", "Overall", "95% CI", "Unweighted"] + [TASK_LABELS[t] for t in TASKS] + [
        "Parse failures", "Inference errors", "Missing", "Rejected"]
    rows = []
    for r in board:
        lo, hi = (r.get("overall_ci95") or [None, None])[:2]
        rows.append([r["rank"], r["model"], _fmt(r["overall"]), "–" if lo is None else f"[{lo:.2f}, {hi:.2f}]",
                     _fmt(r["overall_macro"])] + [_fmt(r["tasks"].get(t)) for t in TASKS]
                    + [r["parse_failures"], r.get("inference_errors", 0), r["missing_predictions"], r["rejected"]])
    return "# SARChat-Bench leaderboard\n\n" + _md_table(header, rows) + "\n"


# ---------------------------------------------------------------------------------------------
# Charts (matplotlib, Agg, inline SVG)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    matplotlib.rcParams["svg.fonttype"] = "none"  # chart text stays text: readable, searchable, measurable
    return plt


def _svg(fig):
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    _pyplot().close(fig)
    text = buf.getvalue()
    start = text.find("<svg")
    return text[start:] if start >= 0 else text


def _cat_order(c):
    return CATEGORY_INDEX.get(c, 99)


def radar_svg(models_metrics, include_paper=True, paper_title=False):
    """Radar chart of the six task scores per model (the paper's Figure 1).

    This run's models: thick saturated lines with markers, drawn on top. The paper's models: thin
    lines in muted colours, each named in the legend and, in the page, on hover (an SVG <title> on
    its line). Text is kept as SVG text (svg.fonttype none) so that it stays readable and
    searchable; task labels sit outside the 100 circle (tick padding) and the radial tick labels
    between two axes, so neither collides with a marker."""
    plt = _pyplot()
    import matplotlib as mpl

    mpl.rcParams["svg.hashsalt"] = "sarchat"
    mpl.rcParams["svg.fonttype"] = "none"
    n = len(TASKS)
    angles = [2 * math.pi * i / n for i in range(n)] + [0.0]
    fig = plt.figure(figsize=(9.5, 6.2))
    ax = fig.add_axes([0.04, 0.08, 0.52, 0.8], polar=True)
    ax.set_theta_offset(math.pi / 2)
    ax.set_theta_direction(-1)
    ax.set_xticks(angles[:-1])
    ax.set_xticklabels([TASK_LABELS[t].replace(" ", "\n", 1) for t in TASKS], fontsize=9)
    ax.tick_params(axis="x", pad=24)
    ax.set_ylim(0, 100)
    ax.set_yticks([20, 40, 60, 80, 100])
    ax.set_yticklabels(["20", "40", "60", "80", "100"], fontsize=9, color="#555")
    ax.set_rlabel_position(180 / n)  # halfway between the first two axes: no line passes there at a marker
    titles = {}
    handles_paper = []
    if include_paper:
        muted = plt.get_cmap("tab20")
        dashes = ("-", "--", ":", "-.")
        for i, r in enumerate(load_paper_table()["rows"]):
            s = paper_task_scores(r)
            vals = [s[t] or 0.0 for t in TASKS]
            gid = f"radar-paper-{i}"
            (line,) = ax.plot(angles, vals + vals[:1], color=muted((2 * i + 1) % 20), linewidth=1.0,
                              linestyle=dashes[(i // 10) % len(dashes)], alpha=0.9, zorder=2,
                              label=f"{r['model']} ({r.get('params') or '?'})")
            line.set_gid(gid)
            titles[gid] = f"{PAPER_LABEL}: {r['model']}"
            handles_paper.append(line)
    cmap = plt.get_cmap("tab10")
    styles = ("-", "--", ":", "-.")
    handles_ours = []
    for i, m in enumerate(models_metrics):
        vals = [m["tasks"].get(t) or 0.0 for t in TASKS]
        gid = f"radar-run-{i}"
        # markers and line styles keep models with equal scores on some tasks apart
        (line,) = ax.plot(angles, vals + vals[:1], color=cmap(i % 10), linewidth=2.6, linestyle=styles[i % len(styles)],
                          marker="o", markersize=5, label=m["model"], zorder=5)
        line.set_gid(gid)
        titles[gid] = f"this run: {m['model']}"
        ax.fill(angles, vals + vals[:1], color=cmap(i % 10), alpha=0.06, zorder=4)
        handles_ours.append(line)
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
    plt = _pyplot()
    import matplotlib as mpl

    mpl.rcParams["svg.hashsalt"] = "sarchat"
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
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, fontsize=9)
    ax.set_ylim(0, 105)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    if len(series) > 1 or series:
        ax.legend(fontsize=9, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _svg(fig)


def category_charts(models_metrics, breakdowns):
    """One grouped bar chart per task with a per-category breakdown (count, identify, refer)."""
    charts = []
    tasks = []
    for m in models_metrics:
        for t in ((breakdowns or {}).get(m["model"]) or {}).get("by_category", {}):
            if t not in tasks:
                tasks.append(t)
    for t in tasks:
        cats = sorted({c for m in models_metrics
                       for c in (((breakdowns or {}).get(m["model"]) or {}).get("by_category", {}).get(t) or {})},
                      key=_cat_order)
        series = []
        for m in models_metrics:
            bc = (((breakdowns or {}).get(m["model"]) or {}).get("by_category", {}).get(t)) or {}
            series.append((m["model"], [bc.get(c) for c in cats]))
        charts.append(grouped_bars_svg(f"{TASK_LABELS[t]}: task score by category", cats, series))
    return charts


def size_chart(models_metrics, breakdowns):
    sizes = list(reversed(IDENTIFY_SIZES))
    present = [s for s in sizes if any(
        s in ((((breakdowns or {}).get(m["model"]) or {}).get("by_size", {}).get("identify")) or {})
        for m in models_metrics)]
    if not present:
        return None
    series = []
    for m in models_metrics:
        bs = (((breakdowns or {}).get(m["model"]) or {}).get("by_size", {}).get("identify")) or {}
        series.append((m["model"], [bs.get(s) for s in present]))
    return grouped_bars_svg("Cross-modal identification: score by object size", present, series)


def grounding_size_chart(models_metrics, breakdowns):
    """Grouped bars of grounding's recall per object size word (smallest first), one series per model."""
    sizes = list(reversed(IDENTIFY_SIZES))
    per_model = [(m["model"], (((breakdowns or {}).get(m["model"]) or {}).get("grounding_boxes") or {}).get("by_size")
                  or {}) for m in models_metrics]
    present = [s for s in sizes if any(s in bs for _, bs in per_model)]
    if not present:
        return None
    series = [(model, [(bs.get(s) or {}).get("recall") for s in present]) for model, bs in per_model]
    return grouped_bars_svg("Spatial grounding: truth boxes found by object size", present, series,
                            ylabel="recall (%)")


def confusion_html(breakdown, model=""):
    """The classify confusion matrix as a heat-table: every count printed, the cell shaded by its
    count over the largest count (green on the diagonal, red off it, none for 0)."""
    table = confusion_table(breakdown)
    if table is None:
        return ""
    header, rows = table
    vmax = max([v for r in rows for v in r[1:]] + [1])
    h = [f"<div class='table-wrap'><table class='confusion' data-model='{html.escape(model, quote=True)}'><thead><tr>"
         + "".join(f"<th>{html.escape(str(c))}</th>" for c in header) + "</tr></thead><tbody>"]
    for i, r in enumerate(rows):
        cells = [f"<th class='l'>{html.escape(str(r[0]))}</th>"]
        for j, v in enumerate(r[1:]):
            diag = i == j and i < len(rows) - 1
            alpha = 0.0 if not v else 0.12 + 0.5 * v / vmax
            rgb = "46,125,50" if diag else "198,40,40"
            style = f" style='background:rgba({rgb},{alpha:.3f})'" if v else ""
            cells.append(f"<td class='{'diag' if diag else ('zero' if not v else 'off')}'{style}>{v}</td>")
        h.append("<tr>" + "".join(cells) + "</tr>")
    h.append("</tbody></table></div>")
    return "\n".join(h)


def _html_breakdown_sections(models_metrics, breakdowns):
    parts = []
    grounding = _models_with(models_metrics, breakdowns, "grounding_boxes")
    if grounding:
        parts.append("<h2>Spatial grounding per category and per object size</h2>")
        parts.append(f"<p class='note'>{html.escape(GROUNDING_NOTE)}</p>")
        for model, b in grounding:
            parts.append(f"<h3>{html.escape(model)}</h3><div class='bd-tables'>")
            parts.append("<figure>" + _html_table(GROUNDING_BOX_HEADER, grounding_category_rows(b), left=1,
                                                  cls="breakdown")
                         + "<figcaption>boxes by category</figcaption></figure>")
            if grounding_size_rows(b):
                parts.append("<figure>" + _html_table(GROUNDING_SIZE_HEADER, grounding_size_rows(b), left=1,
                                                      cls="breakdown")
                             + "<figcaption>recall by object size</figcaption></figure>")
            parts.append("</div>")
    classify = _models_with(models_metrics, breakdowns, "classify_confusion")
    if classify:
        parts.append("<h2>Classification per class and confusion matrix</h2>")
        parts.append(f"<p class='note'>{html.escape(CONFUSION_NOTE)} Precision, recall, F1 and score in percent "
                     "(– where undefined).</p>")
        for model, b in classify:
            parts.append(f"<h3>{html.escape(model)}</h3><div class='bd-tables'>")
            parts.append("<figure>" + confusion_html(b, model) + "<figcaption>confusion matrix (rows: truth, "
                         "columns: predicted)</figcaption></figure>")
            parts.append("<figure>" + _html_table(CLASS_HEADER, classify_class_rows(b), left=1, cls="breakdown")
                         + "<figcaption>per class</figcaption></figure>")
            parts.append("</div>")
    return parts


# ---------------------------------------------------------------------------------------------
# HTML

_CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:24px 32px;color:#222;max-width:1800px}
*{box-sizing:border-box} .table-wrap{overflow-x:auto;max-width:100%}
dl.facts{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:2px 14px;font-size:13px;margin:8px 0}
dl.facts dt{font-weight:600;color:#444} dl.facts dd{margin:0;overflow-wrap:anywhere} dd.synthetic{color:#9b1c1c;font-weight:600}
nav.toc{font-size:13px;margin:12px 0;padding:6px 12px;border:1px solid #ddd;border-radius:6px;background:#fafafa}
nav.toc ol{margin:4px 0;padding-left:22px;columns:2 260px} nav.toc a{color:#1a4f8b}
p.warn{color:#9b1c1c;font-weight:600;font-size:13px;max-width:1100px;border-left:4px solid #ef9a9a;padding-left:8px}
h1{font-size:24px;margin-bottom:4px} h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
p.note{color:#555;font-size:13px;max-width:1100px}
table{border-collapse:collapse;font-size:12px;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 5px;text-align:right;white-space:nowrap}
th{background:#f3f3f3;text-align:center;white-space:normal;min-width:44px;max-width:90px;vertical-align:bottom}
td.l{text-align:left}
tr.run td{background:#eef6ff;font-weight:600} tr.paper td{color:#555}
.charts{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.charts svg{max-width:100%;height:auto}
h3{font-size:15px;margin:20px 0 6px} h4{font-size:13px;margin:14px 0 4px}
ul.note{color:#555;font-size:13px;max-width:1100px}
figure{margin:0} figcaption{font-size:11px;color:#555;text-align:center;margin-top:2px}
.stats-plots figure.plot{max-width:100%} .stats-tables{overflow-x:auto}
.samples{display:flex;flex-direction:column;gap:18px}
.sample-body{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start} .sample-body table.qa{flex:1 1 420px;min-width:0;margin-top:0}
table.qa td{overflow-wrap:anywhere}
.sample{border:1px solid #ddd;border-radius:6px;padding:8px 12px;background:#fcfcfc}
.sample h3{margin:2px 0 8px;font-weight:600}
.panels{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start}
.panels img{display:block;border:1px solid #ccc;image-rendering:auto}
.noimg{width:200px;min-height:120px;padding:6px;border:1px dashed #bbb;color:#777;font-size:12px;display:flex;flex-direction:column;align-items:center;justify-content:center;text-align:center;overflow-wrap:anywhere;word-break:break-all}
input.zoom{display:none} label.zoom{cursor:zoom-in;display:block}
input.zoom:checked+label.zoom{position:fixed;inset:0;z-index:10;background:rgba(0,0,0,.82);display:flex;align-items:center;justify-content:center;cursor:zoom-out}
input.zoom:checked+label.zoom img{width:auto;height:auto;min-width:min(80vw,80vh);max-width:95vw;max-height:92vh}
table.qa{width:100%;max-width:1400px;margin-top:8px} table.qa th{width:110px;text-align:left;vertical-align:top;max-width:none}
table.qa td{white-space:normal;font-size:12.5px;line-height:1.45} table.qa td.ref{background:#f4fbf5}
.marks{margin-top:4px} .cols{margin-top:3px;color:#666;font-size:11.5px}
.chip{display:inline-block;border-radius:9px;padding:0 7px;margin:1px 2px;font-size:11.5px;border:1px solid}
.chip.ok{background:#e7f7ea;border-color:#7ccf8c;color:#17602a} .chip.bad{background:#fdecec;border-color:#ef9a9a;color:#9b1c1c}
.chip.miss{background:#fff6e0;border-color:#f0c36d;color:#7a5600} .chip.na{background:#f1f1f1;border-color:#ccc;color:#555}
.sw{display:inline-block;width:18px;height:10px;border:2px solid;vertical-align:middle}
.sw.gt{border-color:rgb(22,200,60)} .sw.pred{border-color:rgb(235,30,30)}
.bd-tables{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start} .bd-tables figure{max-width:100%}
table.confusion th,table.confusion td{min-width:58px;text-align:center} table.confusion th.l{text-align:left}
table.confusion td{font-variant-numeric:tabular-nums;font-size:13px;padding:4px 6px} table.confusion td.diag{font-weight:600}
table.confusion td.zero{color:#aaa}
.err{color:#9b1c1c;font-size:11.5px} li.warn{color:#9b1c1c;font-weight:600} .cut{color:#7a5600;font-size:11.5px}
"""


def _html_table(header, rows, row_classes=None, left=2, cls=None):
    """A table inside a horizontally scrollable wrapper (wide tables scroll, never widen the page)."""
    h = [f"<div class='table-wrap'><table{f' class={cls}' if cls else ''}><thead><tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in header) + "</tr></thead><tbody>"]
    for i, r in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes else ""
        cells = "".join(f'<td{" class=l" if j < left else ""}>{html.escape(str(c))}</td>' for j, c in enumerate(r))
        h.append(f"<tr{cls}>{cells}</tr>")
    h.append("</tbody></table></div>")
    return "\n".join(h)


def render_html(models_metrics, breakdowns=None, extra_sections=(), include_paper=True,
                title="SARChat-Bench results", unattributed_rejects=0, context=None, now=None, charts=True):
    """The whole report as one self-contained HTML page (inline SVG charts, inline CSS): a header
    saying what it shows, a table of contents, then the sections (each <h2> with an anchor).
    `charts=False` (`--plots none`) leaves out the matplotlib charts, the tables stay."""
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'>"
             "<meta name='viewport' content='width=device-width, initial-scale=1'>"
             f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    facts = header_facts(context, models_metrics, now)
    parts.append("<header id='provenance'><dl class='facts'>" + "".join(
        f"<dt>{html.escape(k)}</dt><dd{' class=synthetic' if v.startswith('SYNTHETIC') else ''}>{html.escape(v)}</dd>"
        for k, v in facts) + "</dl>")
    if models_metrics:
        parts.append(_html_table(MODEL_HEADER, model_rows(context, models_metrics), left=4, cls="models"))
    parts.append("</header>")
    parts.append("@@TOC@@")
    parts.append("<p class='note'>Scores in percent. Columns follow the paper's Table 3. <i>Avg score</i> is the "
                 "overall score of Eq. 4: task scores (mean of their non-null columns, Eq. 5) weighted by each "
                 "task's number of test samples. Unparseable answers and missing predictions score as misses.</p>")
    t3 = table3_rows(models_metrics, include_paper)
    parts.append("<h2>Table 3: this run and the paper's published rows</h2>" if include_paper
                 else "<h2>Table 3: this run</h2>")
    warning = test_set_warning(context, models_metrics) if include_paper else None
    if warning:
        parts.append(f"<p class='warn' id='test-set-warning'>{html.escape(warning)}</p>")
    parts.append(_html_table(TABLE3_HEADER, [_t3_cells(r) for r in t3],
                             ["run" if r[0] == "this run" else "paper" for r in t3], left=3))
    if include_paper:
        parts.append(f"<p class='note'>Rows marked <i>{PAPER_LABEL}</i> are copied from the paper "
                     "(SARChat-Bench-2M, Table 3), not produced by this toolkit; their Avg score is as published "
                     "(Eq. 4 recomputed from the paper's own columns differs by up to about 0.9 points).</p>")
    parts.append("<h2>Summary per model</h2>")
    parts.append(_html_table(SUMMARY_HEADER, summary_rows(models_metrics, breakdowns), left=1))
    parts.append("<p class='note'>95% CI: seeded percentile bootstrap of the overall score, resampling the test "
                 "samples of each task with replacement. Unweighted mean: plain mean of the six task scores.</p>")
    parts.append("<h2>Parse failures per task</h2>")
    parts.append(_html_table(FAILURE_HEADER, failure_rows(models_metrics), left=1))
    parts.append("<p class='note'>Percent of the task's test samples whose answer could not be parsed (count in "
                 "parentheses); they score as misses.</p>")
    parts.append("<h2>Inference errors per task</h2>")
    parts.append(_html_table(FAILURE_HEADER, failure_rows(models_metrics, "inference_errors"), left=1))
    parts.append("<p class='note'>Percent of the task's test samples whose prediction row carries an error (the "
                 "model was never heard; count in parentheses); they score as misses and are not parse failures.</p>")
    prov = provenance_lines(models_metrics)
    if prov:
        parts.append("<h2>Dataset version</h2>")
        parts.append("<ul class='note'>" + "".join(
            f"<li{' class=warn' if 'WARNING' in line else ''}>{html.escape(line)}</li>" for line in prov) + "</ul>")
    if unattributed_rejects:
        parts.append(f"<p class='note'>{unattributed_rejects} malformed prediction lines belong to no model (files of "
                     "several models): see <code>rejected.jsonl</code>.</p>")
    spread_rows = template_spread_rows(models_metrics)
    if spread_rows:
        parts.append("<h2 id='template-spread'>Prompt sensitivity: score per question template</h2>")
        parts.append(_html_table(TEMPLATE_SPREAD_HEADER, spread_rows, left=2))
        parts.append(f"<p class='note'>{html.escape(TEMPLATE_SPREAD_NOTE)}</p>")
    if charts:
        parts += _radar_parts(models_metrics, include_paper, warning)
    else:
        parts.append("<p class='note' id='no-charts'>Charts left out (<code>--plots none</code>): every figure is "
                     "in the tables.</p>")
    if breakdowns:
        cat = category_charts(models_metrics, breakdowns) if charts else []
        if cat:
            parts.append("<h2>Per category</h2>")
            parts.append("<div class='charts breakdown-charts'>" + "".join(f"<div>{c}</div>" for c in cat) + "</div>")
            parts.append(f"<p class='note'>{html.escape(BREAKDOWN_NOTE)}</p>")
        size = [c for c in (size_chart(models_metrics, breakdowns), grounding_size_chart(models_metrics, breakdowns))
                if c] if charts else []
        if size:
            parts.append("<h2>Per object size</h2>")
            parts.append("<div class='charts breakdown-charts'>" + "".join(f"<div>{c}</div>" for c in size) + "</div>")
        parts += _html_breakdown_sections(models_metrics, breakdowns)
    for s in _resolve_sections(extra_sections):
        parts += _section_html(s)
    parts.append(_HTML_END)
    return _with_toc("\n".join(parts) + "\n")


def _radar_parts(models_metrics, include_paper, warning):
    """The radar section: one panel, or this run's and the paper's on two panels when the test set
    is not the paper's (`warning`)."""
    parts = []
    parts.append("<h2>Task scores (radar, as the paper's Figure 1)</h2>")
    if include_paper and warning:
        # another test set: the paper's rows get their own panel, so no one reads one set of axes as a comparison
        parts.append(f"<div class='charts' id='radar'>{radar_svg(models_metrics, include_paper=False)}</div>")
        parts.append("<p class='note'>This run's models only. The paper's rows were measured on another test set "
                     "and are drawn on a separate panel below.</p>")
        parts.append(f"<div class='charts' id='radar-paper'>{radar_svg([], include_paper=True, paper_title=True)}</div>")
        parts.append("<p class='note'>The paper's published rows (its Table 3, SARDet-100K test split), named in the "
                     "legend and on hover: not comparable with the panel above.</p>")
    else:
        parts.append(f"<div class='charts' id='radar'>{radar_svg(models_metrics, include_paper)}</div>")
        if include_paper:
            parts.append("<p class='note'>This run's models: thick coloured lines with markers. The paper's models: "
                         "thin lines, named in the legend and on hover.</p>")
    return parts


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


_HTML_END = "</body></html>"


def _section_html(s):
    return [f"<h2>{html.escape(s.title)}</h2>",
            getattr(s, "html", "") or f"<pre>{html.escape(getattr(s, 'markdown', '') or '')}</pre>"]


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
