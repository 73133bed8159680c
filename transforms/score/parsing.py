"""A model's answer parsed by its task's parser (the `parse` of each module of
sarchat.transforms.tasks; what they read is sarchat.transforms.answer_words), and a memo of it.
Pure functions, no Beam.

Every parser takes (text, box_format, width, height) and returns a small dict with a `status` of
"ok" or "unparseable" plus the fields it found. An unparseable answer scores as a miss on every
column of its task and is counted as a parse failure.
"""
from sarchat.transforms.answer_words import OK, UNPARSEABLE  # noqa: F401 (the statuses, for the scorers)
from sarchat.transforms.tasks import BY_ID, TASK_SPECS


def parse_answer(task, text, box_format, width, height):
    """The task's parser (ValueError for a task id it does not know)."""
    try:
        parser = BY_ID[task].parse
    except KeyError:
        raise ValueError(f"unknown task {task!r}") from None
    return parser(text, box_format, width, height)


# Tasks whose parser reads the text only (their answers carry no boxes: the box format and image
# size do not matter).
TEXT_ONLY_TASKS = frozenset(s.id for s in TASK_SPECS if not s.answer_has_boxes)


class ParseMemo:
    """parse_answer with its results remembered: model answers repeat a great deal (templated
    phrasing; a blind or prior baseline gives one answer per task), and a parse is most of a
    sample's scoring. The key is (task, text), plus the box format and image size for the tasks
    whose boxes depend on them. Results are shared between samples, so callers never modify them
    (none does). At most `max_entries` results are kept; past that the memo starts afresh."""

    def __init__(self, max_entries=100_000):
        self.max_entries = max_entries
        self.results = {}
        self.hits = 0

    def __call__(self, task, text, box_format, width, height):
        key = (task, text) if task in TEXT_ONLY_TASKS else (task, text, box_format, width, height)
        found = self.results.get(key)
        if found is not None:
            self.hits += 1
            return found
        if len(self.results) >= self.max_entries:
            self.results.clear()
        found = self.results[key] = parse_answer(task, text, box_format, width, height)
        return found
