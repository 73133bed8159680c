"""Classification: which categories an image holds (docs/rules.md sections 7 and 12)."""
from sarchat.transforms.answer_words import OK, UNPARSEABLE, find_categories
from sarchat.transforms.box_match import set_counts
from sarchat.transforms.categories import CATEGORIES, CATEGORY_INDEX, canonical_sort, join_words
from sarchat.transforms.tasks.column_scoring import set_scores
from sarchat.transforms.tasks.task_spec import TaskSpec, most_common, row_dicts

# Classify questions name the candidates alphabetically, as the paper's appendix and the real
# SARChat questions do: "aircraft, bridge, car, harbor, ship, tank".
CANDIDATES = ", ".join(sorted(CATEGORIES))

SPEC = TaskSpec("classify", "", "Classification", columns=(("classify", "Class"),), min_templates=20,
                prior_columns=("gt_categories",))
# The placeholders each kind of template text may use and must use (templates/__init__.py).
TEMPLATE_FIELDS: dict[str, tuple[set, set]] = {"question": ({"candidates"}, {"candidates"}), "answer": ({"categories"}, set())}


def parse(text, box_format=None, width=None, height=None):
    """{'status', 'categories'}: the distinct categories named, canonical order; unparseable when no
    category word at all (ship, ships, aircraft, aircrafts, car, ... harbour)."""
    cats = sorted(set(find_categories(text)), key=CATEGORY_INDEX.__getitem__)
    return {"status": OK if cats else UNPARSEABLE, "categories": cats}


def columns(row):
    """The columns a test row counts in."""
    return ["classify"]


def score(row, parsed):
    """({column: (TP, FP, FN)}, IoUs per truth box) of a parsed answer: category sets."""
    return {"classify": set_counts(parsed["categories"], row.get("gt_categories") or [])}, []


def miss(row):
    """{column: (0, 0, FN)} of an answer that scores nothing."""
    return {"classify": (0, 0, len(set(row.get("gt_categories") or [])))}


def _truth_items(truth):
    return truth.kind_items("gt_categories", "category")


def score_columns(truth, parses, uok, ok, out):
    """score and miss for all rows at once (column_scoring)."""
    v = truth.vocab
    out.set(slice(None), 0, *set_scores(truth, _truth_items, parses, uok,
                                        lambda p: [v.code(("category", c)) for c in p["categories"]]))


def pred_labels(parsed):
    """The samples' `pred_labels` column: the categories named."""
    return list(parsed["categories"])


def marks(row, res):
    """The report's marks of a scored answer (res: its sample record): [(text, 'ok' | 'bad' | 'miss' | 'na')]."""
    gt = list(row.get("gt_categories") or [])
    said = list(res.get("pred_labels") or [])
    return [(c, "ok" if c in gt else "bad") for c in said] + [(c, "miss") for c in gt if c not in said]


# ---- baselines: a blind prior's answer (inference/baselines.py) and a detector's (inference/cfar.py)


def fit_prior(tally, rows):
    """The blind prior's counts of train rows: each set of categories; each distinct set's
    categories are the second vote for the top category (after identify's)."""
    sets, votes = tally.counter("classify"), tally.counter("category votes", 1)
    for row in row_dicts(rows, SPEC.prior_columns):
        cats = tuple(row.get("gt_categories") or [])
        if not sets[cats]:
            votes.update(cats)
        sets[cats] += 1


def prior(tally, top_category):
    """The blind prior's entry: the most common set of categories."""
    return {"classify": list(most_common(tally.counter("classify"), (top_category,)))}


def blind_answer(prior, row, fmt, W, H):
    """The blind prior's answer: the most common set of categories."""
    return f"The image contains {join_words(prior.priors['classify'])}."


def detector_answer(row, W, H, detections, region_category):
    """A detector's answer: the categories it detected (ship, the commonest class, when none)."""
    cats = canonical_sort(d.category for d in detections()) or ["ship"]
    return f"The image contains {join_words(cats)}."


# ---- building its dialogues from a shard's boxes (transforms/generate/dialogues.py gives ctx)


def build(ctx):
    """One row per image: the categories present."""
    rows = ctx.rows("classify")
    for i, image, lo, cats, by_cat in ctx.per_image:
        did, t = ctx.pick("classify", image)
        q, a = ctx.format(t["question"], candidates=CANDIDATES), ctx.format(t["answer"], categories=join_words(cats))
        rows.add(did, i, None, q, a, t["id"], [], len(cats), categories=list(cats))
    return rows.columns(ctx.shard)
