"""Spatial grounding: every box by category, and the relations between categories (docs/rules.md sections 7 and 12)."""
import itertools
from collections import Counter

import numpy as np

from sarchat.transforms.answer_words import OK, UNPARSEABLE, canon_triple, parse_boxes_by_category, parse_relations
from sarchat.transforms.box_match import box_marks, match_boxes, set_counts
from sarchat.transforms import geometry
from sarchat.transforms.categories import CATEGORIES, CATEGORY_INDEX, article, plural
from sarchat.transforms.schema import join_relation, seeded_int, split_relation
from sarchat.transforms.tasks.column_scoring import box_scores, set_scores, subset_column
from sarchat.transforms.tasks.task_spec import TaskSpec, most_common, row_dicts, subset_of

SPEC = TaskSpec("grounding", "[grounding]", "Spatial grounding", subsets=("single", "multi"),
                columns=(("grounding.abstract_position", "Abstract position"), ("grounding.multi", "Ground Multi"),
                         ("grounding.single", "Ground Single")),
                answer_has_boxes=True, min_templates=15, match_within_category=True,
                prior_columns=("gt_categories", "gt_relations"))
GROUNDING_IOU = 0.5  # a box matched within its category is a TP from this IoU
# The placeholders each kind of template text may use and must use (templates/__init__.py).
TEMPLATE_FIELDS: dict[str, tuple[set, set]] = {"question": (set(), set()), "relation": ({"a", "b", "rel", "dir"}, set())}


def parse(text, box_format, width, height):
    """{'status', 'boxes', 'box_categories', 'relations'} (answer_words.parse_boxes_by_category);
    unparseable when neither a box (in the declared format) nor a relation sentence."""
    boxes, cats = parse_boxes_by_category(text, box_format, width, height)
    relations = parse_relations(text)
    status = OK if (boxes or relations) else UNPARSEABLE
    return {"status": status, "boxes": boxes, "box_categories": cats, "relations": relations}


def _truth_relations(row):
    return {canon_triple(*split_relation(r)[:3]) for r in (row.get("gt_relations") or [])}


def columns(row):
    """The columns a test row counts in: the relation column only when the row has relations."""
    return (["grounding.abstract_position"] if row.get("gt_relations") else []) + [f"grounding.{subset_of(row)}"]


def score(row, parsed):
    """({column: (TP, FP, FN)}, IoUs per truth box) of a parsed answer: (cat1, relation, cat2)
    triples as sets, boxes matched within a category at IoU GROUNDING_IOU."""
    gt_boxes = row.get("gt_boxes") or []
    out = {}
    if row.get("gt_relations"):
        out["grounding.abstract_position"] = set_counts(set(parsed["relations"]), _truth_relations(row))
    gt_cats = row.get("gt_categories") or []
    ious = [0.0] * len(gt_boxes)
    tp = 0
    for cat in sorted(set(gt_cats), key=lambda c: CATEGORY_INDEX.get(c, 99)):
        gi = [i for i, c in enumerate(gt_cats) if c == cat]
        pb = [b for b, c in zip(parsed["boxes"], parsed["box_categories"]) if c == cat]
        for _, c, v in match_boxes(pb, [gt_boxes[i] for i in gi]):
            ious[gi[c]] = v
            if v >= GROUNDING_IOU:
                tp += 1
    out[f"grounding.{subset_of(row)}"] = (tp, len(parsed["boxes"]) - tp, len(gt_boxes) - tp)
    return out, ious


def miss(row):
    """{column: (0, 0, FN)} of an answer that scores nothing."""
    out = {}
    if row.get("gt_relations"):
        out["grounding.abstract_position"] = (0, 0, len(_truth_relations(row)))
    out[f"grounding.{subset_of(row)}"] = (0, 0, len(row.get("gt_boxes") or []))
    return out


def _truth_items(truth):
    lists = truth.list_column("gt_relations")
    return lists.rows, truth.vocab.encode(lists.flat, lambda r: ("relation",) + canon_triple(*split_relation(r)[:3]))


def score_columns(truth, parses, uok, ok, out):
    """score and miss for all rows at once (column_scoring)."""
    v, boxes = truth.vocab, truth.boxes
    rel = truth.list_column("gt_relations").lengths > 0
    a, b, c = set_scores(truth, _truth_items, parses, uok, lambda p: [v.code(("relation",) + tuple(t))
                                                                       for t in p["relations"]])
    out.set(rel, SPEC.column_ids.index("grounding.abstract_position"), a[rel], b[rel], c[rel])
    # boxes are matched within each category of the truth (a predicted box's category:
    # answer_words.parse_boxes_by_category)
    gt_cat = truth.box_categories(v.encode(truth.categories.flat, lambda x: ("category", x)))
    pcat = np.array([v.code(("category", x)) for p in parses for x in p["box_categories"]], dtype=np.int64)

    def by_category(prow, ppos):
        width = max(len(v), 1)
        gkey = np.where(gt_cat >= 0, boxes.rows * width + gt_cat, -1)
        groups = np.unique(gkey[gkey >= 0])
        gg = np.where(gkey >= 0, np.searchsorted(groups, gkey), len(groups))
        pkey = prow * width + pcat[ppos]
        at = np.minimum(np.searchsorted(groups, pkey), max(len(groups) - 1, 0))
        found = groups[at] == pkey if len(groups) else np.zeros(len(pkey), dtype=bool)
        return np.where(found, at, -1), gg, len(groups) + 1

    box_scores(truth, parses, uok, out, [(subset_column(truth, "grounding"), GROUNDING_IOU)], by_category)


def pred_labels(parsed):
    """The samples' `pred_labels` column: cat1|relation|cat2 per relation stated."""
    return ["|".join(t) for t in parsed["relations"]]


def marks(row, res):
    """The report's marks of a scored answer (res: its sample record): [(text, 'ok' | 'bad' | 'miss' | 'na')]."""
    out = box_marks(res.get("pred_boxes") or [], row.get("gt_boxes") or [], res.get("pred_box_categories"),
                    row.get("gt_categories") or [])
    gt = _truth_relations(row)
    said = set()
    for lab in res.get("pred_labels") or []:
        t = tuple(lab.split("|")[:3])
        said.add(t)
        out.append((" ".join(t), "ok" if t in gt else "bad"))
    return out + [(" ".join(t), "miss") for t in sorted(gt - said)]


# ---- baselines: a blind prior's answer (inference/baselines.py) and a detector's (inference/cfar.py)


_LEAD = "In this SAR image, I can identify several objects and their locations: "


def _boxes_sentence(cat, placed):
    """The answers' sentence of a category's boxes, placed = [(cell, box text), ...]."""
    if len(placed) == 1:
        return f"There is {article(cat)} {cat} in the {placed[0][0]} portion {placed[0][1]}."
    parts = ", ".join([f"one in the {cell} portion {box}" for cell, box in placed])
    return f"There are {len(placed)} {plural(cat)}: {parts}."


def fit_prior(tally, rows):
    """The blind prior's counts of train rows: each image composition ((category, count) pairs)
    and, per category pair, each relation."""
    compositions, relations = tally.counter("grounding"), tally.counters("relations")
    for row in row_dicts(rows, SPEC.prior_columns):
        cats = row.get("gt_categories") or []
        compositions[tuple(sorted(Counter(cats).items(), key=lambda kv: CATEGORY_INDEX[kv[0]]))] += 1
        for r in row.get("gt_relations") or []:
            a, rel, b, _ = split_relation(r)
            relations[f"{a}|{b}"][rel] += 1


def prior(tally, top_category):
    """The blind prior's entries: the most common composition, per category pair the most common relation."""
    return {"grounding": [list(p) for p in most_common(tally.counter("grounding"), ((top_category, 1),))],
            "relations": {pair: most_common(v) for pair, v in tally.counters("relations").items()}}


def blind_answer(prior, row, fmt, W, H):
    """The blind prior's answer: its most common composition at prior boxes, and per category pair
    its most common relation."""
    P = prior.priors
    sentences = []
    cats = [c for c, _ in P["grounding"]]
    for cat, n in P["grounding"]:
        placed = [(cell, fmt.render_one(b, W, H)) for b, cell in prior.prior_boxes(cat, int(n), W, H)]
        sentences.append(_boxes_sentence(cat, placed))
    for a, b in itertools.combinations(cats, 2):
        rel = P["relations"].get(f"{a}|{b}") or "near"
        sentences.append(f"The {a} is {rel} the {b}.")
    return _LEAD + " ".join(sentences)


def detector_answer(row, W, H, detections, region_category):
    """A detector's answer: its detections per category, then the relation of every category pair
    (geometry.relation)."""
    groups = {}
    for d in detections():
        groups.setdefault(d.category, []).append(d.box)
    sentences = []
    cats = [c for c in CATEGORIES if c in groups]
    for cat in cats:
        boxes = sorted(groups[cat], key=lambda b: (b[1], b[0]))
        sentences.append(_boxes_sentence(cat, [(geometry.grid_cell(b, W, H), geometry.box_text(b)) for b in boxes]))
    for a, b in itertools.combinations(cats, 2):
        rel, direction = geometry.relation(groups[a], groups[b], W, H)
        tail = f", {direction} it" if direction else ""
        sentences.append(f"The {a} is {rel} the {b}{tail}.")
    return _LEAD + " ".join(sentences)


# ---- building its dialogues from a shard's boxes (transforms/generate/dialogues.py gives ctx)


def build(ctx):
    """One row per image: every box by category, then a relation sentence per category pair."""
    rows, shard = ctx.rows("grounding"), ctx.shard
    cells, texts, xyxy = shard.cell, shard.text, shard.xyxy_list
    forms = ctx.banks["grounding"]["relation_forms"]
    forms_without_dir = [f for f in forms if "{dir}" not in f["form"]] or forms[:1]
    for i, image, lo, cats, by_cat in ctx.per_image:
        subset = "single" if len(image["boxes"]) == 1 else "multi"
        did, t = ctx.pick("grounding", image, subset)
        sentences, ordered = [], []
        for cat in cats:
            ordered.extend(by_cat[cat])
            sentences.append(_boxes_sentence(cat, [(cells[b], texts[b]) for b in by_cat[cat]]))
        relations = []
        for a, b in itertools.combinations(cats, 2):
            rel, direction = geometry.relation([xyxy[x] for x in by_cat[a]], [xyxy[x] for x in by_cat[b]],
                                               image["width"], image["height"])
            choices = forms if direction else forms_without_dir  # any form may be used with a direction
            form = choices[seeded_int(ctx.seed, did, a, b) % len(choices)]["form"]
            sentences.append(form.format(a=a, b=b, rel=rel, dir=direction))
            relations.append(join_relation(a, rel, b, direction))
        answer = ctx.banks["grounding"]["answer_lead"] + " ".join(sentences)
        rows.add(did, i, subset, t["question"], answer, t["id"], ordered, len(ordered), relations=relations)
    return rows.columns(shard)
