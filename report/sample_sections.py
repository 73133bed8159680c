"""Extra sections of the benchmark report: the dataset and a few scored samples (paper's Figure 3).

    dataset_section(stats)                      -> report.Section   (stats.json dict, file or folder)
    samples_section(dataset, score_dir, ...)    -> report.Section
    add_report_sections(score_dir, ...)         # what `sarchat score --stats DIR` / `--samples N` call

The dataset section inlines the `sarchat stats` plots as SVG (transforms/stats_render.render_plots)
and its Markdown tables (stats_markdown) converted to HTML tables. The samples section shows, for a
few test samples per task (the smallest ids, alternating subsets, so the choice is deterministic),
the image downscaled and embedded as base64 JPEG with the ground-truth boxes (green) and, one panel
per model, the model's parsed boxes (red): solid when matched (IoU >= 0.5 after the scorer's
Hungarian assignment), dashed when not; missed truth boxes are dashed green. Beside it: the question,
the reference answer and every model's answer with the scored parts marked (matched boxes, stated
count, categories, attributes, relations, description triples). The marks come from the per-sample
results that `sarchat score` writes (OUT/<model>/samples/*.parquet); without them (--no-samples)
the few shown samples are scored again with sarchat.transforms.score.metrics, which gives the same results.

Everything is inline: the report stays one self-contained HTML file. A short script at the end of
the section records on <body> how many images decoded (data-images-ok / data-images-total) and how
many charts have a size (data-svgs-rendered) and where the first sample image and chart are on the
page (data-first-img-rect, data-first-svg-rect: x,y,w,h), so a headless browser can check the page.
"""
import base64
import html
import io
import json
import os
import re

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from sarchat.transforms.score import metrics as M
from sarchat.report import score_report as report
from sarchat.transforms.categories import CATEGORY_INDEX
from sarchat.transforms.fileio import exists as _exists
from sarchat.transforms.fileio import join_path as _join
from sarchat.transforms.fileio import read_bytes as _read_bytes
from sarchat.transforms.tasks import ANSWER_BOX_TASKS, TASKS

TASK_LABELS = report.TASK_LABELS
SAMPLE_ROW_COLUMNS = ("id", "split", "task", "subset", "image_path", "width", "height", "question", "answer",
                      "gt_boxes", "gt_categories", "gt_cells", "gt_sizes", "gt_shapes", "gt_relations", "gt_count")
BOX_TASKS = ANSWER_BOX_TASKS
MATCH_IOU = 0.5
GT_COLOR = (22, 200, 60)
PRED_COLOR = (235, 30, 30)
DEFAULT_MAX_SIDE = 256

# Sets data attributes on <body> once the page has loaded: images that decoded with a non-zero
# natural size, charts (inline SVG) with a non-zero rendered size, table rows.
RENDER_CHECK_SCRIPT = """<script>
(function () {
  function check() {
    var imgs = document.images, ok = 0, svgs = document.querySelectorAll('svg'), drawn = 0;
    for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++; }
    for (var j = 0; j < svgs.length; j++) { var r = svgs[j].getBoundingClientRect(); if (r.width > 0 && r.height > 0) drawn++; }
    var b = document.body;
    b.setAttribute('data-images-total', imgs.length);
    b.setAttribute('data-images-ok', ok);
    b.setAttribute('data-svgs-total', svgs.length);
    b.setAttribute('data-svgs-rendered', drawn);
    b.setAttribute('data-table-rows', document.querySelectorAll('table tr').length);
    function rect(el) {
      if (!el) return '';
      var r = el.getBoundingClientRect();
      return [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height].map(Math.round).join(',');
    }
    b.setAttribute('data-first-img-rect', rect(document.querySelector('.samples img')));
    b.setAttribute('data-first-svg-rect', rect(document.querySelector('svg')));
    b.setAttribute('data-render-check', 'done');
  }
  if (document.readyState === 'complete') { check(); } else { window.addEventListener('load', check); }
})();
</script>"""


# ---------------------------------------------------------------------------------------------
# Files (local or any Beam file system, e.g. gs://)


def _glob(pattern):
    try:
        found = FileSystems.match([pattern])
    except Exception:
        return []
    return sorted(m.path for r in found for m in r.metadata_list)


# ---------------------------------------------------------------------------------------------
# Markdown (the subset stats_markdown writes) -> HTML


_INLINE = [
    (re.compile(r"`([^`]+)`"), r"<code>\1</code>"),
    (re.compile(r"\*\*([^*]+)\*\*"), r"<b>\1</b>"),
    (re.compile(r"(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])"), r"<i>\1</i>"),
]


def _inline(text):
    out = html.escape(text, quote=False)
    for rx, sub in _INLINE:
        out = rx.sub(sub, out)
    return out


def _cells(line):
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)]


def markdown_to_html(md, heading_offset=1, skip_title=True):
    """Headings, paragraphs, '- ' lists, pipe tables (with alignment), `code`, *italic*, **bold**.
    Images are dropped (the section inlines the plots itself). A table is <table class='md'>."""
    lines = md.splitlines()
    out, para, i = [], [], 0

    def flush():
        if para:
            out.append("<p class='note'>" + _inline(" ".join(para)) + "</p>")
            para.clear()

    while i < len(lines):
        line = lines[i].rstrip()
        s = line.strip()
        if not s:
            flush()
            i += 1
            continue
        m = re.match(r"^(#{1,6})\s+(.*)$", s)
        if m:
            flush()
            level = len(m.group(1))
            if not (skip_title and level == 1):
                lvl = min(6, level + heading_offset)
                out.append(f"<h{lvl}>{_inline(m.group(2))}</h{lvl}>")
            i += 1
            continue
        if s.startswith("![") and s.endswith(")"):
            flush()
            i += 1
            continue
        if s.startswith("|"):
            flush()
            block = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                block.append(lines[i])
                i += 1
            out.append(_md_table_html(block))
            continue
        if s.startswith("- "):
            flush()
            items = []
            while i < len(lines) and lines[i].strip().startswith("- "):
                items.append(lines[i].strip()[2:])
                i += 1
            out.append("<ul class='note'>" + "".join(f"<li>{_inline(t)}</li>" for t in items) + "</ul>")
            continue
        para.append(s)
        i += 1
    flush()
    return "\n".join(out)


def _md_table_html(block):
    rows = [_cells(b) for b in block]
    align = []
    if len(rows) >= 2 and all(re.fullmatch(r":?-{3,}:?", c) for c in rows[1] if c):
        align = ["r" if c.endswith(":") and not c.startswith(":") else ("c" if c.startswith(":") and c.endswith(":")
                                                                        else "l") for c in rows[1]]
        header, body = rows[0], rows[2:]
    else:
        header, body = rows[0], rows[1:]
    h = ["<table class='md'><thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in header) + "</tr></thead><tbody>"]
    for r in body:
        cells = []
        for j, c in enumerate(r):
            a = align[j] if j < len(align) else "l"
            cls = " class=l" if a == "l" else ""
            cells.append(f"<td{cls}>{_inline(c)}</td>")
        h.append("<tr>" + "".join(cells) + "</tr>")
    h.append("</tbody></table>")
    return "\n".join(h)


# ---------------------------------------------------------------------------------------------
# Dataset section


def load_stats(path):
    """A stats.json document from a `sarchat stats` output folder or the file itself."""
    candidates = [path] if str(path).endswith(".json") else [_join(path, "stats.json"), path]
    for c in candidates:
        if _exists(c) and not os.path.isdir(c):
            return json.loads(_read_bytes(c).decode("utf-8"))
    raise FileNotFoundError(f"no stats.json in {path} (the output folder of `sarchat stats`)")


def dataset_section(stats, title="Dataset"):
    """The stats plots as inline SVG plus the stats tables (stats.md) as HTML tables."""
    from sarchat.report.stats_report import plot_titles, render_plots, stats_markdown

    if not isinstance(stats, dict):
        stats = load_stats(stats)
    titles = plot_titles()
    plots = render_plots(stats, fmt="svg")
    md = stats_markdown(stats)
    figs = []
    for name, data in plots.items():
        svg = data.decode("utf-8")
        start = svg.find("<svg")
        svg = svg[start:] if start >= 0 else svg
        figs.append(f"<figure class='plot' id='plot-{html.escape(name)}' title='{html.escape(titles.get(name, name), True)}'>"
                    f"{svg}</figure>")
    info = stats.get("input") or {}
    parts = [f"<p class='note'>From <code>sarchat stats</code> on {html.escape(str(info.get('kind', 'the')))} input "
             f"<code>{html.escape(str(info.get('root', '')))}</code>: the paper's dataset analysis (Tables 1, 2, 4, 5; "
             "Figures 7-9), our numbers beside the paper's published ones where it gives them.</p>"]
    if figs:
        parts.append("<div class='charts stats-plots'>" + "".join(figs) + "</div>")
    parts.append("<div class='stats-tables'>" + markdown_to_html(md) + "</div>")
    parts.append(RENDER_CHECK_SCRIPT)
    md_body = re.sub(r"^#", "##", md, flags=re.M)  # one level below the section's own heading
    md_body = md_body.split("\n", 1)[1].lstrip() if md_body.startswith("## Dataset statistics") else md_body
    return report.Section(title, html="\n".join(parts), markdown=md_body.rstrip())


# ---------------------------------------------------------------------------------------------
# Samples section: reading


def image_root_for(dataset, override=None):
    """--image-root, else the generated dataset's manifest `input_root` (relative: from the current
    folder, then from the dataset folder), else None."""
    if override:
        return str(override)
    if str(dataset).endswith(".parquet") or any(ch in str(dataset) for ch in "*?["):
        return None
    path = _join(dataset, "manifest.json")
    if not _exists(path):
        return None
    try:
        manifest = json.loads(_read_bytes(path).decode("utf-8"))
    except (OSError, ValueError):
        return None
    root = manifest.get("input_root") or (manifest.get("config") or {}).get("input_root")
    if not root:
        return None
    root = str(root)
    if "://" in root or os.path.isabs(root) or os.path.isdir(root):
        return root
    candidate = os.path.join(str(dataset), root)
    return candidate if os.path.isdir(candidate) else root


def choose_samples(ids_tasks_subsets, per_task):
    """Deterministic choice: per task (TASKS order), the smallest ids, taking subsets in turn
    (multi, single, ...) so both appear when a task has them. Input: [(id, task, subset)]."""
    by_task = {}
    for sid, task, subset in ids_tasks_subsets:
        by_task.setdefault(task, {}).setdefault(subset or "", []).append(sid)
    chosen = []
    for task in TASKS:
        groups = by_task.get(task)
        if not groups:
            continue
        queues = [sorted(groups[k]) for k in sorted(groups)]
        picked, k = [], 0
        while len(picked) < per_task and any(queues):
            q = queues[k % len(queues)]
            if q:
                picked.append(q.pop(0))
            k += 1
        chosen += sorted(picked)
    return chosen


def _read_parquet_filtered(path, columns, ids):
    """The named columns of a Parquet file (those it has), rows whose id is in `ids` (all: None)."""
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        schema = pq.ParquetFile(f).schema_arrow
        cols = [c for c in columns if c in schema.names]
        string_ids = "id" in schema.names and pa.types.is_string(schema.field("id").type)
        f.seek(0)
        if ids is not None and ids and string_ids:  # row groups skipped on their id statistics
            table = pq.read_table(f, columns=cols, filters=[("id", "in", sorted(ids))])
        else:
            table = pq.read_table(f, columns=cols)
    if ids is not None:
        keys = pc.cast(table.column("id"), pa.string())
        table = table.filter(pc.fill_null(pc.is_in(keys, value_set=pa.array(sorted(ids), type=pa.string())), False))
    return table


def read_test_rows(dataset, split, per_task):
    """(chosen ids in display order, {id: test row})."""
    from sarchat.transforms.score.pipeline import dataset_files

    files = dataset_files(dataset, split)
    keys = []
    for f in files:
        t = _read_parquet_filtered(f, ("id", "split", "task", "subset"), None)
        rows = t.to_pylist()
        keys += [(r["id"], r["task"], r.get("subset")) for r in rows if r.get("split", split) in (None, split)]
    chosen = choose_samples(keys, per_task)
    wanted = set(chosen)
    rows = {}
    for f in files:
        for r in _read_parquet_filtered(f, SAMPLE_ROW_COLUMNS, wanted).to_pylist():
            if r.get("split", split) in (None, split) and r["id"] not in rows:
                rows[r["id"]] = r
    return [i for i in chosen if i in rows], rows


def read_models(score_dir):
    """[{'model', 'dir', 'box_format'}] in leaderboard order (best first)."""
    path = _join(score_dir, "leaderboard.json")
    if not _exists(path):
        return []
    board = json.loads(_read_bytes(path).decode("utf-8"))
    return [{"model": r["model"], "dir": r.get("dir"), "box_format": r.get("box_format")} for r in board]


def read_sample_results(score_dir, model_dir, ids):
    """{id: per-sample result row} from OUT/<model>/samples/*.parquet ({} when not written)."""
    out = {}
    if not model_dir:
        return out
    for f in _glob(_join(score_dir, model_dir, "samples", "samples-*.parquet")):
        for r in _read_parquet_filtered(f, _sample_columns(), ids).to_pylist():
            out.setdefault(r["id"], r)
    return out


def _sample_columns():
    from sarchat.transforms.score.pipeline import SAMPLE_SCHEMA

    return tuple(SAMPLE_SCHEMA.names)


def read_predictions(prediction_files, ids):
    """{(model, id): prediction row}, the first by (file, row) as the scorer takes it."""
    from sarchat.transforms.score.pipeline import PREDICTION_COLUMNS, _model_of

    out = {}
    for path in sorted(prediction_files):
        rows = []
        if path.endswith(".parquet"):
            t = _read_parquet_filtered(path, PREDICTION_COLUMNS, ids)
            rows = t.to_pylist()
        else:
            data = _read_bytes(path)
            if path.endswith(".gz"):
                import gzip

                data = gzip.decompress(data)
            for line in data.decode("utf-8", errors="replace").splitlines():
                if not line.strip():
                    continue
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                if isinstance(r, dict) and str(r.get("id")) in ids:
                    rows.append(r)
        for r in rows:
            key = (_model_of(r, path), str(r.get("id")))
            out.setdefault(key, r)
    return out


# ---------------------------------------------------------------------------------------------
# Samples section: marks


def _box_matches(task, row, res):
    """(pred matched iou list or None per pred box, gt matched flags) at MATCH_IOU."""
    preds = res.get("pred_boxes") or []
    gts = row.get("gt_boxes") or []
    pred_iou = [None] * len(preds)
    gt_hit = [False] * len(gts)
    if task == "grounding":
        pcats = res.get("pred_box_categories") or [None] * len(preds)
        gcats = row.get("gt_categories") or []
        for cat in sorted(set(gcats), key=lambda c: CATEGORY_INDEX.get(c, 99)):
            gi = [i for i, c in enumerate(gcats) if c == cat]
            pi = [i for i, c in enumerate(pcats) if c == cat]
            for r, c, v in M.match_boxes([preds[i] for i in pi], [gts[i] for i in gi]):
                pred_iou[pi[r]] = v
                gt_hit[gi[c]] = v >= MATCH_IOU
    else:
        for r, c, v in M.match_boxes(preds, gts):
            pred_iou[r] = v
            gt_hit[c] = v >= MATCH_IOU
    return pred_iou, gt_hit


def _chip(text, kind):
    sym = {"ok": "\u2713 ", "bad": "\u2717 ", "miss": "missed: ", "na": ""}[kind]
    return f"<span class='chip {kind}'>{html.escape(sym + text)}</span>"


def _fmt_box(b):
    return "[" + ", ".join(f"{v:.0f}" for v in b) + "]"


def marks(task, row, res):
    """HTML chips marking the parts of one model's answer that scored (and the truth it missed)."""
    if res is None:
        return "<span class='chip na'>no result</span>"
    status = res.get("status")
    if status == M.STATUS_MISSING:
        return "<span class='chip bad'>no prediction (scored as a miss)</span>"
    if status == M.STATUS_UNPARSEABLE:
        return "<span class='chip bad'>unparseable (scored as a miss)</span>"
    chips = []
    if task == "count":
        gt_count = row.get("gt_count")
        if gt_count is None:
            gt_count = len(row.get("gt_boxes") or [])
        n = res.get("pred_count")
        chips.append(_chip(f"count {n}" + ("" if n == gt_count else f" (truth {gt_count})"),
                           "ok" if n == gt_count else "bad"))
    if task in BOX_TASKS:
        pred_iou, gt_hit = _box_matches(task, row, res)
        pcats = res.get("pred_box_categories") or []
        for i, (b, v) in enumerate(zip(res.get("pred_boxes") or [], pred_iou)):
            label = (f"{pcats[i]} " if task == "grounding" and i < len(pcats) and pcats[i] else "") + _fmt_box(b)
            label += f" IoU {v:.2f}" if v is not None else " unmatched"
            chips.append(_chip(label, "ok" if v is not None and v >= MATCH_IOU else "bad"))
        missed = sum(1 for h in gt_hit if not h)
        if missed:
            chips.append(_chip(f"{missed} truth box{'es' if missed > 1 else ''}", "miss"))
    if task == "refer":
        gt_cells = list(row.get("gt_cells") or [])
        for c in res.get("pred_labels") or []:
            chips.append(_chip(c, "ok" if c in gt_cells else "bad"))
    if task == "grounding":
        gt = M.gt_relation_triples(row)
        said = set()
        for lab in res.get("pred_labels") or []:
            t = tuple(lab.split("|")[:3])
            said.add(t)
            chips.append(_chip(" ".join(t), "ok" if t in gt else "bad"))
        for t in sorted(gt - said):
            chips.append(_chip(" ".join(t), "miss"))
    if task == "identify":
        gt = M.gt_identify_attributes(row)
        said = set()
        for lab in res.get("pred_labels") or []:
            k, _, v = lab.partition("=")
            said.add((k, v))
            if k == "shape" and not row.get("gt_shapes"):
                chips.append(_chip(f"{k}: {v} (not scored)", "na"))
            else:
                chips.append(_chip(f"{k}: {v}", "ok" if (k, v) in gt else "bad"))
        for k, v in sorted(gt - said):
            chips.append(_chip(f"{k}: {v}", "miss"))
    if task == "describe":
        from collections import Counter

        gt = Counter(M.gt_describe_triples(row))
        for lab in res.get("pred_labels") or []:
            t = tuple(x or None for x in lab.split("|"))
            ok = gt[t] > 0
            if ok:
                gt[t] -= 1
            chips.append(_chip(" ".join(x or "?" for x in t), "ok" if ok else "bad"))
        for t, n in sorted(gt.items(), key=lambda kv: tuple(x or "" for x in kv[0])):
            for _ in range(n):
                chips.append(_chip(" ".join(x or "?" for x in t), "miss"))
    if task == "classify":
        gt = list(row.get("gt_categories") or [])
        said = list(res.get("pred_labels") or [])
        for c in said:
            chips.append(_chip(c, "ok" if c in gt else "bad"))
        for c in gt:
            if c not in said:
                chips.append(_chip(c, "miss"))
    return " ".join(chips) or "<span class='chip na'>nothing scored</span>"


def score_line(res):
    """'column: TP a, FP b, FN c' per column of the sample."""
    if res is None:
        return ""
    parts = []
    for c, tp, fp, fn in zip(res.get("columns") or [], res.get("tp") or [], res.get("fp") or [], res.get("fn") or []):
        parts.append(f"{report.COLUMN_LABELS.get(c, c)}: TP {tp} \u00b7 FP {fp} \u00b7 FN {fn}")
    return " | ".join(parts)


# ---------------------------------------------------------------------------------------------
# Samples section: images


def _dashed_rect(draw, box, color, width, dash=6, gap=4):
    x1, y1, x2, y2 = box
    for a, b, fixed, horizontal in ((x1, x2, y1, True), (x1, x2, y2, True), (y1, y2, x1, False), (y1, y2, x2, False)):
        pos = a
        while pos < b:
            end = min(pos + dash, b)
            pts = [(pos, fixed), (end, fixed)] if horizontal else [(fixed, pos), (fixed, end)]
            draw.line(pts, fill=color, width=width)
            pos = end + gap


def load_image(root, rel_path):
    """PIL RGB image of a test row, or None when it cannot be read."""
    from PIL import Image

    if not root or not rel_path:
        return None
    path = rel_path if ("://" in rel_path or os.path.isabs(rel_path)) else (
        root.rstrip("/") + "/" + rel_path.lstrip("/") if "://" in root else os.path.join(root, rel_path))
    try:
        data = _read_bytes(path)
        im = Image.open(io.BytesIO(data))
        im.load()
        return im.convert("RGB")
    except Exception:
        return None


def draw_panel(image, width, height, gt_boxes, gt_hit=None, pred_boxes=(), pred_ok=(), max_side=DEFAULT_MAX_SIDE):
    """A downscaled copy of `image` with truth boxes (green; dashed when missed) and predicted boxes
    (red; dashed when unmatched), as a base64 JPEG data URI; also returns its size."""
    from PIL import ImageDraw

    im = image.copy()
    W, H = width or im.width, height or im.height
    scale = min(1.0, max_side / max(im.width, im.height))
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    im = im.resize(size)
    sx, sy = size[0] / W, size[1] / H
    draw = ImageDraw.Draw(im)
    lw = 2

    def sc(b):
        x1, y1, x2, y2 = (float(v) for v in b)
        x1, x2 = sorted((x1 * sx, x2 * sx))
        y1, y2 = sorted((y1 * sy, y2 * sy))
        return [x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)]

    for i, b in enumerate(gt_boxes or []):
        if gt_hit is not None and not gt_hit[i]:
            _dashed_rect(draw, sc(b), GT_COLOR, lw)
        else:
            draw.rectangle(sc(b), outline=GT_COLOR, width=lw)
    for b, ok in zip(pred_boxes or [], pred_ok or [True] * len(pred_boxes or [])):
        if ok:
            draw.rectangle(sc(b), outline=PRED_COLOR, width=lw)
        else:
            _dashed_rect(draw, sc(b), PRED_COLOR, lw)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=82)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), size


def _figure(uri, size, caption):
    return (f"<figure><img src='{uri}' width='{size[0]}' height='{size[1]}' alt='{html.escape(caption, quote=True)}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


# ---------------------------------------------------------------------------------------------
# Samples section


def samples_section(dataset, score_dir, prediction_files=(), split="test", per_task=2, image_root=None,
                    formats=None, max_side=DEFAULT_MAX_SIDE, title="Samples"):
    """A few scored test samples per task with images, answers and marks (the paper's Figure 3)."""
    from sarchat.transforms.score.pipeline import FormatChooser, sample_record

    order, rows = read_test_rows(dataset, split, per_task)
    ids = set(order)
    models = read_models(score_dir)
    preds = read_predictions(prediction_files, ids) if prediction_files else {}
    if not models:
        models = [{"model": m, "dir": None} for m in sorted({k[0] for k in preds})]
    formats = formats or FormatChooser()
    results = {}
    for m in models:
        got = read_sample_results(score_dir, m.get("dir"), ids)
        for sid in order:
            res = got.get(sid)
            if res is None and (m["model"], sid) in preds:  # per-sample files not written: score again
                p = preds[(m["model"], sid)]
                row = rows[sid]
                fmt = formats.for_model(m["model"])
                res = sample_record(row, m["model"], p, M.score_sample(row, p.get("prediction"), fmt))
            elif res is None:
                res = sample_record(rows[sid], m["model"], None, M.score_sample(rows[sid], None, None, missing=True))
            results[(m["model"], sid)] = res
    root = image_root_for(dataset, image_root)
    intro = ("<p class='note'>A few test samples per task (the smallest ids of each task, subsets in turn). "
             "Boxes: <span class='sw gt'></span> ground truth, <span class='sw pred'></span> the model's parsed boxes; "
             f"solid when matched (IoU &ge; {MATCH_IOU} after the scorer's Hungarian assignment; grounding matches "
             "within a category), dashed when not (a dashed green box is a truth box the model missed). "
             "Marks: <span class='chip ok'>\u2713 scored right</span> <span class='chip bad'>\u2717 wrong</span> "
             "<span class='chip miss'>missed: in the truth, not in the answer</span>. "
             "Per column TP / FP / FN as counted in the scores above.</p>")
    cards, md = [], []
    missing_images = 0
    for sid in order:
        row = rows[sid]
        task = row["task"]
        image = load_image(root, row.get("image_path"))
        W, H = row.get("width"), row.get("height")
        figs = []
        if image is None:
            missing_images += 1
            figs.append(f"<div class='noimg'>image not available<br><code>{html.escape(str(row.get('image_path')))}"
                        "</code></div>")
        else:
            gt_caption = "ground truth" if row.get("gt_boxes") else "image"
            uri, size = draw_panel(image, W, H, row.get("gt_boxes") or [], max_side=max_side)
            n = len(row.get("gt_boxes") or [])
            figs.append(_figure(uri, size, f"{gt_caption} ({n} box{'es' if n != 1 else ''})" if n else gt_caption))
            if task in BOX_TASKS:
                for m in models:
                    res = results[(m["model"], sid)]
                    pred_iou, gt_hit = _box_matches(task, row, res)
                    ok = [v is not None and v >= MATCH_IOU for v in pred_iou]
                    uri, size = draw_panel(image, W, H, row.get("gt_boxes") or [], gt_hit,
                                           res.get("pred_boxes") or [], ok, max_side=max_side)
                    same = " (same category)" if task == "grounding" else ""
                    figs.append(_figure(uri, size, f"{m['model']}: {sum(ok)}/{len(ok)} boxes matched{same}"))
        qa = [f"<tr><th>Question</th><td class='l'>{_text(row.get('question'))}</td></tr>",
              f"<tr><th>Reference</th><td class='l ref'>{_text(row.get('answer'))}</td></tr>"]
        md.append(f"- `{sid}` ({task}{', ' + row['subset'] if row.get('subset') else ''}): "
                  f"{_md_escape(_strip_image_tag(row.get('question')))}")
        for m in models:
            res = results[(m["model"], sid)]
            p = preds.get((m["model"], sid)) or {}
            answer = p.get("prediction")
            err = p.get("error")
            text = _text(answer) if answer else "<i>(no answer)</i>"
            if err:
                text += f"<div class='err'>error: {html.escape(str(err)[:300])}</div>"
            qa.append(f"<tr><th>{html.escape(m['model'])}</th><td class='l'>{text}"
                      f"<div class='marks'>{marks(task, row, res)}</div>"
                      f"<div class='cols'>{html.escape(score_line(res))}</div></td></tr>")
            md.append(f"  - {m['model']}: {_md_escape(score_line(res)) or '–'}")
        dot = " \u00b7 "
        subset = dot + row["subset"] if row.get("subset") else ""
        head = (f"{html.escape(TASK_LABELS.get(task, task))}{html.escape(subset)}{dot}<code>{html.escape(sid)}</code>"
                f"{dot}{html.escape(str(row.get('image_path')))}")
        cards.append(f"<div class='sample' id='sample-{html.escape(sid)}'><h3>{head}</h3>"
                     f"<div class='sample-body'><div class='panels'>{''.join(figs)}</div>"
                     f"<table class='qa'>{''.join(qa)}</table></div></div>")
    if not order:
        body = "<p class='note'>No test samples found.</p>"
    else:
        body = intro + (f"<p class='note'>Images not found under <code>{html.escape(str(root))}</code>: "
                        f"{missing_images} (pass <code>--image-root</code>).</p>" if missing_images else "")
        body += "<div class='samples'>" + "\n".join(cards) + "</div>"
    body += RENDER_CHECK_SCRIPT
    md_text = (f"{len(order)} test samples (smallest ids per task); per model the TP / FP / FN of each column. "
               "Images and marked answers are in report.html.\n\n" + "\n".join(md))
    return report.Section(title, html=body, markdown=md_text)


def _strip_image_tag(text):
    text = str(text or "")
    return text[len("<image>"):].lstrip("\n") if text.startswith("<image>") else text


def _text(text, limit=900):
    text = _strip_image_tag(text)
    if len(text) > limit:
        text = text[:limit] + " \u2026"
    return html.escape(text).replace("\n", "<br>")


def _md_escape(text, limit=200):
    text = str(text or "").replace("\n", " ").replace("|", "\\|")
    return text[:limit] + ("\u2026" if len(text) > limit else "")


# ---------------------------------------------------------------------------------------------
# Wiring for `sarchat score`


def stats_file(path):
    """Check early that --stats names a stats.json (or a folder holding one); returns the file."""
    candidates = [path] if str(path).endswith(".json") else [_join(path, "stats.json")]
    for c in candidates:
        if _exists(c):
            return c
    raise FileNotFoundError(f"--stats {path}: no stats.json there (give the output folder of `sarchat stats`)")


def add_report_sections(score_dir, dataset=None, split="test", predictions=(), adapters=None, stats=None,
                        samples_per_task=2, image_root=None):
    """Add the dataset and samples sections to score_dir's report.html and report.md (written by
    the scoring pipeline). Returns the sections added."""
    from sarchat.transforms.score.pipeline import FormatChooser, discover_run_formats, expand_inputs

    sections = []
    if samples_per_task and dataset:
        files = expand_inputs(list(predictions or ()), (".parquet", ".jsonl", ".jsonl.gz", ".json"))
        formats = FormatChooser.from_flags(adapters, discover_run_formats(files))
        sections.append(samples_section(dataset, score_dir, files, split=split, per_task=samples_per_task,
                                        image_root=image_root, formats=formats))
    if stats:
        sections.append(dataset_section(load_stats(stats)))
    if sections:
        report.append_sections(score_dir, sections)
    return sections
