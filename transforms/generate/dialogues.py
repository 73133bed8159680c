"""The six tasks' dialogues of a shard of images (docs/rules.md sections 5-7), built as Arrow
columns: the one dialogue builder. Pure functions, no Beam.

Input: image records from sarchat.transforms.coco (valid boxes only). Output: an Arrow table with
DIALOGUE_SCHEMA sorted by id, plus the boxes the description filters dropped, as rejects with
their reason (`DialogueBuilder.table`); `DialogueBuilder.rows` is the same table as one dict per row.

Why columns: three quarters of the rows are identify rows (K per box) that differ only in their
template and box; building them as Python rows, then converting those to Arrow, was most of the
generation time. Here
  - per-box attributes (clamped box, grid cell, size, shape) are numpy arrays over the whole shard
    (sarchat.transforms.geometry's array forms, the same thresholds as its word functions);
  - identify's K template picks per box are one vectorised hash per (box, template) (identify_picks);
  - templates are rendered per template group with Arrow's element-wise string join;
  - list columns (gt_boxes, gt_categories, gt_cells, gt_sizes) are offsets into the shard's box
    arrays, never Python lists of lists;
  - the sort by id is an Arrow sort_indices + take.
The per-image tasks (classify, describe, count, grounding, refer; a quarter of the rows) are a
Python loop per image, appended to column lists.
"""
import string

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sarchat.templates import load_all
from sarchat.transforms import geometry
from sarchat.transforms.categories import CATEGORIES, CATEGORY_INDEX, article, join_words, plural
from sarchat.transforms.runtime import gc_paused
from sarchat.transforms.schema import (DIALOGUE_SCHEMA, MESSAGE_TYPE, USER_PREFIX, dialogue_id, join_relation,
                                       seeded_int)

DEFAULT_IDENTIFY_VARIANTS = 7
# Classify questions name the candidates alphabetically, as the paper's appendix and the real
# SARChat questions do: "aircraft, bridge, car, harbor, ship, tank".
CANDIDATES = ", ".join(sorted(CATEGORIES))
PER_IMAGE_TASKS = ("classify", "describe", "count", "grounding", "refer")
_SCHEMA_TYPES = {f.name: f.type for f in DIALOGUE_SCHEMA}


class DialogueBuilder:
    """The template banks, the seed and K; `table(images)` builds a shard's dialogues."""

    def __init__(self, seed: int = 0, identify_variants: int = DEFAULT_IDENTIFY_VARIANTS, banks=None):
        self.seed = seed
        self.banks = banks or load_all()
        n_identify = len(self.banks["identify"]["templates"])
        if not 1 <= identify_variants <= n_identify:
            raise ValueError(f"identify_variants must be in 1..{n_identify} (the identify bank size), got {identify_variants}")
        self.identify_variants = identify_variants
        forms = self.banks["grounding"]["relation_forms"]
        self.forms_with_dir = list(forms)  # any form may be used when a direction exists
        self.forms_without_dir = [f for f in forms if "{dir}" not in f["form"]] or forms[:1]

    def table(self, images):
        """(Arrow table with DIALOGUE_SCHEMA sorted by id, describe-filter rejects) for a list of
        images, in any order (they are taken by image id)."""
        with gc_paused():
            images = sorted(images, key=lambda im: im["image_id"])
            shard = _Boxes(images)
            parts, rejects = _image_tasks(self, images, shard)
            parts.append(_identify(self, images, shard))
            columns = {name: pa.concat_arrays([p[name] for p in parts]) for name in parts[0]}
            order = pc.sort_indices(columns["id"])  # stable, bytewise
            columns = {name: array.take(order) for name, array in columns.items()}
            columns["messages"] = messages_array(columns["question"], columns["answer"])
            table = pa.Table.from_arrays([columns[f.name] for f in DIALOGUE_SCHEMA], schema=DIALOGUE_SCHEMA)
        return table, rejects

    def rows(self, images):
        """The per-row view of `table`: (one dict per dialogue, sorted by id; the rejects)."""
        table, rejects = self.table(images)
        return table.to_pylist(), rejects


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


def messages_array(questions, answers):
    """[user: <image>\\n + question, assistant: answer] per row, from the two string arrays."""
    n = len(questions)
    users = pc.binary_join_element_wise(USER_PREFIX, questions, "")
    both = pa.concat_arrays([users.cast(pa.string()), answers.cast(pa.string())])
    interleave = np.empty(2 * n, dtype=np.int64)
    interleave[0::2] = np.arange(n)
    interleave[1::2] = np.arange(n) + n
    contents = both.take(pa.array(interleave))
    roles = pa.array(["user", "assistant"] * n, type=pa.string())
    structs = pa.StructArray.from_arrays([roles, contents], fields=list(MESSAGE_TYPE))
    return pa.ListArray.from_arrays(pa.array(np.arange(0, 2 * n + 1, 2, dtype=np.int32)), structs)


def _strings(values):
    return pa.array(values, type=pa.string())


class _Boxes:
    """Every box of a shard (images in id order, boxes in annotation order) with its attributes."""

    def __init__(self, images):
        counts = [len(im["boxes"]) for im in images]
        self.first = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)
        self.n = n = int(self.first[-1])
        self.image_of = np.repeat(np.arange(len(images), dtype=np.int64), counts)
        bbox = np.array([b["bbox"] for im in images for b in im["boxes"]], dtype=np.float64).reshape(n, 4)
        W = np.array([im["width"] for im in images], dtype=np.float64)[self.image_of]
        H = np.array([im["height"] for im in images], dtype=np.float64)[self.image_of]
        x, y, w, h = bbox[:, 0], bbox[:, 1], bbox[:, 2], bbox[:, 3]
        self.xyxy = geometry.xyxy_array(x, y, w, h, W, H)
        self.xyxy_list = self.xyxy.tolist()
        self.cell = [geometry.CELLS[c] for c in geometry.cell_index_array(self.xyxy, W, H).tolist()]
        self.text = [geometry.box_text(b) for b in self.xyxy_list]
        self.category = [b["category"] for im in images for b in im["boxes"]]
        self.ann_id = [b["ann_id"] for im in images for b in im["boxes"]]
        ratio = (w * h) / (W * H)
        self.describe_size = geometry.describe_size_index(ratio).tolist()
        self.category_array = _strings(self.category)
        self.cell_array = _strings(self.cell)
        self.text_array = _strings(self.text)
        self.describe_size_array = _strings([geometry.DESCRIBE_SIZES[i] for i in self.describe_size])
        self.identify_size_array = _strings([geometry.IDENTIFY_SIZES[i] for i in geometry.identify_size_index(ratio).tolist()])
        with np.errstate(divide="ignore", invalid="ignore"):
            shape = geometry.shape_index(w / h)
        self.shape_array = _strings([geometry.SHAPES[i] for i in shape.tolist()])
        self.images = {
            "split": _strings([im["split"] for im in images]),
            "image_path": _strings([im["image_path"] for im in images]),
            "image_id": pa.array([im["image_id"] for im in images], type=pa.int64()),
            "width": pa.array([im["width"] for im in images], type=pa.int32()),
            "height": pa.array([im["height"] for im in images], type=pa.int32()),
        }

    def image_columns(self, img):
        """The per-image columns (split .. height) of rows whose image indices are the array `img`."""
        return {name: array.take(img) for name, array in self.images.items()}

    def box_lists(self, box_lists):
        """Per-row lists of box indices -> (gt_boxes, gt_categories, gt_cells columns, flat index array, offsets)."""
        lengths = [len(b) for b in box_lists]
        flat = np.fromiter((i for b in box_lists for i in b), dtype=np.int64, count=sum(lengths))
        offsets = _offsets(lengths)
        idx = pa.array(flat)
        return {
            "gt_boxes": pa.ListArray.from_arrays(offsets, self.boxes_of(flat)),
            "gt_categories": pa.ListArray.from_arrays(offsets, self.category_array.take(idx)),
            "gt_cells": pa.ListArray.from_arrays(offsets, self.cell_array.take(idx)),
        }, idx, offsets

    def boxes_of(self, flat):
        """A list<int32> array: the [x1, y1, x2, y2] of each box index of `flat`."""
        coords = pa.array(self.xyxy[flat].reshape(-1).astype(np.int32), type=pa.int32())
        return pa.ListArray.from_arrays(pa.array(np.arange(0, 4 * len(flat) + 1, 4, dtype=np.int32)), coords)


def _offsets(lengths):
    return pa.array(np.concatenate([[0], np.cumsum(np.asarray(lengths, dtype=np.int64))]).astype(np.int32))


def _string_lists(lists):
    return pa.ListArray.from_arrays(_offsets([len(v) for v in lists]), _strings([s for v in lists for s in v]))


def _empty_lists(n):
    return pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, dtype=np.int32)), pa.array([], pa.string()))


class _Rows:
    """Column lists of one per-image task, in the order the rows are made."""

    def __init__(self, task):
        self.task = task
        self.id, self.image, self.subset, self.question, self.answer, self.template_id = [], [], [], [], [], []
        self.boxes, self.count, self.categories, self.relations = [], [], [], []

    def add(self, did, image, subset, question, answer, template_id, boxes, count, categories=None, relations=None):
        self.id.append(did)
        self.image.append(image)
        self.subset.append(subset)
        self.question.append(question)
        self.answer.append(answer)
        self.template_id.append(template_id)
        self.boxes.append(boxes)
        self.count.append(count)
        self.categories.append(categories)
        self.relations.append(relations)

    def columns(self, shard):
        n = len(self.id)
        box_cols, idx, offsets = shard.box_lists(self.boxes)
        cols = {
            "id": _strings(self.id),
            **shard.image_columns(pa.array(np.asarray(self.image, dtype=np.int64))),
            "task": _strings([self.task] * n),
            "subset": _strings(self.subset),
            "question": _strings(self.question),
            "answer": _strings(self.answer),
            "template_id": _strings(self.template_id),
            **box_cols,
            "gt_sizes": (pa.ListArray.from_arrays(offsets, shard.describe_size_array.take(idx))
                         if self.task == "describe" else _empty_lists(n)),
            "gt_shapes": _empty_lists(n),
            "gt_relations": _string_lists(self.relations) if self.task == "grounding" else _empty_lists(n),
            "gt_count": pa.array(self.count, type=pa.int32()),
        }
        if self.task == "classify":
            cols["gt_categories"] = _string_lists(self.categories)
        return cols


def _image_tasks(builder, images, shard):
    """classify, describe, count, grounding and refer rows (a loop per image), as columns."""
    tasks = _ImageTasks(builder, shard)
    first = shard.first.tolist()
    for i, image in enumerate(images):
        by_cat = {}
        for b in range(first[i], first[i + 1]):
            by_cat.setdefault(shard.category[b], []).append(b)
        cats = sorted(by_cat, key=CATEGORY_INDEX.__getitem__)
        for task in PER_IMAGE_TASKS:
            getattr(tasks, task)(i, image, first[i], cats, by_cat)
    return [rows.columns(shard) for rows in tasks.rows.values()], tasks.rejects


class _ImageTasks:
    """One method per per-image task: (image index, image, its first box, categories present in
    canonical order, {category: box indices}) -> rows appended to that task's _Rows."""

    def __init__(self, builder, shard):
        self.builder, self.shard, self.seed = builder, shard, builder.seed
        self.rows = {t: _Rows(t) for t in PER_IMAGE_TASKS}
        self.templates = {t: builder.banks[t]["templates"] for t in PER_IMAGE_TASKS}
        self.cache, self.rejects = {}, []

    def pick(self, task, did):
        return self.templates[task][seeded_int(self.seed, did) % len(self.templates[task])]

    def format(self, text, **fields):
        """text.format(**fields), rendered once per distinct template text and fields."""
        key = (text, *fields.items())
        out = self.cache.get(key)
        if out is None:
            out = self.cache[key] = text.format(**fields)
        return out

    def classify(self, i, image, lo, cats, by_cat):
        did = dialogue_id(image["split"], image["image_id"], "classify", None, "", 0)
        t = self.pick("classify", did)
        q, a = self.format(t["question"], candidates=CANDIDATES), self.format(t["answer"], categories=join_words(cats))
        self.rows["classify"].add(did, i, None, q, a, t["id"], [], len(cats), categories=list(cats))

    def describe(self, i, image, lo, cats, by_cat):
        split, image_id, W, H = image["split"], image["image_id"], image["width"], image["height"]
        if not geometry.describe_image_ok(W, H):
            self.rejects.append({"split": split, "record": f"image {image_id}", "reason": "describe_image_too_small",
                                 "detail": f"{W}x{H}"})
            return
        kept = []
        for b, box in enumerate(image["boxes"], lo):
            reason = geometry.describe_box_reason(box["bbox"], W, H)
            if reason:
                self.rejects.append({"split": split, "record": f"annotation {box['ann_id']}", "reason": reason,
                                     "detail": f"image {image_id}"})
            else:
                kept.append(b)
        if not kept:
            return
        shard = self.shard
        kept.sort(key=lambda b: CATEGORY_INDEX[shard.category[b]])  # stable: annotation order within a category
        did = dialogue_id(split, image_id, "describe", None, "", 0)
        t = self.pick("describe", did)
        style = self.builder.banks["describe"]["styles"][t["style"]]
        more = style["more"] if isinstance(style["more"], list) else [style["more"]]
        phrases = [(style["first"] if j == 0 else more[(j - 1) % len(more)]).format(
            size=geometry.DESCRIBE_SIZES[shard.describe_size[b]], category=shard.category[b],
            position=geometry.POSITION_PHRASES[shard.cell[b]]) for j, b in enumerate(kept)]
        answer = style["lead"] + style["sep"].join(phrases) + style["end"]
        self.rows["describe"].add(did, i, None, t["question"], answer[0].upper() + answer[1:], t["id"], kept, len(kept))

    def count(self, i, image, lo, cats, by_cat):
        texts = self.shard.text
        for cat in cats:
            group = by_cat[cat]
            did = dialogue_id(image["split"], image["image_id"], "count", None, cat, 0)
            t = self.pick("count", did)
            n = len(group)
            q = self.format(t["question"], category=cat, category_plural=plural(cat))
            lead = "There is 1 instance. " if n == 1 else f"There are {n} instances. "
            self.rows["count"].add(did, i, None, q, lead + "".join([texts[b] for b in group]), t["id"], group, n)

    def grounding(self, i, image, lo, cats, by_cat):
        cells, texts, xyxy = self.shard.cell, self.shard.text, self.shard.xyxy_list
        subset = "single" if len(image["boxes"]) == 1 else "multi"
        did = dialogue_id(image["split"], image["image_id"], "grounding", subset, "", 0)
        t = self.pick("grounding", did)
        sentences, ordered = [], []
        for cat in cats:
            group = by_cat[cat]
            ordered.extend(group)
            if len(group) == 1:
                b = group[0]
                sentences.append(f"There is {article(cat)} {cat} in the {cells[b]} portion {texts[b]}.")
            else:
                parts = ", ".join([f"one in the {cells[b]} portion {texts[b]}" for b in group])
                sentences.append(f"There are {len(group)} {plural(cat)}: {parts}.")
        relations = []
        for j, a in enumerate(cats):
            for b in cats[j + 1:]:
                rel, direction = geometry.relation([xyxy[x] for x in by_cat[a]], [xyxy[x] for x in by_cat[b]],
                                                   image["width"], image["height"])
                forms = self.builder.forms_with_dir if direction else self.builder.forms_without_dir
                form = forms[seeded_int(self.seed, did, a, b) % len(forms)]["form"]
                sentences.append(form.format(a=a, b=b, rel=rel, dir=direction))
                relations.append(join_relation(a, rel, b, direction))
        answer = self.builder.banks["grounding"]["answer_lead"] + " ".join(sentences)
        self.rows["grounding"].add(did, i, subset, t["question"], answer, t["id"], ordered, len(ordered),
                                   relations=relations)

    def refer(self, i, image, lo, cats, by_cat):
        cells, texts = self.shard.cell, self.shard.text
        for cat in cats:
            group = by_cat[cat]
            n = len(group)
            subset = "single" if n == 1 else "multi"
            did = dialogue_id(image["split"], image["image_id"], "refer", subset, cat, 0)
            t = self.pick("refer", did)
            q = self.format(t["question"], category=cat, category_plural=plural(cat), n=n, category_n=plural(cat, n),
                            be="is" if n == 1 else "are")
            answer = "".join([f"{texts[b]} ({cells[b]})" for b in group])
            self.rows["refer"].add(did, i, subset, q, answer, t["id"], group, n)


def _identify(builder, images, shard):
    """The K identify rows of every box, columns only: picks, ids, then one render per template."""
    templates = builder.banks["identify"]["templates"]
    K, nb = builder.identify_variants, shard.n
    boxes_per_image = np.diff(shard.first)
    image_of = shard.image_of.tolist()
    splits = [images[i]["split"] for i in image_of]
    image_ids = [images[i]["image_id"] for i in image_of]
    subsets = [("single" if n == 1 else "multi") for n in boxes_per_image[shard.image_of].tolist()]
    seeds = [seeded_int(builder.seed, s, im, a) for s, im, a in zip(splits, image_ids, shard.ann_id)]
    flat_picks = identify_picks(seeds, len(templates), K).reshape(-1)  # row b * K + variant
    ids = _strings([dialogue_id(s, im, "identify", sub, a, v)
                    for s, im, sub, a in zip(splits, image_ids, subsets, shard.ann_id) for v in range(K)])
    row_box = np.repeat(np.arange(nb, dtype=np.int64), K)
    subset_array = _strings(subsets)
    groups = []
    for k, t in enumerate(templates):
        rows = np.nonzero(flat_picks == k)[0]
        if not len(rows):
            continue
        box = pa.array(row_box[rows])
        n = len(rows)
        category, cell = shard.category_array.take(box), shard.cell_array.take(box)
        size = shard.identify_size_array.take(box)
        answer = render(t["answer"], {"size": size, "category": category, "cell": cell}, n)
        ones = pa.array(np.arange(n + 1, dtype=np.int32))
        if t.get("shape"):
            shape = shard.shape_array.take(box)
            answer = pc.binary_join_element_wise(answer, render(t["shape"], {"shape": shape}, n), "")
            shapes = pa.ListArray.from_arrays(ones, shape)
        else:
            shapes = _empty_lists(n)
        groups.append({
            "id": ids.take(pa.array(rows)),
            **shard.image_columns(pa.array(shard.image_of[row_box[rows]])),
            "task": _strings(["identify"] * n),
            "subset": subset_array.take(box),
            "question": render(t["question"], {"box": shard.text_array.take(box)}, n).cast(pa.string()),
            "answer": answer.cast(pa.string()),
            "template_id": _strings([t["id"]] * n),
            "gt_boxes": pa.ListArray.from_arrays(ones, shard.boxes_of(row_box[rows])),
            "gt_categories": pa.ListArray.from_arrays(ones, category),
            "gt_cells": pa.ListArray.from_arrays(ones, cell),
            "gt_sizes": pa.ListArray.from_arrays(ones, size),
            "gt_shapes": shapes,
            "gt_relations": _empty_lists(n),
            "gt_count": pa.array(np.ones(n, dtype=np.int32)),
        })
    if not groups:
        return {name: pa.array([], type=_SCHEMA_TYPES[name]) for name in _SCHEMA_TYPES if name != "messages"}
    return {name: pa.concat_arrays([g[name] for g in groups]) for name in groups[0]}


def render(fmt, fields, n):
    """str.format of one template over n rows at once: fields maps a placeholder to a string array.
    Plain {name} placeholders become one element-wise join; anything fancier ({name!r}, {name:>5})
    falls back to Python's format per row, so the result is always what str.format gives."""
    parts, simple = [], True
    for literal, name, spec, conversion in string.Formatter().parse(fmt):
        if literal:
            parts.append(literal)
        if name is not None:
            if spec or conversion or name not in fields:
                simple = False
                break
            parts.append(fields[name])
    if simple and any(isinstance(p, pa.Array) for p in parts):
        return pc.binary_join_element_wise(*parts, "")
    py = {name: array.to_pylist() for name, array in fields.items()}
    return _strings([fmt.format(**{name: values[i] for name, values in py.items()}) for i in range(n)])
