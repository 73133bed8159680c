"""Prompt sensitivity: each task's score per question template, and its spread. Pure code, no Beam.

Every test question is drawn from a template bank (the dialogue row's `template_id`), so a task's
score can be computed over the samples of each template alone: the same Eq. 3 column accuracies
and Eq. 5 task score as metrics.json, restricted to one wording. How far those per-template scores
lie apart says how much a model's score depends on the wording it was asked in.

The scorer keeps one small accumulator per model, {(task, template_id): {column: [TP, FP, FN, n]}}
(`add_arrays` per bucket's TaskArrays, `merge` across buckets), and metrics.json's `template_spread` is
`spread(acc)`:

    {task: {"templates": number of templates with a score,
            "min", "max", "range" (max - min), "mean", "stdev" (population) of the per-template scores,
            "by_template": {template_id: {"n": samples, "score": task score over them}}}}

A task without samples is null; a sample without a template id counts under "" (rows generated
before template ids existed).
"""
import math

import numpy as np

from sarchat.transforms.score.metrics import column_accuracy, task_score
from sarchat.transforms.tasks import TASK_COLUMNS, TASKS

NO_TEMPLATE = ""


def new():
    return {}


def add_arrays(acc, arrays, template_ids):
    """Count a TaskArrays' samples (`template_ids`: their rows' template ids, in the same order);
    a sample counts in the columns its mask marks."""
    task, cols = arrays.task, TASK_COLUMNS[arrays.task]
    ids = np.asarray([t or NO_TEMPLATE for t in template_ids], dtype=str)
    for tid in np.unique(ids):
        rows = ids == tid
        cell = acc.setdefault((task, str(tid)), {"n": 0, "columns": {}})
        cell["n"] += int(rows.sum())
        mask, tp, fp, fn = arrays.mask[rows], arrays.tp[rows], arrays.fp[rows], arrays.fn[rows]
        for j, col in enumerate(cols):
            m = mask[:, j]
            if m.any():
                c = cell["columns"].setdefault(col, [0, 0, 0, 0])
                c[0] += int(tp[m, j].sum())
                c[1] += int(fp[m, j].sum())
                c[2] += int(fn[m, j].sum())
                c[3] += int(m.sum())
    return acc


def merge(accs):
    out = {}
    for acc in accs:
        for key, cell in acc.items():
            o = out.setdefault(key, {"n": 0, "columns": {}})
            o["n"] += cell["n"]
            for col, vals in cell["columns"].items():
                c = o["columns"].setdefault(col, [0, 0, 0, 0])
                for i in range(4):
                    c[i] += vals[i]
    return out


def _r(v):
    return None if v is None else round(float(v), 4)


def template_score(task, cell):
    """Eq. 5 over the template's samples: the mean of its non-null Eq. 3 column accuracies."""
    values = []
    for col in TASK_COLUMNS[task]:
        tp, fp, fn, n = cell["columns"].get(col, (0, 0, 0, 0))
        values.append(column_accuracy(tp, fp, fn, n))
    return task_score(values)


def spread(acc):
    """metrics.json's `template_spread` (module docstring) from an accumulator."""
    out = {}
    for task in TASKS:
        cells = {tid: cell for (t, tid), cell in acc.items() if t == task}
        if not cells:
            out[task] = None
            continue
        by_template = {tid: {"n": cells[tid]["n"], "score": _r(template_score(task, cells[tid]))}
                       for tid in sorted(cells)}
        scores = [template_score(task, cells[tid]) for tid in sorted(cells)]
        scores = [s for s in scores if s is not None]
        if scores:
            mean = sum(scores) / len(scores)
            stdev = math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))
            lo, hi = min(scores), max(scores)
        else:
            mean = stdev = lo = hi = None
        out[task] = {"templates": len(scores), "min": _r(lo), "max": _r(hi),
                     "range": _r(None if lo is None else hi - lo), "mean": _r(mean), "stdev": _r(stdev),
                     "by_template": by_template}
    return out
