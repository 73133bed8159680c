"""The six tasks' dialogues of a shard of images (docs/rules.md sections 5-7), built as Arrow
columns: the one dialogue builder. Pure functions, no Beam.

Input: image records from sarchat.transforms.coco (valid boxes only). Output: an Arrow table with
DIALOGUE_SCHEMA sorted by id, plus the boxes the description filters dropped, as rejects with
their reason (`DialogueBuilder.table`); `DialogueBuilder.rows` is the same table as one dict per row.

Each task module's `build(ctx)` (sarchat.transforms.tasks) makes its own rows from a `_Context`:
the template banks, the seed and K, the shard's boxes with their attributes, and per image its
categories and their boxes.

Why columns: three quarters of the rows are identify rows (K per box) that differ only in their
template and box; building them as Python rows, then converting those to Arrow, was most of the
generation time. Here
  - per-box attributes (clamped box, grid cell, size, shape) are numpy arrays over the whole shard
    (sarchat.transforms.geometry's array forms, the same thresholds as its word functions);
  - identify's K template picks per box are one vectorised hash per (box, template) (its picks);
  - templates are rendered per template group with Arrow's element-wise string join;
  - list columns (gt_boxes, gt_categories, gt_cells, gt_sizes) are offsets into the shard's box
    arrays, never Python lists of lists;
  - the sort by id is an Arrow sort_indices + take.
The per-image tasks (classify, describe, count, grounding, refer; a quarter of the rows) are a
Python loop per image, appended to column lists.
"""
import functools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sarchat.templates import load_all
from sarchat.transforms import geometry
from sarchat.transforms.arrow_text import empty_lists, join, offsets, string_lists, strings
from sarchat.transforms.categories import CATEGORY_INDEX
from sarchat.transforms.runtime import gc_paused
from sarchat.transforms.schema import DIALOGUE_SCHEMA, MESSAGE_TYPE, USER_PREFIX, dialogue_id, seeded_int
from sarchat.transforms.tasks import MODULES

DEFAULT_IDENTIFY_VARIANTS = 7


class DialogueBuilder:
    """The template banks, the seed and K; `table(images)` builds a shard's dialogues."""

    def __init__(self, seed: int = 0, identify_variants: int = DEFAULT_IDENTIFY_VARIANTS, banks=None):
        self.seed = seed
        self.banks = banks or load_all()
        n_identify = len(self.banks["identify"]["templates"])
        if not 1 <= identify_variants <= n_identify:
            raise ValueError(f"identify_variants must be in 1..{n_identify} (the identify bank size), got {identify_variants}")
        self.identify_variants = identify_variants

    def table(self, images):
        """(Arrow table with DIALOGUE_SCHEMA sorted by id, describe-filter rejects) for a list of
        images, in any order (they are taken by image id)."""
        with gc_paused():
            images = sorted(images, key=lambda im: im["image_id"])
            ctx = _Context(self, images, _Boxes(images))
            parts = [module.build(ctx) for module in MODULES]
            columns = {name: pa.concat_arrays([p[name] for p in parts]) for name in parts[0]}
            order = pc.sort_indices(columns["id"])  # stable, bytewise
            columns = {name: array.take(order) for name, array in columns.items()}
            columns["messages"] = messages_array(columns["question"], columns["answer"])
            table = pa.Table.from_arrays([columns[f.name] for f in DIALOGUE_SCHEMA], schema=DIALOGUE_SCHEMA)
        return table, ctx.rejects

    def rows(self, images):
        """The per-row view of `table`: (one dict per dialogue, sorted by id; the rejects)."""
        table, rejects = self.table(images)
        return table.to_pylist(), rejects


def messages_array(questions, answers):
    """[user: <image>\\n + question, assistant: answer] per row, from the two string arrays."""
    n = len(questions)
    both = pa.concat_arrays([join(USER_PREFIX, questions).cast(pa.string()), answers.cast(pa.string())])
    contents = both.take(pa.array(np.arange(2 * n).reshape(2, n).T.reshape(-1)))  # user i, assistant i, ...
    roles = pa.array(["user", "assistant"] * n, type=pa.string())
    structs = pa.StructArray.from_arrays([roles, contents], fields=list(MESSAGE_TYPE))
    return pa.ListArray.from_arrays(pa.array(np.arange(0, 2 * n + 1, 2, dtype=np.int32)), structs)


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
        self.category_array = strings(self.category)
        self.cell_array = strings(self.cell)
        self.text_array = strings(self.text)
        self.describe_size_array = strings([geometry.DESCRIBE_SIZES[i] for i in self.describe_size])
        self.identify_size_array = strings([geometry.IDENTIFY_SIZES[i] for i in geometry.identify_size_index(ratio).tolist()])
        with np.errstate(divide="ignore", invalid="ignore"):
            shape = geometry.shape_index(w / h)
        self.shape_array = strings([geometry.SHAPES[i] for i in shape.tolist()])
        self.images = {
            "split": strings([im["split"] for im in images]),
            "image_path": strings([im["image_path"] for im in images]),
            "image_id": pa.array([im["image_id"] for im in images], type=pa.int64()),
            "width": pa.array([im["width"] for im in images], type=pa.int32()),
            "height": pa.array([im["height"] for im in images], type=pa.int32()),
        }

    def image_columns(self, img):
        """The per-image columns (split .. height) of rows whose image indices are the array `img`."""
        return {name: array.take(img) for name, array in self.images.items()}

    def box_lists(self, flat, starts):
        """The gt_boxes, gt_categories and gt_cells columns of rows holding the box indices of the
        numpy array `flat`, row i's from starts[i]."""
        idx = pa.array(flat)
        return {
            "gt_boxes": pa.ListArray.from_arrays(starts, self.boxes_of(flat)),
            "gt_categories": pa.ListArray.from_arrays(starts, self.category_array.take(idx)),
            "gt_cells": pa.ListArray.from_arrays(starts, self.cell_array.take(idx)),
        }

    def boxes_of(self, flat):
        """A list<int32> array: the [x1, y1, x2, y2] of each box index of `flat`."""
        coords = pa.array(self.xyxy[flat].reshape(-1).astype(np.int32), type=pa.int32())
        return pa.ListArray.from_arrays(pa.array(np.arange(0, 4 * len(flat) + 1, 4, dtype=np.int32)), coords)


class _Rows:
    """The rows of one per-image task, in the order they are made, turned into columns. The gt_sizes
    column holds the boxes' describe sizes when box_sizes is set; gt_relations and gt_categories come
    from add's own lists when a task gives them (else: none, and the boxes' categories)."""

    def __init__(self, task, box_sizes=False):
        self.task, self.box_sizes, self.rows = task, box_sizes, []

    def add(self, did, image, subset, question, answer, template_id, boxes, count, categories=None, relations=None):
        self.rows.append((did, image, subset, question, answer, template_id, boxes, count, categories, relations))

    def columns(self, shard):
        n = len(self.rows)
        columns = list(zip(*self.rows)) or [()] * 10
        ids, image, subset, question, answer, template_id, boxes, count, categories, relations = columns
        lengths = [len(b) for b in boxes]
        flat = np.fromiter((i for b in boxes for i in b), dtype=np.int64, count=sum(lengths))
        starts = offsets(lengths)
        cols = {
            "id": strings(ids),
            **shard.image_columns(pa.array(np.asarray(image, dtype=np.int64))),
            "task": strings([self.task] * n),
            "subset": strings(subset),
            "question": strings(question),
            "answer": strings(answer),
            "template_id": strings(template_id),
            **shard.box_lists(flat, starts),
            "gt_sizes": (pa.ListArray.from_arrays(starts, shard.describe_size_array.take(pa.array(flat)))
                         if self.box_sizes else empty_lists(n)),
            "gt_shapes": empty_lists(n),
            "gt_relations": string_lists(relations) if n and relations[0] is not None else empty_lists(n),
            "gt_count": pa.array(count, type=pa.int32()),
        }
        if n and categories[0] is not None:
            cols["gt_categories"] = string_lists(categories)
        return cols


class _Context:
    """What a task module's build(ctx) gets: the builder's banks, seed and K (identify_variants), the
    shard's images and boxes (`shard`, a _Boxes) and per image its categories and their boxes
    (`per_image`), the describe rejects, and these helpers."""

    def __init__(self, builder, images, shard):
        self.banks, self.seed, self.identify_variants = builder.banks, builder.seed, builder.identify_variants
        self.images, self.shard = images, shard
        self.rejects = []
        # text.format(**fields), rendered once per distinct template text and fields
        self.format = functools.lru_cache(maxsize=None)(str.format)
        # per_image: (image index, image, its first box, categories present in canonical order,
        # {category: box indices}) per image, in image order
        first, self.per_image = shard.first.tolist(), []
        for i, image in enumerate(images):
            by_cat = {}
            for b in range(first[i], first[i + 1]):
                by_cat.setdefault(shard.category[b], []).append(b)
            self.per_image.append((i, image, first[i], sorted(by_cat, key=CATEGORY_INDEX.__getitem__), by_cat))

    def rows(self, task, box_sizes=False):
        return _Rows(task, box_sizes)

    def pick(self, task, image, subset=None, unit=""):
        """(dialogue id, template) of the image's dialogue of this task, subset and unit: the
        template from the task's bank by the seeded hash of the id."""
        did = dialogue_id(image["split"], image["image_id"], task, subset, unit, 0)
        templates = self.banks[task]["templates"]
        return did, templates[seeded_int(self.seed, did) % len(templates)]
