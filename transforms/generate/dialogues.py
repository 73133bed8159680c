"""Build the six tasks' dialogues for one image (docs/rules.md sections 5 and 7). Pure functions, no Beam.

Input is an image record from sarchat.transforms.coco.parse_coco (valid boxes only). Output rows are
tuples in DIALOGUE_ROW_FIELDS order (cheap to sort and to turn into Arrow columns), plus the boxes
the description filters dropped, as rejects with their reason.
"""
import contextlib
import gc
import random

from sarchat.templates import load_all
from sarchat.transforms import geometry
from sarchat.transforms.categories import CATEGORIES, CATEGORY_INDEX, article, join_words, plural
from sarchat.transforms.schema import dialogue_id, join_relation, seeded_int

# DIALOGUE_SCHEMA minus `messages`, which is derived from question and answer when writing.
DIALOGUE_ROW_FIELDS = (
    "id", "split", "task", "subset", "image_path", "image_id", "width", "height", "question", "answer",
    "template_id", "gt_boxes", "gt_categories", "gt_cells", "gt_sizes", "gt_shapes", "gt_relations", "gt_count",
)
DEFAULT_IDENTIFY_VARIANTS = 7
# Classify questions name the candidates alphabetically, as the paper's appendix and the real
# SARChat questions do: "aircraft, bridge, car, harbor, ship, tank".
CANDIDATES = ", ".join(sorted(CATEGORIES))


class DialogueBuilder:
    """Holds the template banks and the seed; `build(image)` is the per-image work."""

    def __init__(self, seed: int = 0, identify_variants: int = DEFAULT_IDENTIFY_VARIANTS, banks=None):
        self.seed = seed
        self.banks = banks or load_all()
        n_identify = len(self.banks["identify"]["templates"])
        if not 1 <= identify_variants <= n_identify:
            raise ValueError(f"identify_variants must be in 1..{n_identify} (the identify bank size), got {identify_variants}")
        self.identify_variants = identify_variants
        self._describe_styles = self.banks["describe"]["styles"]
        forms = self.banks["grounding"]["relation_forms"]
        self._forms_with_dir = list(forms)  # any form may be used when a direction exists
        self._forms_without_dir = [f for f in forms if "{dir}" not in f["form"]] or forms[:1]

    def _pick(self, task, did):
        templates = self.banks[task]["templates"]
        return templates[seeded_int(self.seed, did) % len(templates)]

    def build(self, image):
        """-> (rows, describe_rejects) for one image record."""
        split, image_id = image["split"], image["image_id"]
        W, H = image["width"], image["height"]
        base = (image["image_path"], image_id, W, H)
        boxes = []
        for b in image["boxes"]:
            xyxy = geometry.xyxy(b["bbox"], W, H)
            boxes.append({
                "ann_id": b["ann_id"], "category": b["category"], "bbox": b["bbox"], "xyxy": xyxy,
                "text": geometry.box_text(xyxy), "cell": geometry.grid_cell(xyxy, W, H),
                "ratio": geometry.area_ratio(b["bbox"], W, H),
            })
        by_cat = {}
        for b in boxes:
            by_cat.setdefault(b["category"], []).append(b)
        cats = sorted(by_cat, key=CATEGORY_INDEX.__getitem__)

        rows = []
        rows.append(self._classify(split, image_id, base, cats))
        describe_row, describe_rejects = self._describe(image, base, boxes)
        if describe_row:
            rows.append(describe_row)
        for cat in cats:
            rows.append(self._count(split, image_id, base, cat, by_cat[cat]))
        rows.append(self._grounding(split, image_id, base, cats, by_cat, W, H, len(boxes)))
        subset = "single" if len(boxes) == 1 else "multi"
        for b in boxes:
            rows.extend(self._identify(split, image_id, base, b, subset))
        for cat in cats:
            rows.append(self._refer(split, image_id, base, cat, by_cat[cat]))
        return rows, describe_rejects

    # One method per task; each returns row tuples in DIALOGUE_ROW_FIELDS order.

    def _classify(self, split, image_id, base, cats):
        did = dialogue_id(split, image_id, "classify", None, "", 0)
        t = self._pick("classify", did)
        answer = t["answer"].format(categories=join_words(cats))
        question = t["question"].format(candidates=CANDIDATES)
        return (did, split, "classify", None, *base, question, answer, t["id"],
                [], list(cats), [], [], [], [], len(cats))

    def _describe(self, image, base, boxes):
        split, image_id, W, H = image["split"], image["image_id"], image["width"], image["height"]
        if not geometry.describe_image_ok(W, H):
            return None, [{"split": split, "record": f"image {image_id}", "reason": "describe_image_too_small",
                           "detail": f"{W}x{H}"}]
        kept, rejects = [], []
        for b in boxes:
            reason = geometry.describe_box_reason(b["bbox"], W, H)
            if reason:
                rejects.append({"split": split, "record": f"annotation {b['ann_id']}", "reason": reason,
                                "detail": f"image {image_id}"})
            else:
                kept.append(b)
        if not kept:
            return None, rejects
        kept.sort(key=lambda b: CATEGORY_INDEX[b["category"]])  # stable: annotation order within a category
        did = dialogue_id(split, image_id, "describe", None, "", 0)
        t = self._pick("describe", did)
        style = self._describe_styles[t["style"]]
        sizes = [geometry.describe_size(b["ratio"]) for b in kept]
        more = style["more"] if isinstance(style["more"], list) else [style["more"]]
        phrases = []
        for i, (b, size) in enumerate(zip(kept, sizes)):
            form = style["first"] if i == 0 else more[(i - 1) % len(more)]
            phrases.append(form.format(size=size, category=b["category"], position=geometry.POSITION_PHRASES[b["cell"]]))
        answer = style["lead"] + style["sep"].join(phrases) + style["end"]
        answer = answer[0].upper() + answer[1:]
        return (did, split, "describe", None, *base, t["question"], answer, t["id"],
                [b["xyxy"] for b in kept], [b["category"] for b in kept], [b["cell"] for b in kept],
                sizes, [], [], len(kept)), rejects

    def _count(self, split, image_id, base, cat, cat_boxes):
        did = dialogue_id(split, image_id, "count", None, cat, 0)
        t = self._pick("count", did)
        n = len(cat_boxes)
        lead = "There is 1 instance. " if n == 1 else f"There are {n} instances. "
        answer = lead + "".join(b["text"] for b in cat_boxes)
        question = t["question"].format(category=cat, category_plural=plural(cat))
        return (did, split, "count", None, *base, question, answer, t["id"],
                [b["xyxy"] for b in cat_boxes], [cat] * n, [b["cell"] for b in cat_boxes], [], [], [], n)

    def _grounding(self, split, image_id, base, cats, by_cat, W, H, n_boxes):
        subset = "single" if n_boxes == 1 else "multi"
        did = dialogue_id(split, image_id, "grounding", subset, "", 0)
        t = self._pick("grounding", did)
        sentences = []
        ordered = []
        for cat in cats:
            group = by_cat[cat]
            ordered.extend(group)
            if len(group) == 1:
                b = group[0]
                sentences.append(f"There is {article(cat)} {cat} in the {b['cell']} portion {b['text']}.")
            else:
                parts = ", ".join(f"one in the {b['cell']} portion {b['text']}" for b in group)
                sentences.append(f"There are {len(group)} {plural(cat)}: {parts}.")
        relations = []
        for i, a in enumerate(cats):
            for b in cats[i + 1:]:
                rel, direction = geometry.relation([x["xyxy"] for x in by_cat[a]], [x["xyxy"] for x in by_cat[b]], W, H)
                forms = self._forms_with_dir if direction else self._forms_without_dir
                form = forms[seeded_int(self.seed, did, a, b) % len(forms)]["form"]
                sentences.append(form.format(a=a, b=b, rel=rel, dir=direction))
                relations.append(join_relation(a, rel, b, direction))
        answer = self.banks["grounding"]["answer_lead"] + " ".join(sentences)
        return (did, split, "grounding", subset, *base, t["question"], answer, t["id"],
                [b["xyxy"] for b in ordered], [b["category"] for b in ordered], [b["cell"] for b in ordered],
                [], [], relations, len(ordered))

    def _identify(self, split, image_id, base, b, subset):
        templates = self.banks["identify"]["templates"]
        picks = random.Random(seeded_int(self.seed, split, image_id, b["ann_id"])).sample(
            range(len(templates)), self.identify_variants)
        size = geometry.identify_size(b["ratio"])
        shape = geometry.shape_word(geometry.aspect_ratio(b["bbox"]))
        rows = []
        for variant, k in enumerate(picks):
            t = templates[k]
            did = dialogue_id(split, image_id, "identify", subset, b["ann_id"], variant)
            answer = t["answer"].format(size=size, category=b["category"], cell=b["cell"])
            shapes = []
            if t.get("shape"):
                answer += t["shape"].format(shape=shape)
                shapes = [shape]
            rows.append((did, split, "identify", subset, *base, t["question"].format(box=b["text"]), answer, t["id"],
                         [b["xyxy"]], [b["category"]], [b["cell"]], [size], shapes, [], 1))
        return rows

    def _refer(self, split, image_id, base, cat, cat_boxes):
        subset = "single" if len(cat_boxes) == 1 else "multi"
        did = dialogue_id(split, image_id, "refer", subset, cat, 0)
        t = self._pick("refer", did)
        answer = "".join(f"{b['text']} ({b['cell']})" for b in cat_boxes)
        n = len(cat_boxes)
        question = t["question"].format(category=cat, category_plural=plural(cat), n=n, category_n=plural(cat, n),
                                        be="is" if n == 1 else "are")
        return (did, split, "refer", subset, *base, question, answer, t["id"],
                [b["xyxy"] for b in cat_boxes], [cat] * len(cat_boxes), [b["cell"] for b in cat_boxes],
                [], [], [], len(cat_boxes))


@contextlib.contextmanager
def gc_paused():
    """Pause the cyclic garbage collector while building many small acyclic objects.

    Building a shard allocates millions of tuples and lists, which triggers the collector over and
    over for nothing (rows hold no reference cycles); pausing it more than halves the build time.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def build_shard(builder, images):
    """All dialogues of a list of images, sorted by id, plus the describe-filter rejects."""
    rows, rejects = [], []
    with gc_paused():
        for image in sorted(images, key=lambda im: im["image_id"]):
            image_rows, image_rejects = builder.build(image)
            rows.extend(image_rows)
            rejects.extend(image_rejects)
        rows.sort(key=lambda r: r[0])
    return rows, rejects
