"""Extra sections of the benchmark report: the dataset and a few scored samples (paper's Figure 3).

    dataset_section(stats)                                   -> score_report.Section (a stats.json dict)
    samples_section(order, rows, models, results, ...)       -> score_report.Section

Both are fed only from the scoring pipeline's own outputs (sarchat.transforms.score.pipeline's
WriteReportsFn): the stats document read at launch, the ids it chose (sample_choice: the smallest
ids of each task, subsets in turn), their test rows and every model's result for them, as the
scorer computed it. Nothing here reads a file but the sample images.

The dataset section inlines the `sarchat stats` plots as SVG and its Markdown tables converted to
HTML tables. The samples section shows each chosen sample's image, downscaled and embedded as
base64 JPEG, with the ground-truth boxes (green) and, one panel per model, the model's parsed boxes
(red): solid when matched (IoU >= 0.5 after the scorer's Hungarian assignment), dashed when not;
missed truth boxes are dashed green. Beside it: the question, the reference answer and every
model's answer with the scored parts marked (one function per task in MARKS). What one sample
shows is capped (MAX_TEXT characters of text, MAX_CHIPS marks, MAX_BOXES boxes drawn) and says so
when it was cut, so that an adversarial answer cannot blow the page up.

Everything is inline: the report stays one self-contained HTML file. A short script at the end of
the section records on <body> how many images decoded (data-images-ok / data-images-total) and how
many charts have a size (data-svgs-rendered) and where the first sample image and chart are on the
page (data-first-img-rect, data-first-svg-rect: x,y,w,h), so a headless browser can check the page.
"""
import base64
import html
import io
import re

from sarchat.report import score_report as report
from sarchat.report.stats_report import plot_titles, render_plots, stats_markdown
from sarchat.transforms import dataset_files
from sarchat.transforms.box_match import box_hits
from sarchat.transforms.fileio import read_bytes as _read_bytes
from sarchat.transforms.score import metrics as M
from sarchat.transforms.tasks import ANSWER_BOX_TASKS, BY_ID, SPECS, TASK_LABELS

MATCH_IOU = 0.5
MAX_TEXT = 900        # characters of a question, reference or answer shown
MAX_ERROR = 300       # characters of an inference error shown
MAX_CHIPS = 60        # marks shown per answer
MAX_BOXES = 200       # predicted boxes drawn per panel
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
    // horizontal overflow: elements whose right edge is beyond the window, except inside a
    // scrollable table wrapper (.table-wrap) or a closed zoom overlay
    var vw = window.innerWidth, over = [];
    var all = document.body.getElementsByTagName('*');
    for (var k = 0; k < all.length; k++) {
      var el = all[k];
      if (el.closest('.table-wrap') && el.className !== 'table-wrap') continue;
      var rr = el.getBoundingClientRect();
      if (rr.width > 0 && rr.right + window.scrollX > vw + 0.5) over.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.className && el.className.baseVal === undefined ? '.' + el.className : ''));
    }
    b.setAttribute('data-window-width', vw);
    b.setAttribute('data-scroll-width', document.documentElement.scrollWidth);
    b.setAttribute('data-overflowing', over.slice(0, 20).join(' '));
    b.setAttribute('data-overflow-count', over.length);
    // the radar panels (#radar: this run, or this run and the paper's rows; #radar-paper: the paper's
    // rows when the test set is another): text labels, named lines, labels that overlap a marker
    function radarFacts(sel) {
      var radar = document.querySelector(sel + ' svg'), texts = [], named = 0, hits = 0;
      if (radar) {
        var tx = radar.querySelectorAll('text');
        for (var t = 0; t < tx.length; t++) texts.push(tx[t].textContent.trim());
        named = radar.querySelectorAll('g.radar-line > title').length;
        var marks = radar.querySelectorAll('g.radar-line use');
        var axisLabels = radar.querySelectorAll('g[id^="xtick"] text, g[id^="ytick"] text');
        for (var u = 0; u < axisLabels.length; u++) {
          var a = axisLabels[u].getBoundingClientRect();
          for (var v = 0; v < marks.length; v++) {
            var q = marks[v].getBoundingClientRect();
            if (q.width > 0 && a.left < q.right && q.left < a.right && a.top < q.bottom && q.top < a.bottom) hits++;
          }
        }
      }
      return [texts, named, hits];
    }
    var run = radarFacts('#radar'), paper = radarFacts('#radar-paper');
    b.setAttribute('data-radar-texts', run[0].join('|'));
    b.setAttribute('data-radar-named-lines', run[1]);
    b.setAttribute('data-radar-paper-texts', paper[0].join('|'));
    b.setAttribute('data-radar-paper-named-lines', paper[1]);
    b.setAttribute('data-radar-label-marker-overlaps', run[2] + paper[2]);
    // box labels in the sample images (their rectangles, as drawn): pairs that cover each other
    var labelled = document.querySelectorAll('img[data-labels]'), labelPairs = 0, labelOverlaps = 0, labelCount = 0;
    for (var li = 0; li < labelled.length; li++) {
      var rs = labelled[li].getAttribute('data-labels').split(';').map(function (t) { return t.split(',').map(Number); });
      labelCount += rs.length;
      for (var p1 = 0; p1 < rs.length; p1++) for (var p2 = p1 + 1; p2 < rs.length; p2++) {
        labelPairs++;
        var A = rs[p1], B = rs[p2];
        if (A[0] < B[2] && B[0] < A[2] && A[1] < B[3] && B[1] < A[3]) labelOverlaps++;
      }
    }
    b.setAttribute('data-box-labels', labelCount);
    b.setAttribute('data-box-label-pairs', labelPairs);
    b.setAttribute('data-box-label-overlaps', labelOverlaps);
    // chart text as rendered at 100% zoom: the smallest glyph height of any chart's text (px)
    var small = 1e9, smallText = '', ctext = document.querySelectorAll('.charts svg text, .stats-plots svg text');
    for (var c = 0; c < ctext.length; c++) {
      var h = parseFloat(getComputedStyle(ctext[c]).fontSize) * (ctext[c].getScreenCTM() ? ctext[c].getScreenCTM().a : 1);
      if (ctext[c].textContent.trim() && h > 0 && h < small) { small = h; smallText = ctext[c].textContent.trim(); }
    }
    b.setAttribute('data-chart-min-font-px', ctext.length ? small.toFixed(1) : '');
    b.setAttribute('data-chart-min-font-text', smallText);
    // the breakdown tables and the confusion heat-tables: their cells, and text that covers other
    // text or spills out of its cell
    var bt = document.querySelectorAll('table.confusion, table.breakdown'), btCells = 0, btOver = 0, confCells = 0;
    for (var ti = 0; ti < bt.length; ti++) {
      var cs = bt[ti].querySelectorAll('th, td'), rects = [];
      btCells += cs.length;
      if (bt[ti].classList.contains('confusion')) confCells += bt[ti].querySelectorAll('td').length;
      for (var ci = 0; ci < cs.length; ci++) {
        var rg = document.createRange();
        rg.selectNodeContents(cs[ci]);
        var tr = rg.getBoundingClientRect(), cr = cs[ci].getBoundingClientRect();
        if (tr.width > 0 && tr.height > 0) {
          rects.push(tr);
          if (tr.left < cr.left - 0.5 || tr.right > cr.right + 0.5) btOver++;
        }
      }
      for (var i1 = 0; i1 < rects.length; i1++) for (var i2 = i1 + 1; i2 < rects.length; i2++) {
        var R1 = rects[i1], R2 = rects[i2];
        if (R1.left < R2.right - 0.5 && R2.left < R1.right - 0.5 && R1.top < R2.bottom - 0.5 && R2.top < R1.bottom - 0.5) btOver++;
      }
    }
    b.setAttribute('data-breakdown-tables', bt.length);
    b.setAttribute('data-breakdown-cells', btCells);
    b.setAttribute('data-confusion-tables', document.querySelectorAll('table.confusion').length);
    b.setAttribute('data-confusion-cells', confCells);
    b.setAttribute('data-breakdown-text-overlaps', btOver);
    // the breakdown bar charts (per category, per size) and the dataset section's plots: pairs of text
    // elements of one chart that cover each other
    var bars = document.querySelectorAll('.breakdown-charts svg, .stats-plots svg'), barTexts = 0, barOver = 0,
        barOverText = '';
    for (var si = 0; si < bars.length; si++) {
      var tx2 = bars[si].querySelectorAll('text'), tr2 = [];
      for (var xi = 0; xi < tx2.length; xi++) {
        var q2 = tx2[xi].getBoundingClientRect();
        if (tx2[xi].textContent.trim() && q2.width > 0) tr2.push([q2, tx2[xi].textContent.trim()]);
      }
      barTexts += tr2.length;
      for (var j1 = 0; j1 < tr2.length; j1++) for (var j2 = j1 + 1; j2 < tr2.length; j2++) {
        var P1 = tr2[j1][0], P2 = tr2[j2][0];
        if (P1.left < P2.right - 0.5 && P2.left < P1.right - 0.5 && P1.top < P2.bottom - 0.5 && P2.top < P1.bottom - 0.5) {
          barOver++;
          if (!barOverText) barOverText = tr2[j1][1] + ' / ' + tr2[j2][1];
        }
      }
    }
    b.setAttribute('data-bar-chart-texts', barTexts);
    b.setAttribute('data-bar-chart-text-overlaps', barOver);
    b.setAttribute('data-bar-chart-overlap-text', barOverText);
    b.setAttribute('data-render-check', 'done');
  }
  if (document.readyState === 'complete') { check(); } else { window.addEventListener('load', check); }
})();
</script>"""


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


def dataset_section(stats, title="Dataset"):
    """The stats plots as inline SVG plus the stats tables (stats.md) as HTML tables (`stats`: a
    stats.json document)."""
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
# Samples section: marks


def _box_hits(row, res, within):
    """(IoU or None per predicted box, matched flag per truth box) at MATCH_IOU, within a category or not."""
    return box_hits(res.get("pred_boxes") or [], row.get("gt_boxes") or [], res.get("pred_box_categories"),
                    (row.get("gt_categories") or []) if within else None, MATCH_IOU)


def _chip(text, kind):
    sym = {"ok": "\u2713 ", "bad": "\u2717 ", "miss": "missed: ", "na": ""}[kind]
    return f"<span class='chip {kind}'>{html.escape(sym + text)}</span>"


_MISS_NOTES = {
    M.STATUS_MISSING: "no prediction (scored as a miss)",
    M.STATUS_UNPARSEABLE: "unparseable (scored as a miss)",
    M.STATUS_INFERENCE_ERROR: "inference error (scored as a miss)",
}


def marks(task, row, res, max_chips=MAX_CHIPS):
    """HTML chips marking the parts of one model's answer that scored (and the truth it missed);
    at most max_chips, then a note of how many more there were."""
    if res is None:
        return "<span class='chip na'>no result</span>"
    note = _MISS_NOTES.get(res.get("status"))
    if note:
        return f"<span class='chip bad'>{note}</span>"
    chips = [_chip(text, kind) for text, kind in BY_ID[task].marks(row, res)]
    if len(chips) > max_chips:
        cut = len(chips) - max_chips
        chips = chips[:max_chips] + [f"<span class='cut'>(cut: {cut} more marks not shown)</span>"]
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
    path, why = dataset_files.image_file(root, rel_path)  # the one image-path rule: nothing outside the root
    if why is not None:
        return None
    try:
        data = _read_bytes(path)
        im = Image.open(io.BytesIO(data))
        im.load()
        return im.convert("RGB")
    except Exception:
        return None


def _overlaps(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _label(draw, box, text, color, font, placed=None):
    """`text` on a dark strip by the box: above its top left corner when there is room, else inside it;
    when that spot would cover a label already drawn (`placed`: their [x1, y1, x2, y2]), the next free
    spot below or above it, so a truth label and a predicted one never cover each other. Returns the
    strip's rectangle, also appended to `placed`."""
    if not text:
        return None
    x1, y1 = box[0], box[1]
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    w, h = right - left + 4, bottom - top + 2
    W, H = draw.im.size
    x = max(0, min(x1, W - w))
    y0 = y1 - h if y1 - h >= 0 else y1
    placed = [] if placed is None else placed
    candidates = [y0, min(max(0, y1), H - h), min(max(0, box[3] + 1), H - h)]
    step = h + 1
    candidates += [y0 + k * step * sign for k in range(1, 2 * (H // step) + 2) for sign in (1, -1)]
    y = y0
    for cy in candidates:
        if 0 <= cy <= H - h and not any(_overlaps((x, cy, x + w, cy + h), r) for r in placed):
            y = cy
            break
    else:  # no free row at this x: the least covered one
        y = min((cy for cy in candidates if 0 <= cy <= H - h),
                key=lambda cy: sum(_overlaps((x, cy, x + w, cy + h), r) for r in placed), default=y0)
    draw.rectangle([x, y, x + w, y + h], fill=(0, 0, 0))
    draw.text((x + 2 - left, y + 1 - top), text, fill=color, font=font)
    rect = [x, y, x + w, y + h]
    placed.append(rect)
    return rect


def _font():
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=11)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def draw_panel(image, width, height, gt_boxes, gt_hit=None, pred_boxes=(), pred_ok=(), max_side=DEFAULT_MAX_SIDE,
               gt_labels=(), pred_labels=(), label_rects=None):
    """A downscaled copy of `image` with truth boxes (green; dashed when missed) and predicted boxes
    (red; dashed when unmatched), each with its category label when given, as a base64 JPEG data
    URI; also returns its size. Labels never cover each other: truth labels are placed first, each
    next one in the first free spot by its box; `label_rects`, a list, receives their rectangles."""
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
    for i, (b, ok) in enumerate(zip(pred_boxes or [], pred_ok or [True] * len(pred_boxes or []))):
        if ok:
            draw.rectangle(sc(b), outline=PRED_COLOR, width=lw)
        else:
            _dashed_rect(draw, sc(b), PRED_COLOR, lw)
    font = _font()
    labels = [(sc(b), gt_labels[i], GT_COLOR) for i, b in enumerate(gt_boxes or []) if i < len(gt_labels or ())]
    labels += [(sc(b), pred_labels[i], PRED_COLOR) for i, b in enumerate(pred_boxes or [])
               if i < len(pred_labels or ()) and pred_labels[i]]
    placed = [] if label_rects is None else label_rects
    for box, text, color in labels[:MAX_BOXES]:  # drawn last, so that no box line crosses a label
        _label(draw, box, str(text), color, font, placed)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=82)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), size


def _figure(uri, size, caption, key, label_rects=None):
    """An image that enlarges when clicked (CSS only: a hidden checkbox toggles a full-window view).
    `label_rects`: where its box labels were drawn (data-labels, which the page's check reads)."""
    zid = "zoom-" + re.sub(r"[^A-Za-z0-9_-]", "_", key)
    alt = html.escape(caption, quote=True)
    rects = (" data-labels='" + ";".join(",".join(str(round(v)) for v in r) for r in label_rects) + "'"
             if label_rects else "")
    return (f"<figure><input type='checkbox' class='zoom' id='{zid}'><label class='zoom' for='{zid}' "
            f"title='click to enlarge / close'><img src='{uri}' width='{size[0]}' height='{size[1]}' alt='{alt}'{rects}>"
            f"</label><figcaption>{html.escape(caption)}</figcaption></figure>")


def truth_caption(model, found, n_truth, n_pred, same_category=False, drawn=""):
    """'model: k of n truth boxes found' -- divided by the truth boxes, never by the predicted ones."""
    return (f"{model}: {found} of {n_truth} truth boxes found"
            f"{' (same category)' if same_category else ''}, {n_pred} predicted{drawn}")


# ---------------------------------------------------------------------------------------------
# Samples section


def samples_section(order, rows, models, results, image_root=None, max_side=DEFAULT_MAX_SIDE, title="Samples"):
    """A few scored test samples per task with images, answers and marks (the paper's Figure 3).

    order: the shown ids in display order; rows: {id: test row with question, answer, image_path};
    models: model names in leaderboard order; results: {(model, id): {'prediction', 'error',
    'result': the scorer's per-sample record}} -- all as the scoring pipeline computed them."""
    intro = ("<p class='note'>A few test samples per task (the smallest ids of each task, subsets in turn). "
             "Boxes: <span class='sw gt'></span> ground truth, <span class='sw pred'></span> the model's parsed boxes; "
             f"solid when matched (IoU &ge; {MATCH_IOU} after the scorer's Hungarian assignment; grounding matches "
             "within a category), dashed when not (a dashed green box is a truth box the model missed). "
             "Marks: <span class='chip ok'>\u2713 scored right</span> <span class='chip bad'>\u2717 wrong</span> "
             "<span class='chip miss'>missed: in the truth, not in the answer</span>. "
             "Per column TP / FP / FN as counted in the scores above. Under each model's panel: how many of the "
             "sample's truth boxes it found (matched at IoU &ge; 0.5), out of all truth boxes. Boxes carry their "
             "category. Click an image to enlarge it, click again to close.</p>")
    cards, md = [], []
    missing_images = 0
    for sid in order:
        row = rows[sid]
        task = row["task"]
        image = load_image(image_root, row.get("image_path"))
        W, H = row.get("width"), row.get("height")
        figs = []
        if image is None:
            missing_images += 1
            figs.append(f"<div class='noimg'><span>image not available</span><code>"
                        f"{html.escape(str(row.get('image_path')))}</code></div>")
        else:
            gt_caption = "ground truth" if row.get("gt_boxes") else "image"
            gt_labels = list(row.get("gt_categories") or [])
            rects = []
            uri, size = draw_panel(image, W, H, row.get("gt_boxes") or [], max_side=max_side, gt_labels=gt_labels,
                                   label_rects=rects)
            n = len(row.get("gt_boxes") or [])
            figs.append(_figure(uri, size, f"{gt_caption} ({n} box{'es' if n != 1 else ''})" if n else gt_caption,
                                f"{sid}-truth", rects))
            if task in ANSWER_BOX_TASKS:
                for m in models:
                    res = (results.get((m, sid)) or {}).get("result") or {}
                    within = SPECS[task].match_within_category
                    pred_iou, gt_hit = _box_hits(row, res, within)
                    ok = [v is not None and v >= MATCH_IOU for v in pred_iou]
                    boxes = res.get("pred_boxes") or []
                    drawn = f", {MAX_BOXES} of {len(boxes)} drawn" if len(boxes) > MAX_BOXES else ""
                    pcats = list(res.get("pred_box_categories") or []) if within else []
                    rects = []
                    uri, size = draw_panel(image, W, H, row.get("gt_boxes") or [], gt_hit,
                                           boxes[:MAX_BOXES], ok[:MAX_BOXES], max_side=max_side,
                                           gt_labels=gt_labels, pred_labels=pcats[:MAX_BOXES], label_rects=rects)
                    figs.append(_figure(uri, size, truth_caption(m, sum(gt_hit), len(gt_hit), len(boxes),
                                                                 within, drawn), f"{sid}-{m}", rects))
        qa = [f"<tr><th>Question</th><td class='l'>{_text(row.get('question'))}</td></tr>",
              f"<tr><th>Reference</th><td class='l ref'>{_text(row.get('answer'))}</td></tr>"]
        md.append(f"- `{sid}` ({task}{', ' + row['subset'] if row.get('subset') else ''}): "
                  f"{_md_escape(_strip_image_tag(row.get('question')))}")
        for m in models:
            shown = results.get((m, sid)) or {}
            res = shown.get("result")
            answer, err = shown.get("prediction"), shown.get("error")
            text = _text(answer) if answer else "<i>(no answer)</i>"
            if err:
                text += f"<div class='err'>error: {_text(err, MAX_ERROR)}</div>"
            qa.append(f"<tr><th>{html.escape(m)}</th><td class='l'>{text}"
                      f"<div class='marks'>{marks(task, row, res)}</div>"
                      f"<div class='cols'>{html.escape(score_line(res))}</div></td></tr>")
            md.append(f"  - {m}: {_md_escape(score_line(res)) or '–'}")
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
        body = intro + (f"<p class='note'>Images not found under <code>{html.escape(str(image_root))}</code>: "
                        f"{missing_images} (pass <code>--image-root</code>).</p>" if missing_images else "")
        body += "<div class='samples'>" + "\n".join(cards) + "</div>"
    body += RENDER_CHECK_SCRIPT
    md_text = (f"{len(order)} test samples (smallest ids per task); per model the TP / FP / FN of each column. "
               "Images and marked answers are in report.html.\n\n" + "\n".join(md))
    return report.Section(title, html=body, markdown=md_text)


def _strip_image_tag(text):
    text = str(text or "")
    return text[len("<image>"):].lstrip("\n") if text.startswith("<image>") else text


def _text(text, limit=MAX_TEXT):
    """Escaped text for the page, at most `limit` characters, saying so when it was cut."""
    text = _strip_image_tag(text)
    cut = ""
    if len(text) > limit:
        cut = f" \u2026 <span class='cut'>(cut: {limit:,} of {len(text):,} characters shown)</span>"
        text = text[:limit]
    return html.escape(text).replace("\n", "<br>") + cut


def _md_escape(text, limit=200):
    text = str(text or "").replace("\n", " ").replace("|", "\\|")
    return text[:limit] + ("\u2026" if len(text) > limit else "")
