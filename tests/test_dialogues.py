"""Dialogue builder on boxes worked out by hand (docs/rules.md sections 2, 5 and 7)."""
import hashlib
import json
from importlib import resources

import pytest

import sarchat.templates
from tests.helpers import CATEGORIES, known_dataset
from sarchat.transforms import coco
from sarchat.transforms.generate.dialogues import DialogueBuilder


@pytest.fixture(scope="module")
def rows_by_image():
    images, annotations = known_dataset()
    parsed, rejects = coco.parse_coco({"images": images, "annotations": annotations, "categories": CATEGORIES},
                                      "test.json", "test", "JPEGImages/test")
    assert not rejects
    builder = DialogueBuilder(seed=0)
    out = {}
    for image in parsed:
        out[image["image_id"]] = builder.rows([image])
    return out


def pick(rows, task, **where):
    return [r for r in rows if r["task"] == task and all(r[k] == v for k, v in where.items())]


def test_count_answers_exact(rows_by_image):
    rows, _ = rows_by_image[1]
    ships = [r for r in pick(rows, "count") if r["gt_categories"][0] == "ship"][0]
    harbor = [r for r in pick(rows, "count") if r["gt_categories"][0] == "harbor"][0]
    assert ships["answer"] == "There are 2 instances. {<294><358><329><427>}{<61><448><122><503>}"
    assert harbor["answer"] == "There is 1 instance. {<300><20><450><140>}"
    assert ships["gt_count"] == 2 and ships["gt_boxes"] == [[294, 358, 329, 427], [61, 448, 122, 503]]
    assert ships["question"].startswith("[count] ") and ("ship" in ships["question"])


def test_refer_answers_exact_and_subsets(rows_by_image):
    rows, _ = rows_by_image[1]
    multi = pick(rows, "refer", subset="multi")
    single = pick(rows, "refer", subset="single")
    assert [r["answer"] for r in multi] == ["{<294><358><329><427>} (bottom center){<61><448><122><503>} (bottom left)"]
    assert [r["answer"] for r in single] == ["{<300><20><450><140>} (top right)"]
    assert single[0]["gt_cells"] == ["top right"] and "harbor" in single[0]["question"]


def test_grounding_answer_and_relation(rows_by_image):
    rows, _ = rows_by_image[1]
    (g,) = pick(rows, "grounding")
    body = ("In this SAR image, I can identify several objects and their locations: There are 2 ships: one in the "
            "bottom center portion {<294><358><329><427>}, one in the bottom left portion {<61><448><122><503>}. "
            "There is a harbor in the top right portion {<300><20><450><140>}. ")
    assert g["answer"] in (body + "The ship is far from the harbor.", body + "The ship is far from the harbor, below it.")
    assert g["subset"] == "multi" and g["gt_relations"] == ["ship|far from|harbor|below"]
    rows3, _ = rows_by_image[3]
    (g3,) = pick(rows3, "grounding")
    assert g3["gt_relations"] == ["aircraft|far from|car|to the upper left of"]
    assert "There is an aircraft in the top left portion {<100><100><400><380>}." in g3["answer"]
    (g2,) = pick(rows_by_image[2][0], "grounding")
    assert g2["subset"] == "single" and g2["gt_relations"] == []


def test_identify_variants_attributes(rows_by_image):
    rows, _ = rows_by_image[1]
    ident = pick(rows, "identify")
    assert len(ident) == 3 * 7 and {r["subset"] for r in ident} == {"multi"}
    ship = [r for r in ident if r["gt_boxes"] == [[294, 358, 329, 427]]]
    assert len(ship) == 7 and len({r["template_id"] for r in ship}) == 7
    for r in ship:
        assert r["gt_sizes"] == ["very small"] and r["gt_cells"] == ["bottom center"] and r["gt_categories"] == ["ship"]
        assert "very small" in r["answer"] and "ship" in r["answer"] and "bottom center" in r["answer"]
        assert "{<294><358><329><427>}" in r["question"]
        assert (r["gt_shapes"] == ["tall"]) == ("tall" in r["answer"])
    assert {r["subset"] for r in pick(rows_by_image[2][0], "identify")} == {"single"}


def test_describe_filters_and_triples(rows_by_image):
    rows, rejects = rows_by_image[1]
    (d,) = pick(rows, "describe")
    assert list(zip(d["gt_sizes"], d["gt_categories"], d["gt_cells"])) == [
        ("small", "ship", "bottom left"), ("medium-sized", "harbor", "top right")]
    assert "small ship" in d["answer"] and "in the bottom left portion of the image" in d["answer"]
    assert "medium-sized harbor" in d["answer"] and "in the top right portion of the image" in d["answer"]
    assert [r["reason"] for r in rejects] == ["describe_small_area"]
    assert pick(rows_by_image[2][0], "describe") == []
    assert [r["reason"] for r in rows_by_image[2][1]] == ["describe_image_too_small"]


def test_classify_lists_categories_in_canonical_order(rows_by_image):
    (c,) = pick(rows_by_image[3][0], "classify")
    assert c["gt_categories"] == ["aircraft", "car"] and "aircraft and car" in c["answer"]


def test_messages_and_ids_unique(rows_by_image):
    all_rows = [r for rows, _ in rows_by_image.values() for r in rows]
    assert len(all_rows) == 28 + 11 + 21
    assert len({r["id"] for r in all_rows}) == len(all_rows)


def test_seed_changes_templates_not_targets():
    images, annotations = known_dataset()
    parsed, _ = coco.parse_coco({"images": images, "annotations": annotations, "categories": CATEGORIES},
                                "t", "test", "JPEGImages/test")
    a, _ = DialogueBuilder(seed=0).rows(parsed)
    b, _ = DialogueBuilder(seed=0).rows(list(reversed(parsed)))
    c, _ = DialogueBuilder(seed=1).rows(parsed)
    assert a == b
    assert [r["id"] for r in a] == [r["id"] for r in c]
    assert [r["template_id"] for r in a] != [r["template_id"] for r in c]
    assert [r["gt_boxes"] for r in a] == [r["gt_boxes"] for r in c]


def test_template_banks_meet_spec_minimums():
    banks = sarchat.templates.load_all()
    for task, minimum in sarchat.templates.MIN_TEMPLATES.items():
        assert len(banks[task]["templates"]) >= minimum
    assert (sarchat.templates.MIN_TEMPLATES["classify"], sarchat.templates.MIN_TEMPLATES["describe"]) == (20, 40)


def test_template_placeholder_typo_is_caught():
    bank = {"templates": [{"id": f"c{i}", "question": "Which of {candidates}?", "answer": "It is {categorys}."}
                          for i in range(20)]}
    with pytest.raises(sarchat.templates.TemplateError, match="categorys"):
        sarchat.templates.validate_bank("classify", bank)


def test_identify_variants_bounds():
    with pytest.raises(ValueError, match="identify_variants"):
        DialogueBuilder(identify_variants=len(sarchat.templates.load_bank("identify")["templates"]) + 1)


@pytest.mark.parametrize("task,question,missing", [
    ("refer", "[refer] Where is the {category}?", "n"),
    ("refer", "[refer] Find {n} of them.", "category_n"),
    ("classify", "What kind of targets are in this SAR image?", "candidates"),
])
def test_banks_require_the_count_and_the_candidates(task, question, missing):
    template = {"id": "x-1", "question": question, "answer": "It is {categories}."}
    bank = {"templates": [dict(template, id=f"x-{i}") for i in range(40)]}
    with pytest.raises(sarchat.templates.TemplateError, match=missing):
        sarchat.templates.validate_bank(task, bank)


def test_every_refer_question_states_the_count_and_every_classify_question_the_candidates(rows_by_image):
    banks = sarchat.templates.load_all()
    assert len(banks["refer"]["templates"]) >= 30
    assert all("{n} {category_n}" in t["question"] for t in banks["refer"]["templates"])
    assert all("{candidates}" in t["question"] for t in banks["classify"]["templates"])
    rows = [r for rows, _ in rows_by_image.values() for r in rows]
    for r in pick(rows, "refer"):
        n = len(r["gt_boxes"])
        noun = r["gt_categories"][0] if n == 1 or r["gt_categories"][0] == "aircraft" else r["gt_categories"][0] + "s"
        assert f"{n} {noun}" in r["question"], r["question"]
    for r in pick(rows, "classify"):
        assert "aircraft, bridge, car, harbor, ship, tank" in r["question"]


def test_describe_more_forms_are_taken_in_turn():
    style = {"lead": "L: ", "first": "A {size} {category} {position}", "more": ["B {size} {category}", "C {size} {category}"],
             "sep": " ", "end": "."}
    banks = dict(sarchat.templates.load_all())
    describe = {"styles": {"s": style}, "templates": [{"id": "d", "question": "Q?", "style": "s"}]}
    builder = DialogueBuilder(seed=0, banks=dict(banks, describe=describe))
    image = {"split": "test", "image_id": 1, "image_path": "a.jpg", "width": 512, "height": 512, "boxes": [
        {"ann_id": i, "category": "ship", "bbox": [10 + 100 * i, 10, 60, 60]} for i in range(4)]}
    rows, _ = builder.rows([image])
    (d,) = [r for r in rows if r["task"] == "describe"]
    assert d["answer"] == ("L: A small ship in the top left portion of the image B small ship C small ship B small ship.")


def template_hashes(task, bank) -> dict:
    """{template id: sha256 of what it stands for: its texts, with a describe template's style spelled out}."""
    out = {}
    for t in bank["templates"]:
        content = {k: v for k, v in t.items() if k != "id"}
        if "style" in t:
            content["style"] = bank["styles"][t["style"]]
        out[t["id"]] = hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()
    return out


def released_ids() -> dict:
    """templates/released.json: {task: {template id: content hash}} of every id ever shipped."""
    return json.loads(resources.files("sarchat.templates").joinpath("released.json").read_text(encoding="utf-8"))["ids"]


def test_template_ids_never_change_meaning():
    """Every id of the banks is pinned in templates/released.json with the hash of what it stands for:
    an edited template must get a new id (and the new id a new pin), never reuse an old one."""
    released = released_ids()
    banks = sarchat.templates.load_all()
    for task, bank in banks.items():
        current = template_hashes(task, bank)
        unpinned = sorted(set(current) - set(released[task]))
        assert not unpinned, f"{task}: new template ids {unpinned} must be added to templates/released.json"
        changed = sorted(i for i in current if released[task][i] != current[i])
        assert not changed, f"{task}: template ids {changed} changed meaning; give the new text a new id"
    # the retired ids of the first banks stay pinned, so they cannot come back with another text
    assert {"refer-01", "classify-01"} <= set(released["refer"]) | set(released["classify"])
    assert "refer-01" not in {t["id"] for t in banks["refer"]["templates"]}


def test_a_changed_template_is_caught_by_its_pin():
    bank = sarchat.templates.load_bank("count")
    edited = dict(bank, templates=[dict(bank["templates"][0], question="[count] How many {category_plural}?")]
                  + bank["templates"][1:])
    released = released_ids()["count"]
    first = bank["templates"][0]["id"]
    assert template_hashes("count", bank)[first] == released[first]
    assert template_hashes("count", edited)[first] != released[first]
    assert sarchat.templates.bank_fingerprint(edited) != sarchat.templates.bank_fingerprint(bank)


def test_describe_sentences_start_with_a_capital():
    """Every describe style that ends a phrase with a full stop starts the next with a capital
    ('... of the image. There is one more ...'): the old `visible` style wrote '. there is'."""
    import re

    from sarchat import templates

    bank = templates.load_bank("describe")
    for name, style in bank["styles"].items():
        if style["sep"].rstrip().endswith("."):
            forms = style["more"] if isinstance(style["more"], list) else [style["more"]]
            assert all(f[:1].isupper() for f in forms), name
    images, annotations = known_dataset()
    parsed, _ = coco.parse_coco({"images": images, "annotations": annotations, "categories": CATEGORIES},
                                "test.json", "test", "JPEGImages/test")
    styles = set()
    for seed in range(60):
        builder = DialogueBuilder(seed=seed)
        for r in builder.rows(parsed)[0]:
            if r["task"] == "describe":
                styles.add(r["template_id"])
                assert not re.search(r"\. [a-z]", r["answer"]), r["answer"]
    assert {f"describe-{k}" for k in range(51, 56)} & styles, "no visible_sentences answer drawn"


@pytest.mark.parametrize("edit,message", [
    (lambda b: b["templates"][0].update(qestion="x"), r"unknown field `qestion`.*\$\.templates\[0\]"),
    (lambda b: b["templates"][1].update(question=3), r"Expected `str`, got `int` - at `\$\.templates\[1\]\.question`"),
    (lambda b: b.update(version="2"), r"Expected `int`, got `str` - at `\$\.version`"),
    (lambda b: b.update(task="count"), "declares task 'refer'|declares task 'count'"),
    (lambda b: b["templates"].append({"id": "refer-31", "question": "[refer] Find {n} {category_n}."}), "unique"),
])
def test_a_malformed_bank_is_refused_naming_the_file_and_place(edit, message):
    bank = json.loads(json.dumps(sarchat.templates.load_bank("refer")))
    edit(bank)
    with pytest.raises(sarchat.templates.TemplateError, match=message) as info:
        sarchat.templates.validate_bank("refer", bank)
    assert str(info.value).startswith("templates/refer.json")
