"""Extra sections of the benchmark report: the dataset and a few scored samples (paper's Figure 3).

    dataset_section(stats)                                   -> score_report.Section (a stats.json dict)
    samples_section(order, rows, models, results, ...)       -> score_report.Section

Both are fed only from the scoring pipeline's own outputs (sarchat.transforms.score.pipeline's
WriteReportsFn): the stats document read at launch, the ids it chose (sample_choice: the smallest
ids of each task, subsets in turn), their test rows and every model's result for them, as the
scorer computed it. Nothing here reads a file but the sample images.

The dataset section inlines the `sarchat stats` plots as SVG and the stats report's tables
(stats.html.j2, over the model stats.md.j2 prints). The samples section shows each chosen sample's
image, downscaled and embedded as base64 JPEG, with the ground-truth boxes (green) and, one panel
per model, the model's parsed boxes (red): solid when matched (IoU >= 0.5 after the scorer's
Hungarian assignment), dashed when not; missed truth boxes are dashed green. Beside it: the
question, the reference answer and every model's answer with the scored parts marked (each task
module's `marks`). What one sample shows is capped (MAX_TEXT characters of text, MAX_CHIPS marks,
MAX_BOXES boxes drawn) and says so when it was cut, so that an adversarial answer cannot blow the
page up. The samples section is a typed model (`Sample`s: their panels, texts and answers) through
samples.html.j2 and samples.md.j2.

Everything is inline: the report stays one self-contained HTML file. A short script at the end of
the section (render_check.js) records on <body> how many images decoded (data-images-ok / data-images-total) and how
many charts have a size (data-svgs-rendered) and where the first sample image and chart are on the
page (data-first-img-rect, data-first-svg-rect: x,y,w,h), so a headless browser can check the page.
"""
import base64
import html
import io
import re
from dataclasses import dataclass
from importlib import resources

import markupsafe

from sarchat.report import score_report as report
from sarchat.report.stats_report import PLOT_TITLES, render_plots, stats_markdown, stats_model
from sarchat.transforms import dataset_files
from sarchat.transforms.box_match import box_hits
from sarchat.transforms.fileio import read_bytes as _read_bytes
from sarchat.transforms.rendering import render
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

# The check a headless browser reads (tests/test_report_browser.py): once the page has loaded it sets
# data attributes on <body>: images that decoded, charts (inline SVG) with a size, table rows, overflow,
# the radar's labels, overlapping box labels and chart texts. JavaScript, so it lives in its own file.
RENDER_CHECK_SCRIPT = ("<script>\n" + resources.files("sarchat.report").joinpath("render_check.js")
                       .read_text(encoding="utf-8") + "</script>")


# ---------------------------------------------------------------------------------------------
# Dataset section


_INLINE = [
    (re.compile(r"`([^`]+)`"), r"<code>\1</code>"),
    (re.compile(r"\*\*([^*]+)\*\*"), r"<b>\1</b>"),
    (re.compile(r"(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])"), r"<i>\1</i>"),
]


def _inline(text):
    """A value of the stats report in HTML: escaped (quotes left as they are) and its inline Markdown,
    `code`, **bold** and *italic* (the *paper* marks), as tags."""
    out = html.escape(str(text), quote=False)
    for rx, sub in _INLINE:
        out = rx.sub(sub, out)
    return markupsafe.Markup(out)


def dataset_section(stats, title="Dataset"):
    """The stats plots as inline SVG plus the stats report's tables, stats.html.j2 over the model of
    stats.md (`stats`: a stats.json document)."""
    md, info = stats_markdown(stats), stats.get("input") or {}
    tables = render(__file__, "stats.html.j2", inline=_inline, **vars(stats_model(stats))).rstrip("\n")
    plots = [(name, PLOT_TITLES.get(name, name), report.svg_element(data.decode("utf-8")))
             for name, data in render_plots(stats, fmt="svg").items()]
    page = render(__file__, "dataset.html.j2", kind=str(info.get("kind", "the")), root=str(info.get("root", "")),
                  plots=plots, tables=tables)
    md_body = re.sub(r"^#", "##", md, flags=re.M)  # one level below the section's own heading
    md_body = md_body.split("\n", 1)[1].lstrip() if md_body.startswith("## Dataset statistics") else md_body
    return report.Section(title, html=page + RENDER_CHECK_SCRIPT, markdown=md_body.rstrip())


# ---------------------------------------------------------------------------------------------
# Samples section: marks


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
    return " | ".join(f"{report.COLUMN_LABELS.get(c, c)}: TP {tp} \u00b7 FP {fp} \u00b7 FN {fn}"
                      for c, tp, fp, fn in zip(*((res or {}).get(k) or [] for k in ("columns", "tp", "fp", "fn"))))


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
        return Image.open(io.BytesIO(_read_bytes(path))).convert("RGB")  # convert reads the whole image
    except Exception:
        return None


def _overlaps(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _label(draw, box, text, color, font, placed):
    """`text` on a dark strip by the box: above its top left corner when there is room, else inside it;
    when that spot would cover a label already drawn (`placed`: their [x1, y1, x2, y2]), the next free
    spot below or above it, so a truth label and a predicted one never cover each other. The strip's
    rectangle is appended to `placed`."""
    if not text:
        return
    x1, y1 = box[0], box[1]
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    w, h = right - left + 4, bottom - top + 2
    W, H = draw.im.size
    x = max(0, min(x1, W - w))
    y0 = y1 - h if y1 - h >= 0 else y1
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
    placed.append([x, y, x + w, y + h])


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

    im, to_panel = _downscaled(image, width, height, max_side)
    draw = ImageDraw.Draw(im)
    truth = [to_panel(b) for b in gt_boxes or []]
    predicted = [to_panel(b) for b in pred_boxes or []]
    _draw_boxes(draw, truth, [True] * len(truth) if gt_hit is None else gt_hit, GT_COLOR)
    _draw_boxes(draw, predicted, pred_ok or [True] * len(predicted), PRED_COLOR)
    labels = [(b, text, GT_COLOR) for b, text in zip(truth, gt_labels or ())]
    labels += [(b, text, PRED_COLOR) for b, text in zip(predicted, pred_labels or ()) if text]
    placed = [] if label_rects is None else label_rects
    font = _font()
    for box, text, color in labels[:MAX_BOXES]:  # drawn last, so that no box line crosses a label
        _label(draw, box, str(text), color, font, placed)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=82)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), im.size


def _downscaled(image, width, height, max_side):
    """`image` at most `max_side` pixels a side, and the function that maps a box in the row's pixel
    coordinates (`width` x `height`, by default the image's) onto it: corners in order, at least a
    pixel wide and high."""
    W, H = width or image.width, height or image.height
    scale = min(1.0, max_side / max(image.width, image.height))
    im = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    sx, sy = im.width / W, im.height / H

    def to_panel(box):
        x1, y1, x2, y2 = (float(v) for v in box)
        x1, x2 = sorted((x1 * sx, x2 * sx))
        y1, y2 = sorted((y1 * sy, y2 * sy))
        return [x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)]
    return im, to_panel


def _draw_boxes(draw, boxes, solid, color, width=2):
    """Each box outlined in `color`: solid where `solid` says so, else dashed."""
    for box, ok in zip(boxes, solid):
        if ok:
            draw.rectangle(box, outline=color, width=width)
        else:
            _dashed_rect(draw, box, color, width)


# ---------------------------------------------------------------------------------------------
# Samples section: its model; samples.html.j2 and samples.md.j2 hold the words


@dataclass(frozen=True)
class Shown:
    """A text as a sample shows it: its first `limit` characters (an <image> tag left out) and how
    many it had, so the page can say it was cut."""
    text: str
    total: int
    limit: int


@dataclass(frozen=True)
class Panel:
    """One image of a sample: its data URI and size, its caption, the id of its zoom toggle, and
    where its box labels were drawn ("x1,y1,x2,y2;...", read by the page's check)."""
    uri: str
    size: tuple[int, int]
    caption: str
    zoom_id: str
    labels: str


@dataclass(frozen=True)
class Answer:
    """One model's answer to a sample; None where it gave no answer or no error."""
    model: str
    answer: Shown | None
    error: Shown | None
    marks: str          # HTML chips of escaped text (marks())
    score_line: str
    score_md: str


@dataclass(frozen=True)
class Sample:
    id: str
    task: str
    task_label: str
    subset: str | None
    image_path: str
    panels: list[Panel] | None  # None: the image could not be read
    question: Shown
    question_md: str
    reference: Shown
    answers: list[Answer]


def samples_section(order, rows, models, results, image_root=None, max_side=DEFAULT_MAX_SIDE, title="Samples"):
    """A few scored test samples per task with images, answers and marks (the paper's Figure 3).

    order: the shown ids in display order; rows: {id: test row with question, answer, image_path};
    models: model names in leaderboard order; results: {(model, id): {'prediction', 'error',
    'result': the scorer's per-sample record}} -- all as the scoring pipeline computed them."""
    samples = [_sample(sid, rows[sid], models, results, image_root, max_side) for sid in order]
    model = {"samples": samples, "match_iou": MATCH_IOU, "image_root": image_root,
             "missing_images": sum(s.panels is None for s in samples)}
    return report.Section(title, html=render(__file__, "samples.html.j2", **model) + RENDER_CHECK_SCRIPT,
                          markdown=render(__file__, "samples.md.j2", **model))


def _sample(sid, row, models, results, image_root, max_side):
    task = row["task"]
    image = load_image(image_root, row.get("image_path"))
    answers = []
    for m in models:
        shown = results.get((m, sid)) or {}
        res, answer, err = shown.get("result"), shown.get("prediction"), shown.get("error")
        answers.append(Answer(m, _shown(answer) if answer else None, _shown(err, MAX_ERROR) if err else None,
                              marks(task, row, res), score_line(res), _md_escape(score_line(res))))
    return Sample(id=sid, task=task, task_label=TASK_LABELS.get(task, task), subset=row.get("subset"),
                  image_path=str(row.get("image_path")),
                  panels=None if image is None else _panels(sid, row, image, models, results, max_side),
                  question=_shown(row.get("question")), question_md=_md_escape(_strip_image_tag(row.get("question"))),
                  reference=_shown(row.get("answer")), answers=answers)


def _panels(sid, row, image, models, results, max_side):
    """The truth panel, then, for a task whose answers carry boxes, one panel per model."""
    W, H = row.get("width"), row.get("height")
    truth = row.get("gt_boxes") or []
    gt_labels = list(row.get("gt_categories") or [])
    rects = []
    uri, size = draw_panel(image, W, H, truth, max_side=max_side, gt_labels=gt_labels, label_rects=rects)
    n = len(truth)
    panels = [_panel(uri, size, f"ground truth ({n} box{'es' if n != 1 else ''})" if n else "image", f"{sid}-truth",
                     rects)]
    if row["task"] not in ANSWER_BOX_TASKS:
        return panels
    within = SPECS[row["task"]].match_within_category
    for m in models:
        res = (results.get((m, sid)) or {}).get("result") or {}
        boxes = res.get("pred_boxes") or []
        # (IoU or None per predicted box, matched flag per truth box), within a category or not
        pred_iou, gt_hit = box_hits(boxes, truth, res.get("pred_box_categories"), gt_labels if within else None,
                                    MATCH_IOU)
        ok = [v is not None and v >= MATCH_IOU for v in pred_iou]
        drawn = f", {MAX_BOXES} of {len(boxes)} drawn" if len(boxes) > MAX_BOXES else ""
        pcats = list(res.get("pred_box_categories") or []) if within else []
        rects = []
        uri, size = draw_panel(image, W, H, truth, gt_hit, boxes[:MAX_BOXES], ok[:MAX_BOXES], max_side=max_side,
                               gt_labels=gt_labels, pred_labels=pcats[:MAX_BOXES], label_rects=rects)
        # found is divided by the truth boxes, never by the predicted ones
        caption = (f"{m}: {sum(gt_hit)} of {len(gt_hit)} truth boxes found{' (same category)' if within else ''}, "
                   f"{len(boxes)} predicted{drawn}")
        panels.append(_panel(uri, size, caption, f"{sid}-{m}", rects))
    return panels


def _panel(uri, size, caption, key, label_rects):
    return Panel(uri, size, caption, "zoom-" + re.sub(r"[^A-Za-z0-9_-]", "_", key),
                 ";".join(",".join(str(round(v)) for v in r) for r in label_rects))


def _strip_image_tag(text):
    text = str(text or "")
    return text[len("<image>"):].lstrip("\n") if text.startswith("<image>") else text


def _shown(text, limit=MAX_TEXT):
    text = _strip_image_tag(text)
    return Shown(text[:limit], len(text), limit)


def _md_escape(text, limit=200):
    text = str(text or "").replace("\n", " ").replace("|", "\\|")
    return text[:limit] + ("\u2026" if len(text) > limit else "")
