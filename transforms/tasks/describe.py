"""Fine-grained description: a '<size> <category> <position>' phrase per kept box (docs/rules.md sections 5, 7 and 12)."""
from collections import Counter

import numpy as np
import pyarrow as pa

from sarchat.transforms.answer_words import OK, UNPARSEABLE, parse_description
from sarchat.transforms import geometry
from sarchat.transforms.box_match import multiset_counts
from sarchat.transforms.categories import CATEGORY_INDEX, article
from sarchat.transforms.tasks.column_scoring import explode, set_scores
from sarchat.transforms.tasks.task_spec import TaskSpec, most_common, ranked, row_dicts

SPEC = TaskSpec("describe", "", "Fine-grained description", columns=(("describe", "Descript"),), min_templates=40,
                prior_columns=("gt_sizes", "gt_categories", "gt_cells"))
# The placeholders each kind of template text may use and must use (templates/__init__.py).
TEMPLATE_FIELDS: dict[str, tuple[set, set]] = {"question": (set(), set()), "style": ({"size", "category", "position"}, set())}


def parse(text, box_format=None, width=None, height=None):
    """{'status', 'triples'}: (size, category, cell) per phrase (answer_words.parse_description);
    unparseable when no "<size> <category>" phrase (e.g. "small ship", "medium-sized tanks")."""
    triples = parse_description(text)
    return {"status": OK if triples else UNPARSEABLE, "triples": triples}


def _truth(row):
    return list(zip(row.get("gt_sizes") or [], row.get("gt_categories") or [], row.get("gt_cells") or []))


def columns(row):
    """The columns a test row counts in."""
    return ["describe"]


def score(row, parsed):
    """({column: (TP, FP, FN)}, IoUs per truth box) of a parsed answer: (size, category, cell) multisets."""
    return {"describe": multiset_counts(parsed["triples"], _truth(row))}, []


def miss(row):
    """{column: (0, 0, FN)} of an answer that scores nothing."""
    return {"describe": (0, 0, len(_truth(row)))}


def _truth_items(truth):
    """_truth's triples as (row, code) pairs: zip(sizes, categories, cells) stops at the shortest."""
    cols = [truth.list_column(name) for name in ("gt_sizes", "gt_categories", "gt_cells")]
    count = np.minimum.reduce([c.lengths for c in cols])
    values = []
    for c in cols:
        rows, pos = explode(np.arange(truth.n), c.starts, count)
        values.append(c.flat.take(pa.array(pos, pa.int64())).to_pylist() if len(pos) else [])
    return rows, np.array([truth.vocab.code(("triple", a, b, x)) for a, b, x in zip(*values)], dtype=np.int64)


def score_columns(truth, parses, uok, ok, out):
    """score and miss for all rows at once (column_scoring)."""
    v = truth.vocab
    out.set(slice(None), 0, *set_scores(truth, _truth_items, parses, uok,
                                        lambda p: [v.code(("triple",) + tuple(t)) for t in p["triples"]],
                                        multiset=True))


def pred_labels(parsed):
    """The samples' `pred_labels` column: size|category|cell per phrase."""
    return ["|".join(x or "" for x in t) for t in parsed["triples"]]


def marks(row, res):
    """The report's marks of a scored answer (res: its sample record): [(text, 'ok' | 'bad' | 'miss' | 'na')]."""
    gt: Counter = Counter(_truth(row))
    out = []
    for lab in res.get("pred_labels") or []:
        t = tuple(x or None for x in lab.split("|"))
        ok = gt[t] > 0
        if ok:
            gt[t] -= 1
        out.append((" ".join(x or "?" for x in t), "ok" if ok else "bad"))
    for t, n in sorted(gt.items(), key=lambda kv: tuple(x or "" for x in kv[0])):
        out += [(" ".join(x or "?" for x in t), "miss")] * n
    return out


# ---- baselines: a blind prior's answer (inference/baselines.py) and a detector's (inference/cfar.py)


def fit_prior(tally, rows):
    """The blind prior's counts of train rows: the number of kept boxes and each (size, category,
    cell) phrase."""
    ks, phrases = tally.counter("describe", "k"), tally.counter("describe", "phrases")
    for row in row_dicts(rows, SPEC.prior_columns):
        triples = _truth(row)
        ks[len(triples)] += 1
        phrases.update(triples)


def prior(tally, top_category):
    """The blind prior's entry: the k most common phrases, k the most common number of kept boxes."""
    k = most_common(tally.counter("describe", "k"), 1)
    return {"describe": [list(t) for t in ranked(tally.counter("describe", "phrases"))[:max(1, k)]]
            or [["small", top_category, "middle center"]]}


def blind_answer(prior, row, fmt, W, H):
    """The blind prior's answer: its most common (size, category, cell) phrases."""
    phrases = [f"a {s} {c} {geometry.POSITION_PHRASES.get(cell, 'in the central region of the image')}"
               for s, c, cell in prior.priors["describe"]]
    text = "; ".join(phrases) + "."
    return text[0].upper() + text[1:]


def detector_answer(row, W, H, detections, region_category):
    """A detector's answer: a phrase per detection the describe filters keep (the first detection
    when they keep none), in category order."""
    dets = detections()
    kept = [d for d in dets if geometry.describe_box_reason(_xywh(d.box), W, H) is None] or dets[:1]
    if not kept:
        return "No distinct targets are visible in this SAR image."
    kept.sort(key=lambda d: (CATEGORY_INDEX[d.category], d.box[1], d.box[0]))
    phrases = []
    for k, d in enumerate(kept):
        size = geometry.describe_size(geometry.area_ratio(_xywh(d.box), W, H))
        pos = geometry.POSITION_PHRASES[geometry.grid_cell(d.box, W, H)]
        if k == 0:
            phrases.append(f"{article(size).capitalize()} {size} {d.category} is visible {pos}.")
        else:
            phrases.append(f"There is one more {size} {d.category} {pos}.")
    return " ".join(phrases)


def _xywh(box):
    return [box[0], box[1], box[2] - box[0], box[3] - box[1]]


# ---- building its dialogues from a shard's boxes (transforms/generate/dialogues.py gives ctx)


def build(ctx):
    """One row per image big enough, of the boxes the describe filters keep (the others: rejects)."""
    rows, shard = ctx.rows("describe", box_sizes=True), ctx.shard
    for i, image, lo, cats, by_cat in ctx.per_image:
        split, image_id, W, H = image["split"], image["image_id"], image["width"], image["height"]
        if not geometry.describe_image_ok(W, H):
            ctx.rejects.append({"split": split, "record": f"image {image_id}", "reason": "describe_image_too_small",
                                "detail": f"{W}x{H}"})
            continue
        kept = []
        for b, box in enumerate(image["boxes"], lo):
            reason = geometry.describe_box_reason(box["bbox"], W, H)
            if reason:
                ctx.rejects.append({"split": split, "record": f"annotation {box['ann_id']}", "reason": reason,
                                    "detail": f"image {image_id}"})
            else:
                kept.append(b)
        if not kept:
            continue
        kept.sort(key=lambda b: CATEGORY_INDEX[shard.category[b]])  # stable: annotation order within a category
        did, t = ctx.pick("describe", image)
        style = ctx.banks["describe"]["styles"][t["style"]]
        more = style["more"] if isinstance(style["more"], list) else [style["more"]]
        phrases = [(style["first"] if j == 0 else more[(j - 1) % len(more)]).format(
            size=geometry.DESCRIBE_SIZES[shard.describe_size[b]], category=shard.category[b],
            position=geometry.POSITION_PHRASES[shard.cell[b]]) for j, b in enumerate(kept)]
        answer = style["lead"] + style["sep"].join(phrases) + style["end"]
        rows.add(did, i, None, t["question"], answer[0].upper() + answer[1:], t["id"], kept, len(kept))
    return rows.columns(shard)
