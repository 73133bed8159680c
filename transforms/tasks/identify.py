"""Cross-modal identification: the attributes of the box a question names (docs/rules.md sections 6, 7 and 12)."""
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sarchat.transforms import geometry
from sarchat.transforms.answer_words import OK, UNPARSEABLE, identify_attributes
from sarchat.transforms.arrow_text import empty_lists, join, offsets, render, strings
from sarchat.transforms.box_formats import get_box_format
from sarchat.transforms.box_match import set_counts
from sarchat.transforms.categories import article
from sarchat.transforms.schema import dialogue_id, seeded_int
from sarchat.transforms.tasks.column_scoring import counts_against_truth, parse_items, row_items, subset_column
from sarchat.transforms.tasks.task_spec import TaskSpec, most_common, row_dicts, subset_of

SPEC = TaskSpec("identify", "[identify]", "Cross-modal identification", subsets=("single", "multi"),
                columns=(("identify.multi", "ID Multi"), ("identify.single", "ID Single")),
                question_has_box=True, min_templates=20, by_category=True, by_size=True,
                prior_columns=("gt_categories", "gt_sizes", "gt_cells", "gt_shapes"))
# The placeholders each kind of template text may use and must use (templates/__init__.py).
TEMPLATE_FIELDS: dict[str, tuple[set, set]] = {"question": ({"box"}, {"box"}),
                                               "answer": ({"size", "category", "cell"}, set()),
                                               "shape": ({"shape"}, set())}
# The attributes an answer names: (kind, truth column, parse field), in the order pred_labels lists them.
ATTRIBUTES = (("category", "gt_categories", "categories"), ("size", "gt_sizes", "sizes"), ("cell", "gt_cells", "cells"),
              ("shape", "gt_shapes", "shapes"))


def parse(text, box_format=None, width=None, height=None):
    """{'status', 'categories', 'sizes', 'shapes', 'cells'}: distinct values named, in order;
    unparseable when none of them (category word, size word, grid cell / position phrase, shape word)."""
    cats, sizes, shapes, cells = identify_attributes(text)
    status = OK if (cats or sizes or shapes or cells) else UNPARSEABLE
    return {"status": status, "categories": cats, "sizes": sizes, "shapes": shapes, "cells": cells}


def _truth(row):
    return {(kind, v) for kind, column, _ in ATTRIBUTES for v in row.get(column) or []}


def columns(row):
    """The columns a test row counts in: its subset's."""
    return [f"identify.{subset_of(row)}"]


def score(row, parsed):
    """({column: (TP, FP, FN)}, IoUs per truth box) of a parsed answer: attribute sets (category,
    size, cell, and shape when the truth states one)."""
    pred = {(kind, v) for kind, _, field in ATTRIBUTES
            if kind != "shape" or row.get("gt_shapes")  # shape is scored only when the truth states one
            for v in parsed[field]}
    return {f"identify.{subset_of(row)}": set_counts(pred, _truth(row))}, []


def miss(row):
    """{column: (0, 0, FN)} of an answer that scores nothing."""
    return {f"identify.{subset_of(row)}": (0, 0, len(_truth(row)))}


def _truth_items(truth):
    parts = [truth.kind_items(column, kind) for kind, column, _ in ATTRIBUTES]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def score_columns(truth, parses, uok, ok, out):
    """score and miss for all rows at once (column_scoring)."""
    v = truth.vocab
    # distinct codes per parse (the kinds differ, so base and shape codes never coincide)
    base = parse_items(parses, lambda p: list(dict.fromkeys(
        v.code((kind, x)) for kind, _, field in ATTRIBUTES[:3] for x in p[field])))
    shapes = parse_items(parses, lambda p: list(dict.fromkeys(v.code(("shape", x)) for x in p["shapes"])))
    r1, c1 = row_items(uok, *base)
    # shape is scored only when the truth states one
    has_shapes = truth.list_column("gt_shapes").lengths > 0
    r2, c2 = row_items(np.where(has_shapes, uok, -1), *shapes)
    a, b, c = counts_against_truth(truth, _truth_items, np.concatenate([r1, r2]), np.concatenate([c1, c2]))
    out.set(np.arange(truth.n), subset_column(truth, "identify"), a, b, c)


def pred_labels(parsed):
    """The samples' `pred_labels` column: attribute=value per attribute named."""
    return [f"{kind}={v}" for kind, _, field in ATTRIBUTES for v in parsed[field]]


def marks(row, res):
    """The report's marks of a scored answer (res: its sample record): [(text, 'ok' | 'bad' | 'miss' | 'na')]."""
    gt = _truth(row)
    said, out = set(), []
    for lab in res.get("pred_labels") or []:
        k, _, v = lab.partition("=")
        said.add((k, v))
        if k == "shape" and not row.get("gt_shapes"):
            out.append((f"{k}: {v} (not scored)", "na"))
        else:
            out.append((f"{k}: {v}", "ok" if (k, v) in gt else "bad"))
    return out + [(f"{k}: {v}", "miss") for k, v in sorted(gt - said)]


# ---- baselines: a blind prior's answer (inference/baselines.py) and a detector's (inference/cfar.py)


_CANONICAL = get_box_format("canonical")


def fit_prior(tally, rows):
    """The blind prior's counts of train rows: the first category (the first vote for the top
    category), the first size word, the two together, every cell and shape. A table with all of
    prior_columns is counted column-wise (_fit_columns: identify is 3/4 of the rows)."""
    if isinstance(rows, pa.Table) and set(SPEC.prior_columns) <= set(rows.column_names):
        return _fit_columns(tally, rows)
    votes, sizes, cells, shapes = (tally.counter("category votes", 0), tally.counter("identify", "size"),
                                   tally.counter("identify", "cell"), tally.counter("identify", "shape"))
    by_size = tally.counters("identify category by size")
    for row in row_dicts(rows, SPEC.prior_columns):
        cats = row.get("gt_categories") or []
        size = (row.get("gt_sizes") or [None])[0]
        if cats:
            votes[cats[0]] += 1
            if size:
                by_size[size][cats[0]] += 1
        if size:
            sizes[size] += 1
        cells.update(row.get("gt_cells") or [])
        shapes.update(row.get("gt_shapes") or [])


def _value_counts(array):
    """Counter of the values of an Arrow array (a null counts as None, as Counter.update would)."""
    counts = pc.value_counts(array)
    return Counter(dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist())))


def _non_empty(lists):
    return pc.fill_null(pc.greater(pc.list_value_length(lists), 0), False)


def _fit_columns(tally, part):
    """fit_prior's row rules column-wise: the first category of every row with one, the first size
    where it is neither null nor "" (`if size`), the pair of both, every cell and shape."""
    cats, sizes = part.column("gt_categories"), part.column("gt_sizes")
    has_cat, has_size = _non_empty(cats), _non_empty(sizes)
    tally.counter("category votes", 0).update(_value_counts(pc.list_element(cats.filter(has_cat), 0)))
    size = pc.list_element(sizes.filter(has_size), 0)
    tally.counter("identify", "size").update(_value_counts(size.filter(pc.fill_null(pc.not_equal(size, ""), False))))
    both = pc.and_(has_cat, has_size)
    pairs = pa.table({"size": pc.list_element(sizes.filter(both), 0), "cat": pc.list_element(cats.filter(both), 0)})
    pairs = pairs.filter(pc.fill_null(pc.not_equal(pairs.column("size"), ""), False))
    by_size = tally.counters("identify category by size")
    for item in pairs.group_by(["size", "cat"]).aggregate([([], "count_all")]).to_pylist():
        by_size[item["size"]][item["cat"]] += item["count_all"]
    tally.counter("identify", "cell").update(_value_counts(pc.list_flatten(part.column("gt_cells"))))
    tally.counter("identify", "shape").update(_value_counts(pc.list_flatten(part.column("gt_shapes"))))


def prior(tally, top_category):
    """The blind prior's entry: the top category and the most common size word, cell and shape, and
    per size word its most common category."""
    return {"identify": {
        "category": top_category, "size": most_common(tally.counter("identify", "size"), "small"),
        "cell": most_common(tally.counter("identify", "cell"), "middle center"),
        "shape": most_common(tally.counter("identify", "shape"), "roughly square"),
        "category_by_size": {s: most_common(v) for s, v in tally.counters("identify category by size").items()}}}


def _sentence(size, cat, cell, shape):
    return (f"This is {article(size)} {size} {cat} located in the {cell} portion of the image. "
            f"It appears to be {shape} in shape.")


def blind_answer(prior, row, fmt, W, H):
    """The blind prior's answer: the most common attributes; with use_question_box, the cell, size
    and shape of the box the question names and the category most common for that size."""
    ident = prior.priors["identify"]
    size, cell, shape, cat = ident["size"], ident["cell"], ident["shape"], ident["category"]
    if prior.use_question_box:
        boxes = _CANONICAL.parse(row.get("question") or "", W, H)
        if boxes:
            x1, y1, x2, y2 = boxes[0]
            w, h = max(x2 - x1, 1e-9), max(y2 - y1, 1e-9)
            cell = geometry.grid_cell([x1, y1, x2, y2], W, H)
            size = geometry.identify_size(w * h / (W * H))
            shape = geometry.shape_word(w / h)
            cat = ident["category_by_size"].get(size) or cat
    return _sentence(size, cat, cell, shape)


def detector_answer(row, W, H, detections, region_category):
    """A detector's answer: region_category of the box the question names, and the cell, size and
    shape of that box (no detection pass over the whole scene)."""
    boxes = _CANONICAL.parse(row["question"] or "", W, H)
    if not boxes:
        return "I cannot find the region in the question."
    box = [int(round(v)) for v in boxes[0]]
    cat = region_category(box)
    xywh = [box[0], box[1], max(1, box[2] - box[0]), max(1, box[3] - box[1])]  # integers: a side is at least 1
    size = geometry.identify_size(geometry.area_ratio(xywh, W, H))
    cell = geometry.grid_cell(box, W, H)
    shape = geometry.shape_word(geometry.aspect_ratio(xywh))
    return _sentence(size, cat, cell, shape)


# ---- building its dialogues from a shard's boxes (transforms/generate/dialogues.py gives ctx)


def identify_picks(box_seeds, n, k):
    """(boxes, k) int64: K distinct template indices of 0..n-1 per box, keyed by the box's seed alone.
    Template t of a box scores splitmix64(seed + (t + 1) * 0x9E3779B97F4A7C15) (64-bit wrapping);
    the box takes the K templates with the smallest scores, smallest first (docs/rules.md section 6)."""
    s = np.asarray(box_seeds, dtype=np.uint64).reshape(-1, 1)
    s = s + np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    s = (s ^ (s >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    s = (s ^ (s >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    s = s ^ (s >> np.uint64(31))
    return np.argsort(s, axis=1, kind="stable")[:, :k].astype(np.int64)


def build(ctx):
    """The K identify rows of every box (K = ctx.identify_variants), columns only: picks, ids, then
    one render per template. The rows come grouped by template (the builder sorts its table by id)."""
    images, shard = ctx.images, ctx.shard
    templates = ctx.banks["identify"]["templates"]
    K = ctx.identify_variants
    image_of = shard.image_of.tolist()
    splits = [images[i]["split"] for i in image_of]
    image_ids = [images[i]["image_id"] for i in image_of]
    subsets = [("single" if n == 1 else "multi") for n in np.diff(shard.first)[shard.image_of].tolist()]
    seeds = [seeded_int(ctx.seed, s, im, a) for s, im, a in zip(splits, image_ids, shard.ann_id)]
    picks = identify_picks(seeds, len(templates), K).reshape(-1)  # row b * K + variant
    ids = strings([dialogue_id(s, im, "identify", sub, a, v)
                   for s, im, sub, a in zip(splits, image_ids, subsets, shard.ann_id) for v in range(K)])
    order = np.argsort(picks, kind="stable")
    row_box = np.repeat(np.arange(shard.n, dtype=np.int64), K)[order]
    box, n = pa.array(row_box), len(order)
    category, cell, size, shape, text = (column.take(box) for column in (
        shard.category_array, shard.cell_array, shard.identify_size_array, shard.shape_array, shard.text_array))
    bounds = np.searchsorted(picks[order], np.arange(len(templates) + 1)).tolist()
    questions, answers = [pa.array([], pa.string())], [pa.array([], pa.string())]
    has_shape = np.array([bool(t.get("shape")) for t in templates])[picks[order]]
    for k, t in enumerate(templates):
        lo, m = bounds[k], bounds[k + 1] - bounds[k]
        if not m:
            continue
        answer = render(t["answer"], {"size": size.slice(lo, m), "category": category.slice(lo, m),
                                      "cell": cell.slice(lo, m)}, m)
        if t.get("shape"):
            answer = join(answer, render(t["shape"], {"shape": shape.slice(lo, m)}, m))
        questions.append(render(t["question"], {"box": text.slice(lo, m)}, m).cast(pa.string()))
        answers.append(answer.cast(pa.string()))
    ones = pa.array(np.arange(n + 1, dtype=np.int32))
    return {
        "id": ids.take(pa.array(order)),
        **shard.image_columns(pa.array(shard.image_of[row_box])),
        "task": strings(["identify"] * n),
        "subset": strings(subsets).take(box),
        "question": pa.concat_arrays(questions),
        "answer": pa.concat_arrays(answers),
        "template_id": strings([t["id"] for t in templates]).take(pa.array(picks[order])),
        **shard.box_lists(row_box, ones),
        "gt_sizes": pa.ListArray.from_arrays(ones, size),
        "gt_shapes": pa.ListArray.from_arrays(offsets(has_shape.astype(np.int64)), shape.filter(pa.array(has_shape))),
        "gt_relations": empty_lists(n),
        "gt_count": pa.array(np.ones(n, dtype=np.int32)),
    }
