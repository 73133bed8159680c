"""Prompt sensitivity: each task's score per question template, and its spread. Pure code, no Beam.

Every test question is drawn from a template bank (the dialogue row's `template_id`), so a task's
score can be computed over the samples of each template alone: the same Eq. 3 column accuracies
and Eq. 5 task score as metrics.json, restricted to one wording. How far those per-template scores
lie apart says how much a model's score depends on the wording it was asked in.

The scorer keeps one small accumulator per model, {(task, template_id): (samples, per column [TP, FP, FN, n])}
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

from sarchat.transforms.score.metrics import column_accuracy, round4, task_score
from sarchat.transforms.tasks import TASKS

NO_TEMPLATE = ""


def new():
    return {}


def add_arrays(acc, arrays, template_ids):
    """Count a TaskArrays' samples (`template_ids`: their rows' template ids, in the same order);
    a sample counts in the columns its mask marks."""
    ids = np.asarray([t or NO_TEMPLATE for t in template_ids], dtype=str)
    m = arrays.mask
    counts = np.stack([np.where(m, arrays.tp, 0), np.where(m, arrays.fp, 0), np.where(m, arrays.fn, 0), m], axis=2)
    for tid in np.unique(ids):
        rows = ids == tid
        n, sums = acc.get((arrays.task, str(tid)), (0, 0))
        acc[(arrays.task, str(tid))] = (n + int(rows.sum()), sums + counts[rows].sum(0))
    return acc


def merge(accs):
    out = {}
    for acc in accs:
        for key, (n, sums) in acc.items():
            total, total_sums = out.get(key, (0, 0))
            out[key] = (total + n, total_sums + sums)
    return out


def template_score(cell):
    """Eq. 5 over the template's samples: the mean of its non-null Eq. 3 column accuracies."""
    return task_score(column_accuracy(*(int(v) for v in column)) for column in cell[1])


def spread(acc):
    """metrics.json's `template_spread` (module docstring) from an accumulator."""
    out = {}
    for task in TASKS:
        scores = {tid: template_score(acc[(t, tid)]) for t, tid in sorted(acc) if t == task}
        if not scores:
            out[task] = None
            continue
        valid = [s for s in scores.values() if s is not None]
        if valid:
            mean = sum(valid) / len(valid)
            stdev = math.sqrt(sum((s - mean) ** 2 for s in valid) / len(valid))
            lo, hi = min(valid), max(valid)
        else:
            mean = stdev = lo = hi = None
        out[task] = {"templates": len(valid), "min": round4(lo), "max": round4(hi),
                     "range": round4(None if lo is None else hi - lo), "mean": round4(mean), "stdev": round4(stdev),
                     "by_template": {tid: {"n": acc[(task, tid)][0], "score": round4(s)} for tid, s in scores.items()}}
    return out
