"""The finalize step's pure logic: rejects sorted per shard and merged per split, the manifest's counts.

Rejects never meet in one list (issue 20): each shard writes its own, sorted, to a part file
(`shard_reject_lines`), and the finalize step merges a split's parts into `rejects/<split>.jsonl` as
a stream (`merge_reject_lines`), one line per part in memory, tallying reasons as it goes
(`RejectTally`). The order is a total one, `reject_key`: the reject's (task, file, index, record,
reason) and, last, its JSON line, so the file's bytes are the same whatever the runner, the worker
count or the order the shards finished in. Nothing here imports Beam; pipeline.py does the I/O.
"""
import collections
import heapq
import json
from typing import Iterable, Iterator, List, Tuple

import msgspec


def reject_key(reject, line) -> Tuple:
    """The order of rejects/<split>.jsonl: (task, file, index, record, reason), then the line itself
    so that two rejects of equal fields still come in one order."""
    return reject.get("task", ""), reject["file"], reject["index"], reject["record"], reject["reason"], line


def shard_reject_lines(rejects) -> bytes:
    """One shard's rejects as its sorted part file (JSON lines, `reject_key` order)."""
    keyed = sorted((reject_key(r, line), line) for r in rejects for line in (json.dumps(r, sort_keys=True),))
    return "".join(line + "\n" for _, line in keyed).encode("utf-8")


def _keyed_lines(lines: Iterable[bytes]) -> Iterator[Tuple[Tuple, bytes, dict]]:
    for raw in lines:
        line = raw.rstrip(b"\n")
        if line:
            reject = msgspec.json.decode(line)
            yield reject_key(reject, line.decode("utf-8")), line + b"\n", reject


def merge_reject_lines(parts: Iterable[Iterable[bytes]]) -> Iterator[Tuple[bytes, dict]]:
    """Sorted part files (each an iterable of its lines) -> (line, the reject's key fields) of all of
    them in `reject_key` order; holds one line per part."""
    for _, raw, reject in heapq.merge(*(_keyed_lines(p) for p in parts), key=lambda item: item[0]):
        yield raw, reject


class RejectTally:
    """The manifest's reject counts of a split: reasons of the records dropped, and apart from them
    the boxes and images left out of describe only (task "describe")."""

    def __init__(self):
        self.reasons, self.describe = collections.Counter(), collections.Counter()

    def add(self, reject):
        (self.describe if reject.get("task") == "describe" else self.reasons)[reject["reason"]] += 1

    def as_dicts(self):
        return dict(sorted(self.reasons.items())), dict(sorted(self.describe.items()))


def split_counts(results, splits) -> dict:
    """The shards' results -> the manifest's "counts": per split its images, boxes, dialogues and the
    dialogues by task and subset (a split no shard reported has zeros)."""
    images: collections.Counter = collections.Counter()
    boxes: collections.Counter = collections.Counter()
    tasks: dict = {split: collections.Counter() for split in splits}
    for r in results:
        images[r["split"]] += r["images"]
        boxes[r["split"]] += r["boxes"]
        tasks[r["split"]].update(r["counts"])
    return {split: {"images": images[split], "boxes": boxes[split], "dialogues": sum(tasks[split].values()),
                    "by_task": nest(tasks[split])}
            for split in sorted(splits)}


def nest(counter) -> dict:
    """{'identify/single': 3, 'classify/': 2} -> {'identify': {'single': 3}, 'classify': {'all': 2}}."""
    out: dict = {}
    for key, value in sorted(counter.items()):
        task, subset = key.split("/")
        out.setdefault(task, {})[subset or "all"] = value
    return out


def relative(root, path) -> str:
    """`path` relative to the output folder `root` (as the manifest lists files); other paths as given."""
    root = root.rstrip("/") + "/"
    return path[len(root):] if path.startswith(root) else path


def listed_files(output, files) -> List[dict]:
    """The manifest's "files": each written file relative to the output folder, sorted by path."""
    return sorted(({**f, "path": relative(output, f["path"])} for f in files), key=lambda f: f["path"])


class AuthorsArray:
    """ms-swift rows (JSON lines) -> the chunks of the authors' JSON array holding them, one row per
    line: `[`, `\\n row`, `,\\n row`, ..., then `\\n]\\n` (`]\\n` when there is no row); `rows` counts them."""

    def __init__(self):
        self.rows = 0

    def chunks(self, lines: Iterable[bytes]) -> Iterator[bytes]:
        yield b"["
        for line in lines:
            if line:
                yield (b",\n" if self.rows else b"\n") + line
                self.rows += 1
        yield b"\n]\n" if self.rows else b"]\n"
