"""Reference baselines for the scorer: the oracle and a blind prior. Pure, no Beam, no model.

oracle_prediction(row)
    The dialogue's reference answer. Scored as a prediction it must give 100 on every column.

BlindPrior
    Answers from training-split statistics only. For a test row it reads nothing but the question
    text, the task the question asks (its tag / template: any model sees it in the prompt) and the
    image width and height; never the image, the reference answer or the gt_* fields of the row.

    fit(train_rows) learns, from rows of the train split (DIALOGUE_SCHEMA dicts):
      classify   the most common set of categories
      describe   the most common number of kept boxes k and the k most common
                 (size, category, cell) phrases
      count      per category: the most common count
      refer      per category: the most common number of instances
      grounding  the most common image composition ((category, count) pairs) and, per category
                 pair, the most common relation (near / far from)
      identify   the most common category, size word, cell and shape
      boxes      per category: the median box width and height relative to the image and the
                 cells ranked by frequency; a prior box is that median size centred in a cell
    predict(row) fills the task's answer grammar (docs/rules.md section 7) with those priors. The category
    of count / refer comes from the question text ("How many ships ...").

    BlindPrior(use_question_box=True) also reads the box an identify question names (it is in the
    question text) and derives its cell, 5-level size and shape from the box geometry and the image
    size, with the category most common for that size word: still blind to the image, it shows how
    much of the identify score needs no vision at all.
"""
import statistics
from collections import Counter, defaultdict

import pyarrow as pa
import pyarrow.compute as pc

from sarchat.transforms import answer_words, geometry
from sarchat.transforms.box_formats import get_box_format
from sarchat.transforms.categories import CATEGORIES, CATEGORY_INDEX
from sarchat.transforms.schema import split_relation
from sarchat.transforms.tasks import BY_ID

_CANONICAL = get_box_format("canonical")


def oracle_prediction(row) -> str:
    """The reference answer of a dialogue row."""
    return row["answer"]


def _mode(counter, default=None):
    if not counter:
        return default
    # most common; ties broken by the value's own order so the result never depends on input order
    best = max(counter.values())
    return sorted((k for k, v in counter.items() if v == best), key=repr)[0]


def _ranked(counter):
    return [k for k, _ in sorted(counter.items(), key=lambda kv: (-kv[1], repr(kv[0])))]


# Row dicts of these columns are what the prior reads of a train row, per task (add_table).
FIT_TASK_COLUMNS = {
    "classify": ("gt_categories",),
    "describe": ("gt_sizes", "gt_categories", "gt_cells"),
    "count": ("gt_categories", "gt_count", "gt_boxes", "gt_cells", "width", "height"),
    "refer": ("gt_categories",),
    "grounding": ("gt_categories", "gt_relations", "gt_boxes", "gt_cells", "width", "height"),
    "identify": ("gt_categories", "gt_sizes", "gt_cells", "gt_shapes"),
}
# The train columns BlindPrior.fit reads at all (pass as `columns=` when reading the split).
FIT_COLUMNS = ("task",) + tuple(sorted({c for cols in FIT_TASK_COLUMNS.values() for c in cols}))


def _value_counts(array):
    """Counter of the values of an Arrow array (a null counts as None, as Counter.update would)."""
    out = Counter()
    for item in pc.value_counts(array).to_pylist():
        out[item["values"]] += item["counts"]
    return out


def _non_empty(lists):
    return pc.fill_null(pc.greater(pc.list_value_length(lists), 0), False)


class _FitCounts:
    """What BlindPrior.fit counts over the train rows. add_row is the reference (one row dict);
    add_table makes the same counts from Arrow columns: identify (3/4 of the rows) column-wise, the
    other tasks as row dicts of only the columns they use (converting all 19 columns of every row
    to Python was most of the fit's time)."""

    def __init__(self):
        self.classify_sets = Counter()
        self.describe_k = Counter()
        self.describe_phrases = Counter()
        self.count_n = defaultdict(Counter)
        self.refer_n = defaultdict(Counter)
        self.grounding_sets = Counter()
        self.relations = defaultdict(Counter)
        self.id_cat, self.id_size, self.id_cell, self.id_shape = Counter(), Counter(), Counter(), Counter()
        self.cat_by_size = defaultdict(Counter)
        self.rel_w, self.rel_h = defaultdict(list), defaultdict(list)
        self.cells = defaultdict(Counter)
        self.box_rows_seen = Counter()

    def add_row(self, row):
        task = row["task"]
        cats = list(row.get("gt_categories") or [])
        if task == "classify":
            self.classify_sets[tuple(cats)] += 1
        elif task == "describe":
            triples = list(zip(row.get("gt_sizes") or [], cats, row.get("gt_cells") or []))
            self.describe_k[len(triples)] += 1
            self.describe_phrases.update(triples)
        elif task == "count":
            if cats:
                self.count_n[cats[0]][int(row.get("gt_count") or len(cats))] += 1
        elif task == "refer":
            if cats:
                self.refer_n[cats[0]][len(cats)] += 1
        elif task == "grounding":
            self.grounding_sets[tuple(sorted(Counter(cats).items(), key=lambda kv: CATEGORY_INDEX[kv[0]]))] += 1
            for r in row.get("gt_relations") or []:
                a, rel, b, _ = split_relation(r)
                self.relations[f"{a}|{b}"][rel] += 1
        elif task == "identify":
            size = (row.get("gt_sizes") or [None])[0]
            if cats:
                self.id_cat[cats[0]] += 1
                if size:
                    self.cat_by_size[size][cats[0]] += 1
            if size:
                self.id_size[size] += 1
            self.id_cell.update(row.get("gt_cells") or [])
            self.id_shape.update(row.get("gt_shapes") or [])
        if task in ("grounding", "count") and row.get("gt_boxes"):
            self.box_rows_seen[task] += 1
            W, H = float(row["width"]), float(row["height"])
            for box, cat, cell in zip(row["gt_boxes"], cats, row.get("gt_cells") or []):
                # boxes are counted from grounding rows (every box of an image once) and, when a
                # training set has no grounding rows, from count rows; see `source` in priors()
                self.rel_w[(task, cat)].append((box[2] - box[0]) / W)
                self.rel_h[(task, cat)].append((box[3] - box[1]) / H)
                self.cells[(task, cat)][cell] += 1

    def add_table(self, table):
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        names = set(table.column_names)
        tasks = table.column("task")
        for task in pc.unique(tasks).drop_null().to_pylist():
            part = table.filter(pc.fill_null(pc.equal(tasks, task), False))
            if task == "identify" and {"gt_categories", "gt_sizes", "gt_cells", "gt_shapes"} <= names:
                self._add_identify(part)
                continue
            cols = [c for c in FIT_TASK_COLUMNS.get(task, ()) if c in names]
            for row in part.select(cols).to_pylist():
                row["task"] = task
                self.add_row(row)

    def _add_identify(self, part):
        """add_row's identify branch column-wise: the first category of every row with one, the
        first size where it is neither null nor "" (`if size`), the pair of both, every cell and shape."""
        cats, sizes = part.column("gt_categories"), part.column("gt_sizes")
        has_cat, has_size = _non_empty(cats), _non_empty(sizes)
        self.id_cat.update(_value_counts(pc.list_element(cats.filter(has_cat), 0)))
        size = pc.list_element(sizes.filter(has_size), 0)
        self.id_size.update(_value_counts(size.filter(pc.fill_null(pc.not_equal(size, ""), False))))
        both = pc.and_(has_cat, has_size)
        pairs = pa.table({"size": pc.list_element(sizes.filter(both), 0), "cat": pc.list_element(cats.filter(both), 0)})
        pairs = pairs.filter(pc.fill_null(pc.not_equal(pairs.column("size"), ""), False))
        for item in pairs.group_by(["size", "cat"]).aggregate([([], "count_all")]).to_pylist():
            self.cat_by_size[item["size"]][item["cat"]] += item["count_all"]
        self.id_cell.update(_value_counts(pc.list_flatten(part.column("gt_cells"))))
        self.id_shape.update(_value_counts(pc.list_flatten(part.column("gt_shapes"))))

    def priors(self):
        box_rows_seen, rel_w, rel_h, cells = self.box_rows_seen, self.rel_w, self.rel_h, self.cells
        id_cat, classify_sets, describe_k = self.id_cat, self.classify_sets, self.describe_k
        count_n = self.count_n
        describe_phrases, refer_n, grounding_sets = self.describe_phrases, self.refer_n, self.grounding_sets
        relations, id_size, id_cell, id_shape = self.relations, self.id_size, self.id_cell, self.id_shape
        cat_by_size = self.cat_by_size
        source = "grounding" if box_rows_seen["grounding"] else "count"
        box_prior = {}
        all_w = [v for (t, _), vs in rel_w.items() if t == source for v in vs]
        all_h = [v for (t, _), vs in rel_h.items() if t == source for v in vs]
        all_cells = Counter()
        for (t, _), c in cells.items():
            if t == source:
                all_cells.update(c)
        default_box = {"w": statistics.median(all_w) if all_w else 0.1,
                       "h": statistics.median(all_h) if all_h else 0.1,
                       "cells": _ranked(all_cells) or ["middle center"]}
        for cat in CATEGORIES:
            ws, hs = rel_w.get((source, cat)), rel_h.get((source, cat))
            if ws:
                box_prior[cat] = {"w": statistics.median(ws), "h": statistics.median(hs),
                                  "cells": _ranked(cells[(source, cat)])}
            else:
                box_prior[cat] = dict(default_box)
        top_cat = _mode(id_cat) or _mode(Counter(c for s in classify_sets for c in s)) or "ship"
        k = _mode(describe_k, 1)
        return {
            "classify": list(_mode(classify_sets, (top_cat,))),
            "describe": [list(t) for t in _ranked(describe_phrases)[:max(1, k)]] or [["small", top_cat, "middle center"]],
            "count": {c: _mode(v, 1) for c, v in count_n.items()},
            "refer": {c: _mode(v, 1) for c, v in refer_n.items()},
            "grounding": [list(p) for p in _mode(grounding_sets, ((top_cat, 1),))],
            "relations": {k2: _mode(v) for k2, v in relations.items()},
            "identify": {"category": top_cat, "size": _mode(id_size, "small"),
                         "cell": _mode(id_cell, "middle center"), "shape": _mode(id_shape, "roughly square"),
                         "category_by_size": {s: _mode(v) for s, v in cat_by_size.items()}},
            "boxes": box_prior,
            "default_count": _mode(Counter(n for v in count_n.values() for n in v.elements()), 1),
            "top_category": top_cat,
        }



class BlindPrior:
    """Training-split priors; see the module docstring for what it reads and learns."""

    def __init__(self, use_question_box=False):
        self.use_question_box = use_question_box
        self.priors = None

    # -- fitting ---------------------------------------------------------------------------------

    def fit(self, train_rows):
        """Fit on train rows: DIALOGUE_SCHEMA dicts (the reference path), or pyarrow Tables /
        RecordBatches holding at least FIT_COLUMNS (fit_tables: the same prior, much faster)."""
        counts = _FitCounts()
        for item in train_rows:
            if isinstance(item, (pa.Table, pa.RecordBatch)):
                counts.add_table(item)
            else:
                counts.add_row(item)
        self.priors = counts.priors()
        return self

    def fit_tables(self, tables):
        """fit() on pyarrow Tables / RecordBatches of train rows (read only FIT_COLUMNS)."""
        return self.fit(tables)

    def to_dict(self):
        return {"use_question_box": self.use_question_box, "priors": self.priors}

    @classmethod
    def from_dict(cls, d):
        obj = cls(use_question_box=d.get("use_question_box", False))
        obj.priors = d["priors"]
        return obj

    # -- predicting ------------------------------------------------------------------------------

    def question_category(self, question):
        """The category a question names (the most common one when it names none)."""
        cats = answer_words.find_categories(question or "")
        return cats[0] if cats else self.priors["top_category"]

    def prior_boxes(self, cat, n, W, H):
        """n prior boxes for a category: median size centred in its n most frequent cells."""
        p = self.priors["boxes"].get(cat) or {"w": 0.1, "h": 0.1, "cells": ["middle center"]}
        ranked = list(p["cells"]) or ["middle center"]
        out = []
        for i in range(n):
            cell = ranked[i % len(ranked)]
            row, col = cell.split()
            cx = (geometry.COLUMNS.index(col) + 0.5) * W / 3.0
            cy = (geometry.ROWS.index(row) + 0.5) * H / 3.0
            w, h = p["w"] * W, p["h"] * H
            box = [max(0, int(round(cx - w / 2))), max(0, int(round(cy - h / 2))),
                   min(W - 1, int(round(cx + w / 2))), min(H - 1, int(round(cy + h / 2)))]
            out.append((box, geometry.grid_cell(box, W, H)))
        return out

    def predict(self, row, box_format=None) -> str:
        """A blind answer for a test row (reads task, question, width, height only)."""
        if self.priors is None:
            raise RuntimeError("BlindPrior.predict before fit")
        if row["task"] not in BY_ID:
            raise ValueError(f"unknown task {row['task']!r}")
        return BY_ID[row["task"]].blind_answer(self, row, box_format or _CANONICAL, int(row["width"]),
                                               int(row["height"]))
