"""What the answer parsers read in a model's text (docs/rules.md sections 7 and 12): category, size,
shape and position words, numbers, boxes in a declared format, relation sentences and describe
phrases. Pure functions, no Beam; each task's own parser (the `parse` of its module in
sarchat.transforms.tasks) puts these together and says when an answer is unparseable.

Boxes are read only in the format the model adapter declares (sarchat.transforms.box_formats.BoxFormat),
with the scale it declares; nothing is guessed from the values.

Every regular expression here has bounded, non-nested quantifiers (or a character class that stops
at the next delimiter), so matching is linear in the length of the text: a megabyte of adversarial
input is parsed in well under a second and simply comes back "unparseable".
"""
import re

from sarchat.transforms.categories import CATEGORY_INDEX, CATEGORY_WORDS

OK = "ok"
UNPARSEABLE = "unparseable"

# The word patterns are matched against the lower-cased text (about twice as fast as IGNORECASE);
# only the grounding box segmentation, which must keep positions in the original text, uses
# IGNORECASE patterns.
def _low(text):
    return (text or "").lower()

# ---------------------------------------------------------------------------------------------
# Vocabulary

_CAT_LOOKUP = {**CATEGORY_WORDS, "harbour": "harbor", "harbours": "harbor"}
_CAT_ALT = "|".join(sorted(_CAT_LOOKUP, key=len, reverse=True))
_CATEGORY_RE = re.compile(r"\b(%s)\b" % _CAT_ALT)
_CATEGORY_RE_I = re.compile(r"\b(%s)\b" % _CAT_ALT, re.IGNORECASE)


def _category(word):
    return _CAT_LOOKUP.get(word.lower())


# Identify sizes (5 levels). Longest alternatives first so "very small" wins over "small".
_SIZE5_PAT = r"very[ -]large|very[ -]small|medium[ -]sized|medium|large|small"
_SIZE_NORMAL = {"very large": "very large", "very-large": "very large", "very small": "very small",
                "very-small": "very small", "medium sized": "medium-sized", "medium-sized": "medium-sized",
                "medium": "medium-sized", "large": "large", "small": "small"}


def _size5(word):
    return _SIZE_NORMAL[word.lower()]


# Describe sizes are 3 levels; a 5-level word is folded onto them.
_DESCRIBE_FOLD = {"very large": "large", "very small": "small"}

_SHAPE_PAT = r"wide|tall|(?:roughly|approximately|nearly|almost|about)[ -]square|square"


def _shape(word):
    w = word.lower()
    return w if w in ("wide", "tall") else "roughly square"


# Positions: the description phrases of docs/rules.md section 2, their close variants, and bare cell words
# ("top right", "bottom center"). Phrases come first in the alternation; finditer scans left to
# right, so "in the top left portion of the image" is one match.
_ROW_WORD = {"top": "top", "upper": "top", "middle": "middle", "center": "middle", "centre": "middle",
             "central": "middle", "bottom": "bottom", "lower": "bottom"}
_COL_WORD = {"left": "left", "center": "center", "centre": "center", "middle": "center", "right": "right"}
_POSITION_PAT = (
    r"\b(?:"
    r"(?P<edge>at|on|along|near) the (?P<edge_side>top|bottom|left|right)(?: (?:edge|side|part))?(?= of the (?:image|picture|figure|scene))"
    r"|(?P<central>in the (?:central|centre|center|middle) (?:region|area|part|portion)"
    r"|in the (?:centre|center|middle) of the (?:image|picture|figure|scene))"
    r"|(?P<row>top|upper|middle|center|centre|central|bottom|lower)[ -](?P<col>left|center|centre|middle|right)"
    r")\b")
_POSITION_RE = re.compile(_POSITION_PAT)
# Everything identify looks for, in one left-to-right scan (the vocabularies start with different
# words, so one scan finds what four separate scans would).
_IDENTIFY_RE = re.compile(r"\b(?:(?P<cat>%s)|(?P<size>%s)|(?P<shape>%s))\b|%s"
                          % (_CAT_ALT, _SIZE5_PAT, _SHAPE_PAT, _POSITION_PAT))


def _position_cell(m):
    if m.group("edge_side"):
        side = m.group("edge_side").lower()
        return {"top": "top center", "bottom": "bottom center",
                "left": "middle left", "right": "middle right"}[side]
    if m.group("central"):
        return "middle center"
    # "center left" reads as the middle row, left column
    return f"{_ROW_WORD[m.group('row').lower()]} {_COL_WORD[m.group('col').lower()]}"


def find_cells(text):
    """Grid cells named in `text`, in order: 'top right', 'middle center', ... (with repeats)."""
    return [_position_cell(m) for m in _POSITION_RE.finditer(_low(text))]


def find_categories(text):
    """Category words in `text`, canonical singular names in order of appearance (with repeats)."""
    cats = (_category(m.group(1)) for m in _CATEGORY_RE.finditer(_low(text)))
    return [cat for cat in cats if cat]


# ---------------------------------------------------------------------------------------------
# Numbers

_UNITS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
          "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
          "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
         "eighty": 80, "ninety": 90}
_NUMBER_RE = re.compile(
    # digits that look like a coordinate (after "<", "[", "(", "," or ", "; before ">", "]" or
    # ", <digit>") are never the stated count, even when the box around them is malformed
    r"(?<![\w.<\[(,])(?<!, )(?<!,  )(?P<digits>\d{1,6})(?![\w>\]]|\.\d|\s{0,3},\s{0,3}\d)"
    r"|\b(?P<tens>%s)(?:[- ](?P<tens_unit>one|two|three|four|five|six|seven|eight|nine))?\b"
    r"|\b(?P<unit>%s)\b"
    r"|\b(?P<none>no|none)\b"
    % ("|".join(_TENS), "|".join(sorted(_UNITS, key=len, reverse=True))))
_NO_RE = re.compile(r"\bno (?:%s|instances?|objects?|targets?)\b|\bnone\b" % _CAT_ALT)


def parse_number(text):
    """The first number stated in `text` (digits or English words), or None.

    "There are 3 instances" -> 3, "three ships" -> 3, "twenty-one" -> 21, "There are no ships" -> 0.
    A bare "no" only counts as zero before a noun ("no ships", "no instances").
    """
    text = _low(text)
    for m in _NUMBER_RE.finditer(text):
        if m.group("digits"):
            return int(m.group("digits"))
        if m.group("tens"):  # the text is lower-cased
            return _TENS[m.group("tens")] + _UNITS.get(m.group("tens_unit"), 0)
        if m.group("unit"):
            return _UNITS[m.group("unit")]
        if m.group("none") == "none" or _NO_RE.match(text, m.start()):
            return 0
    return None


# ---------------------------------------------------------------------------------------------
# Boxes

# Spans that look like a box in any of the supported syntaxes; removed before looking for the
# stated count so that coordinates are never read as the count.
_BOXLIKE_RE = re.compile(
    r"\{[^{}]{0,400}\}|<\|box_start\|>[^<]{0,400}<\|box_end\|>|<box>[^<]{0,4000}</box>|\[[^\[\]]{0,400}\]"
    r"|\([^()]{0,40}\)|<loc_?\d{1,4}>")


def strip_boxes(text):
    return _BOXLIKE_RE.sub(" ", text or "")


def parse_boxes(text, box_format, width, height):
    """Pixel [x1,y1,x2,y2] floats of every box in `text`, read in the declared format."""
    return box_format.parse(text or "", width, height)


_JSON_OBJECT_RE = re.compile(r"\{[^{}]{0,4000}\}")
_JSON_LABEL_RE = re.compile(r'"(?:label|category|class|name)"\s{0,8}:\s{0,8}"([^"]{0,80})"', re.IGNORECASE)


def parse_boxes_by_category(text, box_format, width, height):
    """Boxes with the category each belongs to: ([box, ...], [category or None, ...]).

    A box belongs to the last category word written before it (the first one after it for a format
    whose labels follow their boxes, `label_after`: PaliGemma) ("There are 2 ships: one in the top
    left portion {box}, one in ... {box}" -> both ships). For the JSON format, an object's own
    "label" ("category", "class", "name") wins. Boxes before any category word get None (they can
    only be false positives).
    """
    boxes, cats = [], []

    def take(text, cat):  # the boxes in `text`, each with `cat`
        found = box_format.parse(text, width, height)
        boxes.extend(found)
        cats.extend([cat] * len(found))
        return found

    def labelled(m):  # a JSON object with a category label: its boxes are taken, it becomes a space
        lab = _JSON_LABEL_RE.search(m.group(0))
        cat = _category(lab.group(1).strip()) if lab else None
        return " " if cat and take(m.group(0), cat) else m.group(0)

    rest = _JSON_OBJECT_RE.sub(labelled, text or "") if box_format.name == "json-bbox2d" else text or ""
    # PaliGemma writes the label after its box ("<loc..>x4 ship ; <loc..>x4 tank"): a box takes the
    # first category word after it instead.
    after = getattr(box_format, "label_after", False)
    current, pos = None, 0
    for m in _CATEGORY_RE_I.finditer(rest):
        take(rest[pos:m.start()], _category(m.group(1)) if after else current)
        current = _category(m.group(1))
        pos = m.end()
    take(rest[pos:], None if after else current)
    return boxes, cats


# ---------------------------------------------------------------------------------------------
# Relations

_REL_RE = re.compile(
    r"\bthe\s{1,4}(%s)\s{1,4}(?:is|are|lies|lie|sits|sit|appears|appear)\s{1,4}(?:located\s{1,4})?"
    r"(near(?: to)?|close to|next to|far from|far away from|distant from)\s{1,4}the\s{1,4}(%s)\b"
    % (_CAT_ALT, _CAT_ALT))
_REL_NORMAL = {"near": "near", "near to": "near", "close to": "near", "next to": "near",
               "far from": "far from", "far away from": "far from", "distant from": "far from"}


def parse_relations(text):
    """Relation triples (cat1, 'near' | 'far from', cat2) from sentences such as
    "The ship is far from the harbor, to the upper left of it."

    Near / far from are symmetric, so each triple is put in canonical category order (the order of
    gt_relations); the direction is informative only and is not returned.
    """
    out = []
    for m in _REL_RE.finditer(_low(text)):
        rel = _REL_NORMAL[re.sub(r"\s+", " ", m.group(2).lower())]
        out.append(canon_triple(_category(m.group(1)), rel, _category(m.group(3))))
    return out


def canon_triple(a, rel, b):
    """(a, rel, b) with the two categories in canonical order (near / far from are symmetric);
    a word that is no category stays where it is."""
    if a in CATEGORY_INDEX and b in CATEGORY_INDEX and CATEGORY_INDEX[b] < CATEGORY_INDEX[a]:
        a, b = b, a
    return (a, rel, b)


# ---------------------------------------------------------------------------------------------
# Describe phrases

_SIZE_CAT_RE = re.compile(r"\b(%s)\s{1,4}(%s)\b" % (_SIZE5_PAT, _CAT_ALT))


def parse_description(text):
    """(size, category, cell) triples, one per "<size> <category>" phrase, in order.

    The size is folded onto the description's 3 levels (very small -> small, very large -> large);
    the cell is that of the first position phrase between this phrase and the next one (None when
    there is none), e.g. "A small ship is visible in the bottom left portion of the image"
    -> ('small', 'ship', 'bottom left').
    """
    text = _low(text)
    heads = list(_SIZE_CAT_RE.finditer(text))
    triples = []
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        size = _size5(m.group(1))
        size = _DESCRIBE_FOLD.get(size, size)
        cat = _category(m.group(2))
        pos = _POSITION_RE.search(text, m.end(), end)
        triples.append((size, cat, _position_cell(pos) if pos else None))
    return triples


def identify_attributes(text):
    """(categories, sizes, shapes, cells): the distinct values of each attribute named, in order, in
    one left-to-right scan."""
    found = {"cat": [], "size": [], "shape": [], "cell": []}
    read = {"cat": _category, "size": _size5, "shape": _shape}
    for m in _IDENTIFY_RE.finditer(_low(text)):
        kind = m.lastgroup if m.lastgroup in read else "cell"
        v = _position_cell(m) if kind == "cell" else read[kind](m.group(kind))
        if v not in found[kind]:
            found[kind].append(v)
    return tuple(found.values())


_WORD = re.compile(r"[A-Za-z]{2,12}")


def asked_category(question):
    """The first word of a question that is a category word ('[count] How many ships ...' -> 'ship')."""
    cats = (CATEGORY_WORDS.get(word.lower()) for word in _WORD.findall(question or ""))
    return next((cat for cat in cats if cat), None)
