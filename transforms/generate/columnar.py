"""A shard's dialogues built as Arrow columns: the same table as the reference row builder
(sarchat.transforms.generate.dialogues.build_shard + records.rows_to_table), several times faster.

Why columns: three quarters of the rows are identify rows (K per box) that differ only in their
template and box; building them as millions of Python tuples and nested lists, then converting
those to Arrow, was most of the generation time. Here
  - per-box attributes (clamped box, grid cell, size, shape) are numpy arrays over the whole shard;
  - identify's K template picks per box come from a vectorised Mersenne Twister (mt_sample) that
    reproduces `random.Random(seed).sample` exactly;
  - templates are rendered per template group with Arrow's element-wise string join;
  - list columns (gt_boxes, gt_categories, gt_cells, gt_sizes) are offsets into the shard's box
    arrays, never Python lists of lists;
  - the sort by id is an Arrow sort_indices + take.
The per-image tasks (classify, describe, count, grounding, refer; a quarter of the rows) keep the
reference's Python logic, appended to column lists. Pure functions, no Beam.

The reference builder stays the definition of the output: tests/test_generate_columnar.py pins
that both give equal tables (and byte-identical Parquet) on the synthetic default and edge cases.
"""
import hashlib
import string

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sarchat.transforms import geometry
from sarchat.transforms.categories import CATEGORY_INDEX, article, join_words, plural
from sarchat.transforms.generate.dialogues import CANDIDATES, gc_paused
from sarchat.transforms.schema import DIALOGUE_SCHEMA, MESSAGE_TYPE, join_relation, seeded_int

USER_PREFIX = "<image>\n"
_CELLS = geometry.CELLS  # index = 3 * row + column
_IDENTIFY_SIZES = np.array(geometry.IDENTIFY_SIZES, dtype=object)
_SCHEMA_TYPES = {f.name: f.type for f in DIALOGUE_SCHEMA}


def build_shard_table(builder, images):
    """(Arrow table with DIALOGUE_SCHEMA sorted by id, describe-filter rejects) for a list of images;
    equal to records.rows_to_table(build_shard(builder, images)[0]) and the same rejects."""
    with gc_paused():
        return _build(builder, images)


def _build(builder, images):
    images = sorted(images, key=lambda im: im["image_id"])
    shard = _Boxes(images)
    parts, rejects = _image_tasks(builder, images, shard)
    parts.append(_identify(builder, images, shard))
    columns = {name: pa.concat_arrays([p[name] for p in parts]) for name in parts[0]}
    order = pc.sort_indices(columns["id"])  # stable, bytewise: the reference's sort of ASCII ids
    columns = {name: array.take(order) for name, array in columns.items()}
    columns["messages"] = messages_array(columns["question"], columns["answer"])
    return pa.Table.from_arrays([columns[f.name] for f in DIALOGUE_SCHEMA], schema=DIALOGUE_SCHEMA), rejects


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


class _Boxes:
    """Every box of a shard (images in id order, boxes in annotation order) with its attributes."""

    def __init__(self, images):
        counts = [len(im["boxes"]) for im in images]
        self.first = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)
        n = int(self.first[-1])
        self.image_of = np.repeat(np.arange(len(images), dtype=np.int64), counts)
        bbox = np.array([b["bbox"] for im in images for b in im["boxes"]], dtype=np.float64).reshape(n, 4)
        W = np.array([im["width"] for im in images], dtype=np.float64)[self.image_of]
        H = np.array([im["height"] for im in images], dtype=np.float64)[self.image_of]
        x, y, w, h = bbox[:, 0], bbox[:, 1], bbox[:, 2], bbox[:, 3]
        # geometry.xyxy: round half up, clamped to the image (same float64 arithmetic as Python).
        with np.errstate(invalid="ignore", over="ignore"):
            corners = np.stack([x, y, x + w, y + h], axis=1)
            hi = np.stack([W - 1, H - 1, W - 1, H - 1], axis=1)
            xyxy = np.clip(np.floor(corners + 0.5), 0, hi).astype(np.int64)
            cx = (xyxy[:, 0] + xyxy[:, 2]) / 2.0
            cy = (xyxy[:, 1] + xyxy[:, 3]) / 2.0
            col = np.minimum(np.floor(3 * cx / W), 2).astype(np.int64)
            row = np.minimum(np.floor(3 * cy / H), 2).astype(np.int64)
            self.ratio = (w * h) / (W * H)
            aspect = w / h
        self.xyxy = xyxy
        self.xyxy_list = xyxy.tolist()
        self.cell_index = 3 * row + col
        self.cell = [_CELLS[c] for c in self.cell_index.tolist()]
        self.text = ["{<%d><%d><%d><%d>}" % tuple(b) for b in self.xyxy_list]
        self.category = [b["category"] for im in images for b in im["boxes"]]
        self.ann_id = [b["ann_id"] for im in images for b in im["boxes"]]
        r = self.ratio
        self.identify_size = np.select([r >= 0.40, r >= 0.25, r >= 0.10, r >= 0.03],
                                       [0, 1, 2, 3], 4).astype(np.int64)
        self.describe_size = np.where(r < 0.05, 0, np.where(r > 0.30, 2, 1)).astype(np.int64)
        self.shape = np.where(aspect > 1.5, 0, np.where(aspect < 0.67, 1, 2)).astype(np.int64)
        self.n = n
        self.xyxy_flat = pa.array(xyxy.reshape(-1).astype(np.int32))
        self.category_array = pa.array(self.category, type=pa.string())
        self.cell_array = pa.array(self.cell, type=pa.string())
        self.text_array = pa.array(self.text, type=pa.string())
        self.describe_size_array = pa.array(np.array(geometry.DESCRIBE_SIZES, dtype=object)[self.describe_size].tolist()
                                            if n else [], type=pa.string())
        self.identify_size_array = pa.array(_IDENTIFY_SIZES[self.identify_size].tolist() if n else [], type=pa.string())
        self.shape_array = pa.array(np.array(geometry.SHAPES, dtype=object)[self.shape].tolist() if n else [],
                                    type=pa.string())


def _offsets(lengths):
    return pa.array(np.concatenate([[0], np.cumsum(np.asarray(lengths, dtype=np.int64))]).astype(np.int32))


def _box_lists(shard, box_lists):
    """Per-row lists of box indices -> (gt_boxes, gt_categories, gt_cells, flat index array, offsets)."""
    lengths = [len(b) for b in box_lists]
    flat = np.fromiter((i for b in box_lists for i in b), dtype=np.int64, count=sum(lengths))
    offsets = _offsets(lengths)
    idx = pa.array(flat)
    coords = pa.array(shard.xyxy[flat].reshape(-1).astype(np.int32)) if len(flat) else pa.array([], pa.int32())
    inner = pa.ListArray.from_arrays(pa.array(np.arange(0, 4 * len(flat) + 1, 4, dtype=np.int32)), coords)
    return {
        "gt_boxes": pa.ListArray.from_arrays(offsets, inner),
        "gt_categories": pa.ListArray.from_arrays(offsets, shard.category_array.take(idx)),
        "gt_cells": pa.ListArray.from_arrays(offsets, shard.cell_array.take(idx)),
    }, idx, offsets


def _string_lists(lists):
    return pa.ListArray.from_arrays(_offsets([len(v) for v in lists]),
                                    pa.array([s for v in lists for s in v], type=pa.string()))


def _empty_lists(n):
    return pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, dtype=np.int32)), pa.array([], pa.string()))


class _Rows:
    """Column lists of one per-image task, in the reference's row order."""

    def __init__(self, task):
        self.task = task
        self.id, self.image, self.subset, self.question, self.answer, self.template_id = [], [], [], [], [], []
        self.boxes, self.categories, self.sizes, self.relations, self.count = [], [], [], [], []

    def add(self, did, image, subset, question, answer, template_id, boxes, count,
            categories=None, sizes=None, relations=None):
        self.id.append(did)
        self.image.append(image)
        self.subset.append(subset)
        self.question.append(question)
        self.answer.append(answer)
        self.template_id.append(template_id)
        self.boxes.append(boxes)
        self.count.append(count)
        if categories is not None:
            self.categories.append(categories)
        if sizes is not None:
            self.sizes.append(sizes)
        if relations is not None:
            self.relations.append(relations)

    def columns(self, images_cols, shard):
        n = len(self.id)
        img = pa.array(np.asarray(self.image, dtype=np.int64))
        box_cols, idx, offsets = _box_lists(shard, self.boxes)
        cols = {
            "id": pa.array(self.id, type=pa.string()),
            "split": images_cols["split"].take(img),
            "task": pa.array([self.task] * n, type=pa.string()),
            "subset": pa.array(self.subset, type=pa.string()),
            "image_path": images_cols["image_path"].take(img),
            "image_id": images_cols["image_id"].take(img),
            "width": images_cols["width"].take(img),
            "height": images_cols["height"].take(img),
            "question": pa.array(self.question, type=pa.string()),
            "answer": pa.array(self.answer, type=pa.string()),
            "template_id": pa.array(self.template_id, type=pa.string()),
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


def _image_columns(images):
    return {
        "split": pa.array([im["split"] for im in images], type=pa.string()),
        "image_path": pa.array([im["image_path"] for im in images], type=pa.string()),
        "image_id": pa.array([im["image_id"] for im in images], type=pa.int64()),
        "width": pa.array([im["width"] for im in images], type=pa.int32()),
        "height": pa.array([im["height"] for im in images], type=pa.int32()),
    }


def _dialogue_id(split, image_id, task, subset, unit, variant):
    key = f"{split}\x1f{image_id}\x1f{task}\x1f{subset or ''}\x1f{unit}\x1f{variant}"
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:20]


def _image_tasks(builder, images, shard):
    """classify, describe, count, grounding and refer rows (the reference's logic, as columns)."""
    seed, banks = builder.seed, builder.banks
    tasks = {t: _Rows(t) for t in ("classify", "describe", "count", "grounding", "refer")}
    templates = {t: banks[t]["templates"] for t in tasks}
    n_templates = {t: len(v) for t, v in templates.items()}
    styles = builder._describe_styles
    forms_with, forms_without = builder._forms_with_dir, builder._forms_without_dir
    answer_lead = banks["grounding"]["answer_lead"]
    cache = {}
    rejects = []
    cells, texts, cats_of, ratios = shard.cell, shard.text, shard.category, shard.ratio.tolist()
    xyxy = shard.xyxy_list
    first = shard.first.tolist()
    describe_sizes = shard.describe_size.tolist()

    def pick(task, did):
        return templates[task][seeded_int(seed, did) % n_templates[task]]

    for i, image in enumerate(images):
        split, image_id, W, H = image["split"], image["image_id"], image["width"], image["height"]
        lo, hi = first[i], first[i + 1]
        by_cat = {}
        for b in range(lo, hi):
            by_cat.setdefault(cats_of[b], []).append(b)
        cats = sorted(by_cat, key=CATEGORY_INDEX.__getitem__)

        # classify
        did = _dialogue_id(split, image_id, "classify", None, "", 0)
        t = pick("classify", did)
        key = ("classify", t["id"], tuple(cats))
        if key not in cache:
            cache[key] = (t["question"].format(candidates=CANDIDATES), t["answer"].format(categories=join_words(cats)))
        q, a = cache[key]
        tasks["classify"].add(did, i, None, q, a, t["id"], [], len(cats), categories=list(cats))

        # describe
        if not geometry.describe_image_ok(W, H):
            rejects.append({"split": split, "record": f"image {image_id}", "reason": "describe_image_too_small",
                            "detail": f"{W}x{H}"})
        else:
            kept = []
            for b, box in zip(range(lo, hi), image["boxes"]):
                reason = geometry.describe_box_reason(box["bbox"], W, H)
                if reason:
                    rejects.append({"split": split, "record": f"annotation {box['ann_id']}", "reason": reason,
                                    "detail": f"image {image_id}"})
                else:
                    kept.append(b)
            if kept:
                kept.sort(key=lambda b: CATEGORY_INDEX[cats_of[b]])
                did = _dialogue_id(split, image_id, "describe", None, "", 0)
                t = pick("describe", did)
                style = styles[t["style"]]
                more = style["more"] if isinstance(style["more"], list) else [style["more"]]
                phrases = []
                for j, b in enumerate(kept):
                    form = style["first"] if j == 0 else more[(j - 1) % len(more)]
                    phrases.append(form.format(size=geometry.DESCRIBE_SIZES[describe_sizes[b]], category=cats_of[b],
                                               position=geometry.POSITION_PHRASES[cells[b]]))
                answer = style["lead"] + style["sep"].join(phrases) + style["end"]
                answer = answer[0].upper() + answer[1:]
                tasks["describe"].add(did, i, None, t["question"], answer, t["id"], kept, len(kept))

        # count
        for cat in cats:
            group = by_cat[cat]
            did = _dialogue_id(split, image_id, "count", None, cat, 0)
            t = pick("count", did)
            n = len(group)
            key = ("count", t["id"], cat)
            if key not in cache:
                cache[key] = t["question"].format(category=cat, category_plural=plural(cat))
            lead = "There is 1 instance. " if n == 1 else f"There are {n} instances. "
            tasks["count"].add(did, i, None, cache[key], lead + "".join([texts[b] for b in group]), t["id"], group, n)

        # grounding
        n_boxes = hi - lo
        subset = "single" if n_boxes == 1 else "multi"
        did = _dialogue_id(split, image_id, "grounding", subset, "", 0)
        t = pick("grounding", did)
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
                rel, direction = geometry.relation([xyxy[x] for x in by_cat[a]], [xyxy[x] for x in by_cat[b]], W, H)
                forms = forms_with if direction else forms_without
                form = forms[seeded_int(seed, did, a, b) % len(forms)]["form"]
                sentences.append(form.format(a=a, b=b, rel=rel, dir=direction))
                relations.append(join_relation(a, rel, b, direction))
        tasks["grounding"].add(did, i, subset, t["question"], answer_lead + " ".join(sentences), t["id"],
                               ordered, len(ordered), relations=relations)

        # refer
        for cat in cats:
            group = by_cat[cat]
            subset = "single" if len(group) == 1 else "multi"
            did = _dialogue_id(split, image_id, "refer", subset, cat, 0)
            t = pick("refer", did)
            n = len(group)
            key = ("refer", t["id"], cat, n)
            if key not in cache:
                cache[key] = t["question"].format(category=cat, category_plural=plural(cat), n=n,
                                                  category_n=plural(cat, n), be="is" if n == 1 else "are")
            answer = "".join([f"{texts[b]} ({cells[b]})" for b in group])
            tasks["refer"].add(did, i, subset, cache[key], answer, t["id"], group, n)
    del ratios
    images_cols = _image_columns(images)
    return [rows.columns(images_cols, shard) for rows in tasks.values()], rejects


def _identify(builder, images, shard):
    """The K identify rows of every box, columns only: picks, ids, then one render per template."""
    templates = builder.banks["identify"]["templates"]
    K, nb = builder.identify_variants, shard.n
    seed = builder.seed
    first = shard.first
    boxes_per_image = np.diff(first)
    subset_of_box = np.where(boxes_per_image[shard.image_of] == 1, "single", "multi") if nb else np.array([], dtype=object)
    image_of = shard.image_of.tolist()
    splits = [images[i]["split"] for i in image_of]
    image_ids = [images[i]["image_id"] for i in image_of]
    subsets = subset_of_box.tolist()
    ann_ids = shard.ann_id
    seeds = [seeded_int(seed, s, im, a) for s, im, a in zip(splits, image_ids, ann_ids)]
    picks = mt_sample(seeds, len(templates), K)  # (nb, K): random.Random(seed).sample(range(n), K)
    sha1 = hashlib.sha1
    ids = [sha1(f"{s}\x1f{im}\x1fidentify\x1f{sub}\x1f{a}\x1f{v}".encode("utf-8")).hexdigest()[:20]
           for s, im, sub, a in zip(splits, image_ids, subsets, ann_ids) for v in range(K)]
    ids = pa.array(ids, type=pa.string())
    flat_picks = picks.reshape(-1)
    row_box = np.repeat(np.arange(nb, dtype=np.int64), K)
    images_cols = _image_columns(images)
    subset_array = pa.array(subsets, type=pa.string())
    groups = []
    for k, t in enumerate(templates):
        rows = np.nonzero(flat_picks == k)[0]
        if not len(rows):
            continue
        box = pa.array(row_box[rows])
        img = pa.array(shard.image_of[row_box[rows]])
        n = len(rows)
        category = shard.category_array.take(box)
        cell = shard.cell_array.take(box)
        size = shard.identify_size_array.take(box)
        question = render(t["question"], {"box": shard.text_array.take(box)}, n)
        answer = render(t["answer"], {"size": size, "category": category, "cell": cell}, n)
        ones = pa.array(np.arange(n + 1, dtype=np.int32))
        if t.get("shape"):
            shape = shard.shape_array.take(box)
            answer = pc.binary_join_element_wise(answer, render(t["shape"], {"shape": shape}, n), "")
            shapes = pa.ListArray.from_arrays(ones, shape)
        else:
            shapes = _empty_lists(n)
        coords = pa.array(shard.xyxy[row_box[rows]].reshape(-1).astype(np.int32))
        inner = pa.ListArray.from_arrays(pa.array(np.arange(0, 4 * n + 1, 4, dtype=np.int32)), coords)
        groups.append({
            "id": ids.take(pa.array(rows)),
            "split": images_cols["split"].take(img),
            "task": pa.array(["identify"] * n, type=pa.string()),
            "subset": subset_array.take(box),
            "image_path": images_cols["image_path"].take(img),
            "image_id": images_cols["image_id"].take(img),
            "width": images_cols["width"].take(img),
            "height": images_cols["height"].take(img),
            "question": question.cast(pa.string()),
            "answer": answer.cast(pa.string()),
            "template_id": pa.array([t["id"]] * n, type=pa.string()),
            "gt_boxes": pa.ListArray.from_arrays(ones, inner),
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
    return pa.array([fmt.format(**{name: values[i] for name, values in py.items()}) for i in range(n)],
                    type=pa.string())


# --- random.Random(seed).sample(range(n), k), vectorised over many seeds -------------------------
# CPython's Random seeds MT19937 with init_by_array(32-bit words of abs(seed)); sample(range(n), k)
# with n <= its set-size threshold draws j = randbelow(n - i) by rejection on getrandbits(bits) and
# swaps in a pool. Both are reproduced here across all seeds at once; any seed that would need more
# 32-bit outputs than the first 227 (which depend on the initial state alone) is done by `random`.

_N, _M = 624, 397
_BATCH = 8192  # seeds per vectorised batch (624 x 8 bytes of state each)
_DRAWS = 64  # outputs computed per seed; enough in practice (a seed needing more goes to `random`)


def _genrand_base():
    mt = [0] * _N
    mt[0] = 19650218
    for i in range(1, _N):
        mt[i] = (1812433253 * (mt[i - 1] ^ (mt[i - 1] >> 30)) + i) & 0xFFFFFFFF
    return np.array(mt, dtype=np.uint64)


_BASE = None


def _uses_pool(n, k):
    import math
    setsize = 21
    if k > 5:
        setsize += 4 ** math.ceil(math.log(k * 3, 4))
    return n <= setsize


def _init_by_array(seeds):
    """MT19937 states (624, nseeds) after random.seed(s) for 64-bit non-negative ints s.
    uint32 arithmetic wraps modulo 2**32, which is exactly the C code's."""
    global _BASE
    if _BASE is None:
        _BASE = _genrand_base().astype(np.uint32)
    s = np.array(seeds, dtype=np.uint64)
    key0 = (s & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    high = (s >> np.uint64(32)).astype(np.uint32)
    two = high != 0
    # init_key[j] + j for even and odd j (a one-word key repeats word 0 with j = 0)
    add = (key0, np.where(two, high + np.uint32(1), key0))
    mt = np.repeat(_BASE[:, None], len(s), axis=1)  # (624, nseeds): one row per state word
    tmp = np.empty(len(s), dtype=np.uint32)
    m1, m2, s30 = np.uint32(1664525), np.uint32(1566083941), np.uint32(30)
    i, j = 1, 0
    for _ in range(_N):  # max(N, key_length) iterations; key_length is 1 or 2
        prev = mt[i - 1]
        np.right_shift(prev, s30, out=tmp)
        np.bitwise_xor(tmp, prev, out=tmp)
        np.multiply(tmp, m1, out=tmp)
        row = mt[i]
        np.bitwise_xor(row, tmp, out=row)
        np.add(row, add[j & 1], out=row)
        i += 1
        j += 1
        if i >= _N:
            mt[0] = mt[_N - 1]
            i = 1
    for _ in range(_N - 1):
        prev = mt[i - 1]
        np.right_shift(prev, s30, out=tmp)
        np.bitwise_xor(tmp, prev, out=tmp)
        np.multiply(tmp, m2, out=tmp)
        row = mt[i]
        np.bitwise_xor(row, tmp, out=row)
        np.subtract(row, np.uint32(i), out=row)
        i += 1
        if i >= _N:
            mt[0] = mt[_N - 1]
            i = 1
    mt[0] = np.uint32(0x80000000)
    return mt


def _first_outputs(mt, count):
    """The first `count` (< 227) tempered 32-bit outputs of each state: (count, nseeds)."""
    upper, lower = np.uint32(0x80000000), np.uint32(0x7FFFFFFF)
    out = np.empty((count, mt.shape[1]), dtype=np.uint32)
    for kk in range(count):
        y = (mt[kk] & upper) | (mt[kk + 1] & lower)
        v = mt[kk + _M] ^ (y >> np.uint32(1)) ^ np.where(y & np.uint32(1), np.uint32(0x9908B0DF), np.uint32(0))
        v ^= v >> np.uint32(11)
        v ^= (v << np.uint32(7)) & np.uint32(0x9D2C5680)
        v ^= (v << np.uint32(15)) & np.uint32(0xEFC60000)
        v ^= v >> np.uint32(18)
        out[kk] = v
    return out


def mt_sample(seeds, n, k):
    """np.int64 array (len(seeds), k): row r is random.Random(seeds[r]).sample(range(n), k)."""
    import random
    m = len(seeds)
    if m == 0:
        return np.zeros((0, k), dtype=np.int64)
    if not (_uses_pool(n, k) and all(0 <= s < 1 << 64 for s in seeds) and n < 1 << 32):
        return np.array([random.Random(s).sample(range(n), k) for s in seeds], dtype=np.int64).reshape(m, k)
    if m > _BATCH:  # bounded memory: the states are 624 words per seed
        return np.concatenate([mt_sample(seeds[i:i + _BATCH], n, k) for i in range(0, m, _BATCH)])
    outputs = _first_outputs(_init_by_array(seeds), _DRAWS)  # (draws, m)
    pool = np.tile(np.arange(n, dtype=np.int64), (m, 1))
    result = np.empty((m, k), dtype=np.int64)
    pointer = np.zeros(m, dtype=np.int64)
    cols = np.arange(m)
    overflow = np.zeros(m, dtype=bool)
    for i in range(k):
        size = n - i
        bits = size.bit_length()
        j = np.full(m, -1, dtype=np.int64)
        todo = np.ones(m, dtype=bool)
        while todo.any():
            over = todo & (pointer >= _DRAWS)
            overflow |= over
            todo &= ~over
            rows = np.nonzero(todo)[0]
            draw = (outputs[pointer[rows], rows] >> np.uint32(32 - bits)).astype(np.int64)
            pointer[rows] += 1
            ok = draw < size
            j[rows[ok]] = draw[ok]
            todo[rows[ok]] = False
        safe = np.where(overflow, 0, j)
        result[:, i] = pool[cols, safe]
        pool[cols, safe] = pool[cols, size - 1]
    for r in np.nonzero(overflow)[0]:
        result[r] = random.Random(seeds[r]).sample(range(n), k)
    return result
