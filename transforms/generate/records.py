"""Dialogue tables -> ms-swift JSONL lines, task counts. Pure functions, no Beam."""
import posixpath

import pyarrow as pa
import pyarrow.compute as pc

from sarchat.transforms.arrow_text import json_strings
from sarchat.transforms.generate.tfrecord import concat_binary
from sarchat.transforms.schema import USER_PREFIX


def task_counts(table) -> dict:
    """{"task/subset": rows} of a dialogue table ('classify/' for a task without subsets)."""
    grouped = table.select(["task", "subset"]).group_by(["task", "subset"], use_threads=False).aggregate([([], "count_all")])
    return {f"{t}/{s or ''}": n for t, s, n in zip(grouped.column("task").to_pylist(), grouped.column("subset").to_pylist(),
                                                   grouped.column("count_all").to_pylist())}


# JSON string escapes of json.dumps(ensure_ascii=False): backslash first, then the quote and the
# control characters (short forms where JSON has one, \u00XX otherwise).
def swift_parts(table, image_root: str):
    """[(task file, bytes of its ms-swift JSONL lines)] of one sorted dialogue table, task files in
    name order, rows in table order, built column-wise: one line per row, {"messages": [...], "images":
    [path]} (path under image_root), the bytes json.dumps(ensure_ascii=False) writes."""
    if table.num_rows == 0:
        return []
    paths = table.column("image_path").combine_chunks().dictionary_encode()
    joined = [(image_root.rstrip("/") + "/" + p if "://" in image_root else posixpath.join(image_root, p)) if image_root else p
              for p in paths.dictionary.to_pylist()]
    path_json = json_strings(pa.array(joined, pa.string()), large=True).take(paths.indices)
    users = pc.binary_join_element_wise(USER_PREFIX, table.column("question").combine_chunks(), "").cast(pa.large_string())
    L = lambda text: pa.scalar(text, pa.large_string())  # noqa: E731 (constants of the large_string join)
    lines = pc.binary_join_element_wise(
        L('{"messages": [{"role": "user", "content": '), json_strings(users, large=True),
        L('}, {"role": "assistant", "content": '), json_strings(table.column("answer").combine_chunks(), large=True),
        L('}], "images": ['), path_json, L(']}\n'), L(""))
    task, subset = table.column("task").combine_chunks(), table.column("subset").combine_chunks()
    has_subset = pc.fill_null(pc.not_equal(subset, ""), False)
    file_of = pc.if_else(has_subset, pc.binary_join_element_wise(task, subset, "_"), task)
    out = []
    for name in sorted(pc.unique(file_of).to_pylist()):
        out.append((name, concat_binary(lines.filter(pc.equal(file_of, name)))))
    return out
