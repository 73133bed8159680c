"""Reference baselines for the scorer: the oracle and a blind prior. Pure, no Beam, no model.

oracle_prediction(row)
    The dialogue's reference answer. Scored as a prediction it must give 100 on every column.

BlindPrior
    Answers from training-split statistics only. For a test row it reads nothing but the question
    text, the task the question asks (its tag / template: any model sees it in the prompt) and the
    image width and height; never the image, the reference answer or the gt_* fields of the row.

    fit(train_rows) learns, from rows of the train split (DIALOGUE_SCHEMA dicts), each task's
    part counted by its module's fit_prior and read by its prior (sarchat.transforms.tasks):
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
from sarchat.transforms.categories import CATEGORIES
from sarchat.transforms.tasks import BY_ID, MODULES, TASK_SPECS
from sarchat.transforms.tasks.task_spec import most_common, ranked, row_dicts

_CANONICAL = get_box_format("canonical")


def oracle_prediction(row) -> str:
    """The reference answer of a dialogue row."""
    return row["answer"]


# The tasks whose train rows give the prior boxes' sizes and cells, in order of preference: a
# grounding row holds every box of an image once; count rows serve when a split has none.
BOX_SOURCES = ("grounding", "count")
_BOX_COLUMNS = ("gt_categories", "gt_boxes", "gt_cells", "width", "height")
# The train columns BlindPrior.fit reads at all (pass as `columns=` when reading the split).
FIT_COLUMNS = ("task",) + tuple(sorted({c for s in TASK_SPECS for c in s.prior_columns} | set(_BOX_COLUMNS)))


class PriorTally:
    """What BlindPrior.fit counts over the train rows: named Counters (and Counters per key) that
    each task module's fit_prior fills and its prior reads, and the boxes of BOX_SOURCES rows.
    add_row is the reference (one row dict); add_table makes the same counts from Arrow tables,
    each task's rows handed to its fit_prior as a table (converting all 19 columns of every row to
    Python was most of the fit's time)."""

    def __init__(self):
        self._counters, self._by_key = {}, {}
        self._boxes = {}  # {task: {category: ([relative widths], [relative heights], Counter of cells)}}

    def counter(self, *name):
        return self._counters.setdefault(name, Counter())

    def counters(self, *name):
        """A Counter per key (a category, a size word...)."""
        return self._by_key.setdefault(name, defaultdict(Counter))

    def add_row(self, row):
        task = row["task"]
        if task in BY_ID:
            BY_ID[task].fit_prior(self, [row])
        if task in BOX_SOURCES:
            self.add_boxes(task, [row])

    def add_table(self, table):
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        tasks = table.column("task")
        for task in pc.unique(tasks).drop_null().to_pylist():
            if task not in BY_ID:
                continue
            part = table.filter(pc.fill_null(pc.equal(tasks, task), False))
            if task in BOX_SOURCES:  # one conversion to dicts for the task and the boxes
                part = row_dicts(part, tuple(dict.fromkeys(BY_ID[task].SPEC.prior_columns + _BOX_COLUMNS)))
                self.add_boxes(task, part)
            BY_ID[task].fit_prior(self, part)

    def add_boxes(self, task, rows):
        """Per category, each box's width and height relative to its image and its cell, from the
        rows with boxes (a task is a box source once one of its rows has boxes)."""
        for row in rows:
            if not row.get("gt_boxes"):
                continue
            by_cat = self._boxes.setdefault(task, defaultdict(lambda: ([], [], Counter())))
            W, H = float(row["width"]), float(row["height"])
            for box, cat, cell in zip(row["gt_boxes"], row.get("gt_categories") or [], row.get("gt_cells") or []):
                widths, heights, cells = by_cat[cat]
                widths.append((box[2] - box[0]) / W)
                heights.append((box[3] - box[1]) / H)
                cells[cell] += 1

    def box_prior(self):
        """Per category: the median box width and height relative to the image, and the cells ranked
        by frequency, from the first of BOX_SOURCES with boxes (the median of all its boxes for a
        category it lacks)."""
        by_cat = self._boxes.get(next((t for t in BOX_SOURCES if t in self._boxes), None), {})
        all_w, all_h = [v for w, _, _ in by_cat.values() for v in w], [v for _, h, _ in by_cat.values() for v in h]
        default_box = {"w": statistics.median(all_w) if all_w else 0.1, "h": statistics.median(all_h) if all_h else 0.1,
                       "cells": ranked(sum((c for _, _, c in by_cat.values()), Counter())) or ["middle center"]}
        return {cat: {"w": statistics.median(by_cat[cat][0]), "h": statistics.median(by_cat[cat][1]),
                      "cells": ranked(by_cat[cat][2])} if cat in by_cat else dict(default_box) for cat in CATEGORIES}

    def priors(self):
        """Every task module's prior entries, the boxes, and the top category: the most common of
        the first votes (identify's), else of the second (classify's), else "ship"."""
        top = (most_common(self.counter("category votes", 0)) or most_common(self.counter("category votes", 1))
               or "ship")
        out = {"boxes": self.box_prior(), "top_category": top}
        for module in MODULES:
            out.update(module.prior(self, top))
        return out


class BlindPrior:
    """Training-split priors; see the module docstring for what it reads and learns."""

    def __init__(self, use_question_box=False):
        self.use_question_box = use_question_box
        self.priors = None

    # -- fitting ---------------------------------------------------------------------------------

    def fit(self, train_rows):
        """Fit on train rows: DIALOGUE_SCHEMA dicts (the reference path), or pyarrow Tables /
        RecordBatches holding at least FIT_COLUMNS (fit_tables: the same prior, much faster)."""
        counts = PriorTally()
        for item in train_rows:
            if isinstance(item, (pa.Table, pa.RecordBatch)):
                counts.add_table(item)
            else:
                counts.add_row(item)
        self.priors = counts.priors()
        return self

    fit_tables = fit  # on pyarrow Tables / RecordBatches of train rows (reading only FIT_COLUMNS)

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
            row, col = ranked[i % len(ranked)].split()
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
