"""Which test samples the report shows: per task the smallest ids, subsets in turn. Pure code.

The choice is global (over the whole split), but it needs only the `per_task` smallest ids of each
(task, subset): `smallest_candidates` keeps those of a part of the split, `merge_candidates` of
several parts, so a combiner holds a few ids per (task, subset) whatever the split's size, and the
choice is the same whatever the bundling.
"""
from sarchat.transforms.tasks import TASKS


def smallest_candidates(keys, per_task):
    """{(task, subset or ""): sorted list of at most per_task smallest ids} from [(id, task, subset)]."""
    out = {}
    for sid, task, subset in keys:
        out.setdefault((task, subset or ""), []).append(sid)
    return {k: sorted(v)[:per_task] for k, v in out.items()}


def merge_candidates(parts, per_task):
    out = {}
    for part in parts:
        for k, ids in part.items():
            out[k] = sorted(set(out.get(k, [])) | set(ids))[:per_task]
    return out


def choose_from_candidates(candidates, per_task):
    """Deterministic choice: per task (TASKS order), the smallest ids, taking subsets in turn
    (multi, single, ...: sorted) so both appear when a task has them."""
    chosen = []
    for task in TASKS:
        groups = {s: ids for (t, s), ids in candidates.items() if t == task}
        if not groups:
            continue
        queues = [sorted(groups[k]) for k in sorted(groups)]
        picked, k = [], 0
        while len(picked) < per_task and any(queues):
            q = queues[k % len(queues)]
            if q:
                picked.append(q.pop(0))
            k += 1
        chosen += sorted(picked)
    return chosen
