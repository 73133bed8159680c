"""Record schemas of docs/rules.md sections 8 and 11 (dialogues, predictions) and stable ids. Pure, no Beam."""
import hashlib

import pyarrow as pa

MESSAGE_TYPE = pa.struct([("role", pa.string()), ("content", pa.string())])
USER_PREFIX = "<image>\n"  # starts every user message: messages[0].content = USER_PREFIX + question

DIALOGUE_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("split", pa.string()),
    ("task", pa.string()),
    ("subset", pa.string()),
    ("image_path", pa.string()),
    ("image_id", pa.int64()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("question", pa.string()),
    ("answer", pa.string()),
    ("messages", pa.list_(MESSAGE_TYPE)),
    ("template_id", pa.string()),
    ("gt_boxes", pa.list_(pa.list_(pa.int32()))),
    ("gt_categories", pa.list_(pa.string())),
    ("gt_cells", pa.list_(pa.string())),
    ("gt_sizes", pa.list_(pa.string())),
    ("gt_shapes", pa.list_(pa.string())),
    ("gt_relations", pa.list_(pa.string())),
    ("gt_count", pa.int32()),
])
DIALOGUE_FIELDS = tuple(DIALOGUE_SCHEMA.names)

PREDICTION_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("prediction", pa.string()),
    ("model", pa.string()),
    ("error", pa.string()),
    ("latency_s", pa.float64()),
])

# gt_relations entries are "cat1|relation|cat2|direction" (direction may be empty); the scorer
# compares the (cat1, relation, cat2) triples, the direction is informative only.
RELATION_SEP = "|"


def split_relation(entry: str):
    """'ship|far from|harbor|to the left of' -> ('ship', 'far from', 'harbor', 'to the left of')."""
    parts = entry.split(RELATION_SEP)
    parts += [""] * (4 - len(parts))
    return tuple(parts[:4])


def join_relation(cat1, rel, cat2, direction=""):
    return RELATION_SEP.join((cat1, rel, cat2, direction))


def dialogue_id(split, image_id, task, subset, unit, variant) -> str:
    """Stable id from (split, image id, task, subset, unit, variant); hashlib, never the salted built-in hash."""
    key = f"{split}\x1f{image_id}\x1f{task}\x1f{subset or ''}\x1f{unit}\x1f{variant}"
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:20]


def seeded_int(seed, *parts) -> int:
    """A 64-bit integer derived from the seed and parts, identical in every process."""
    key = "\x1f".join(str(p) for p in (seed,) + parts)
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")
