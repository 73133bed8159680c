"""The real SARChat forms (docs/rules.md sections 6 and 7, issue 11).

Images are built with the real examples' boxes (512x512); dialogues are generated with many seeds,
and every real question form and every exact-grammar answer must turn up among the outputs. The
real answers are also fed to the scorer's parsers (read-only use of sarchat.transforms.score), and
the authors' file layout is checked with json.load. Last, the task mix of a SARDet-scale run is held
to the paper's Table 5.
"""
import collections
import glob
import json
import os

import pytest

from sarchat.beam_pipelines import generate
from sarchat.synthetic.sardet_synth import SARDET_SCALE, sardet_scale_annotations, write_annotations_only
from sarchat.transforms import coco
from sarchat.transforms.box_formats import get_box_format
from sarchat.transforms.generate.dialogues import DialogueBuilder
from sarchat.transforms.generate.pipeline import AUTHORS_TASK_NAMES, SWIFT_TASK_FILES
from sarchat.transforms.score import parsing
from sarchat.transforms.tasks import classify
from tests.helpers import CATEGORIES, write_coco

SHIPS = [[294, 358, 329, 427], [61, 448, 122, 503], [27, 199, 78, 261], [193, 157, 245, 306]]
AIRCRAFT3 = [[251, 265, 323, 342], [185, 276, 256, 355], [88, 275, 177, 356]]
AIRCRAFT1 = [[393, 426, 470, 494]]
SCENES = {1: ("ship", SHIPS), 2: ("aircraft", AIRCRAFT3), 3: ("aircraft", AIRCRAFT1)}
CAT_ID = {c["name"]: c["id"] for c in CATEGORIES}

# The real forms' table (docs/real_forms.md), verbatim: (task, real question, real answer). "..." ends an answer the
# authors' figure cuts off; the text before it must be the start of our answer.
REAL = [
    ("classify", "Looking at this image, which of the following categories are present: aircraft, bridge, car, harbor, ship, tank?",
     "It is ship."),
    ("classify", "Based on these category options (aircraft, bridge, car, harbor, ship, tank), what's visible in this scene?",
     "It is aircraft"),
    ("describe", "What do you observe in this satellite imagery?",
     "In this satellite image, we can observe the following: A small ship is visible in the bottom left portion of the image "
     "There is one more small ship on the left side of the image Also, we can observe another small ship in the central "
     "region of the image."),
    ("describe", "What stands out to you in this satellite image?",
     "In this satellite image, we can observe the following: One can spot a small aircraft in the central region of the "
     "image There is one more small aircraft in the central region of the image ..."),
    ("count", "[count] Count the ship in this satellite image.",
     "There are 4 instances. {<294><358><329><427>}{<61><448><122><503>}{<27><199><78><261>}{<193><157><245><306>}"),
    ("count", "[count] Can you count all the aircraft in this image?",
     "There are 3 instances. {<251><265><323><342>}{<185><276><256><355>}{<88><275><177><356>}"),
    ("grounding", "[grounding] What objects can you identify in this SAR image and where are they located?",
     "In this SAR image, I can identify several objects and their locations: There are 4 ships: one in the bottom center "
     "portion {<294><358><329><427>}, one in the bottom left portion {<61><448><122><503>}, ..."),
    # The authors write "There are 3 aircrafts:" here; this is their sentence with our plural.
    ("grounding", "[grounding] Can you describe where different objects are situated in this SAR image?",
     "In this SAR image, I can identify several objects and their locations: There are 3 aircraft: one in the middle "
     "center portion {<251><265><323><342>}, one in the middle center portion {<185><276><256><355>}, one in the middle "
     "left portion {<88><275><177><356>}."),
    ("identify", "[identify] What can you identify within these coordinates: {<294><358><329><427>}?",
     "Examining the bottom center area reveals a very small ship."),
    ("identify", "[identify] Could you specify what appears at {<251><265><323><342>}?",
     "Present in the middle center area is a very small aircraft."),
    ("refer", "[refer] Locate 1 aircraft.", "{<393><426><470><494>} (bottom right)"),
    ("refer", "[refer] Identify 4 ship.",
     "{<294><358><329><427>} (bottom center){<61><448><122><503>} (bottom left){<27><199><78><261>} (middle left)"
     "{<193><157><245><306>} (middle center)"),
    ("refer", "[refer] I need to find 3 aircraft, can you help?",
     "{<251><265><323><342>} (middle center){<185><276><256><355>} (middle center){<88><275><177><356>} (middle left)"),
]
# Where we write correct English plurals, the authors' singular becomes a plural (docs/rules.md section 7:
# "Plurals are correct English"; the refer rule's own example is "[refer] Identify 4 ships.").
OUR_PLURALS = {
    "[count] Count the ship in this satellite image.": "[count] Count the ships in this satellite image.",
    "[refer] Identify 4 ship.": "[refer] Identify 4 ships.",
}


def real_images():
    images, anns = [], []
    for image_id, (cat, boxes) in SCENES.items():
        images.append({"id": image_id, "file_name": f"real_{image_id}.jpg", "width": 512, "height": 512})
        for x1, y1, x2, y2 in boxes:
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": CAT_ID[cat],
                         "bbox": [x1, y1, x2 - x1, y2 - y1]})
    return images, anns


def _matches(ours, real):
    return ours.startswith(real[:-3].rstrip()) if real.endswith("...") else ours == real


@pytest.fixture(scope="module")
def parsed_images():
    images, anns = real_images()
    parsed, rejects = coco.parse_coco({"images": images, "annotations": anns, "categories": CATEGORIES},
                                      "real.json", "test", "JPEGImages/test")
    assert not rejects
    return parsed


def test_every_real_form_comes_out_for_the_real_boxes(parsed_images):
    wanted = {(task, OUR_PLURALS.get(q, q), a) for task, q, a in REAL}
    found, seeds = set(), 0
    while wanted - found and seeds < 400:
        for row in DialogueBuilder(seed=seeds).rows(parsed_images)[0]:
            for task, q, a in wanted - found:
                if row["task"] == task and row["question"] == q and _matches(row["answer"], a):
                    found.add((task, q, a))
        seeds += 1
    assert not wanted - found, f"never generated in {seeds} seeds: {sorted(wanted - found)}"
    assert seeds > 1  # found across several seeds, not from one lucky draw


def test_every_real_question_form_is_in_its_bank_verbatim_up_to_placeholders():
    from sarchat import templates
    from sarchat.transforms.categories import plural
    from sarchat.transforms.tasks.classify import CANDIDATES

    banks = templates.load_all()
    for task, q, _ in REAL:
        q = OUR_PLURALS.get(q, q)
        rendered = set()
        for t in banks[task]["templates"]:
            for cat, boxes in SCENES.values():
                n = len(boxes)
                fields = {"candidates": CANDIDATES, "category": cat, "category_plural": plural(cat), "n": n,
                          "category_n": plural(cat, n), "be": "is" if n == 1 else "are"}
                for box in boxes:
                    rendered.add(t["question"].format(box="{<%d><%d><%d><%d>}" % tuple(box), **fields))
        assert q in rendered, f"{task}: no template renders {q!r}"


def test_the_real_answers_parse_to_their_targets():
    """Each real answer of the real forms list, fed to the scorer's parser, gives the targets of its boxes;
    the authors' "aircrafts" included."""
    fmt = get_box_format("canonical")

    def parse(task, text):
        out = parsing.parse_answer(task, text, fmt, 512, 512)
        assert out["status"] == parsing.OK, (task, text)
        return out

    def ints(boxes):
        return [[round(v) for v in b] for b in boxes]

    answers = {(task, OUR_PLURALS.get(q, q)): a for task, q, a in REAL}
    a = list(answers.values())
    assert parse("classify", a[0])["categories"] == ["ship"]
    assert parse("classify", a[1])["categories"] == ["aircraft"]
    assert parse("describe", a[2])["triples"] == [("small", "ship", "bottom left"), ("small", "ship", "middle left"),
                                                 ("small", "ship", "middle center")]
    assert parse("describe", a[3])["triples"] == [("small", "aircraft", "middle center")] * 2
    count = parse("count", a[4])
    assert count["count"] == 4 and ints(count["boxes"]) == SHIPS
    count = parse("count", a[5])
    assert count["count"] == 3 and ints(count["boxes"]) == AIRCRAFT3
    g = parse("grounding", a[6])
    assert ints(g["boxes"]) == SHIPS[:2] and g["box_categories"] == ["ship", "ship"]
    for text in (a[7], a[7].replace("3 aircraft:", "3 aircrafts:")):
        g = parse("grounding", text)
        assert ints(g["boxes"]) == AIRCRAFT3 and g["box_categories"] == ["aircraft"] * 3
    i = parse("identify", a[8])
    assert (i["categories"], i["sizes"], i["cells"]) == (["ship"], ["very small"], ["bottom center"])
    i = parse("identify", a[9])
    assert (i["categories"], i["sizes"], i["cells"]) == (["aircraft"], ["very small"], ["middle center"])
    r = parse("refer", a[10])
    assert ints(r["boxes"]) == AIRCRAFT1 and r["cells"] == ["bottom right"]
    r = parse("refer", a[11])
    assert ints(r["boxes"]) == SHIPS and r["cells"] == ["bottom center", "bottom left", "middle left", "middle center"]
    r = parse("refer", a[12])
    assert ints(r["boxes"]) == AIRCRAFT3 and r["cells"] == ["middle center", "middle center", "middle left"]
    assert classify.parse("It is aircrafts.")["categories"] == ["aircraft"]


# ---- the authors' file layout


def test_authors_layout_loads_as_lists_of_swift_rows_counted_by_the_manifest(tmp_path):
    root = tmp_path / "data"
    images, anns = real_images()
    write_coco(str(root), "test", images, anns)
    write_coco(str(root), "train", images[:2], [a for a in anns if a["image_id"] <= 2])
    out = tmp_path / "out"
    assert generate.run(["--input", str(root), "--output", str(out), "--formats", "parquet,authors",
                         "--images-per-shard", "1"]) == 0
    manifest = json.load(open(out / "manifest.json"))
    listed = {f["path"]: f for f in manifest["files"]}
    names = sorted(os.path.basename(p) for p in glob.glob(str(out / "authors" / "*")))
    test_names = sorted(f"SARChat_{AUTHORS_TASK_NAMES[t]}_test.json" for t in SWIFT_TASK_FILES)
    assert names == sorted(test_names + ["SARChat_total_task_train.json"])
    assert {"SARChat_classify_test.json", "SARChat_describe_test.json", "SARChat_classify_count_test.json",
            "SARChat_classify_grounding_single_test.json", "SARChat_classify_refer_multi_test.json",
            "SARChat_classify_identify_multi_test.json"} <= set(names)
    by_task = {split: manifest["counts"][split]["by_task"] for split in ("train", "test")}
    for name in names:
        with open(out / "authors" / name, encoding="utf-8") as f:
            rows = json.load(f)
        assert isinstance(rows, list)
        assert all(set(r) == {"messages", "images"} and len(r["images"]) == 1 for r in rows)
        assert all([m["role"] for m in r["messages"]] == ["user", "assistant"] for r in rows)
        assert all(r["messages"][0]["content"].startswith("<image>\n") for r in rows)
        entry = listed[f"authors/{name}"]
        assert entry["rows"] == len(rows) and entry["bytes"] == os.path.getsize(out / "authors" / name)
        if name == "SARChat_total_task_train.json":
            expected = sum(n for subsets in by_task["train"].values() for n in subsets.values())
        else:
            task_file = next(t for t in SWIFT_TASK_FILES if name == f"SARChat_{AUTHORS_TASK_NAMES[t]}_test.json")
            task, _, subset = task_file.partition("_")
            expected = by_task["test"].get(task, {}).get(subset or "all", 0)
        assert len(rows) == expected, name
    refer = json.load(open(out / "authors" / "SARChat_classify_refer_multi_test.json"))
    assert {r["messages"][1]["content"] for r in refer} >= {REAL[11][2], REAL[12][2]}
    leftovers = [p for p in glob.glob(str(out / "swift" / "**"), recursive=True) if os.path.isfile(p)]
    assert not leftovers, "the authors' layout alone leaves no swift part files behind"


# ---- task mix at SARDet scale against the paper's Table 5


TABLE5 = {  # percent of dialogues per task, the paper's Table 5
    "train": {"count": 5.2, "grounding": 5.1, "identify": 77.5, "refer": 5.2, "describe": 2.5, "classify": 4.5},
    "test": {"count": 5.2, "grounding": 5.1, "identify": 77.4, "refer": 5.2, "describe": 2.7, "classify": 4.4},
}


def test_task_mix_of_a_sardet_scale_run_is_within_one_point_of_table5(tmp_path):
    """The test split at full SARDet-100K size through `sarchat generate`; the train split at a tenth
    of its size (the same distribution) through the builder. Eight identify questions per box: see
    docs/real_forms.md for why the paper's mix needs more than the default seven on these data."""
    n_images, n_boxes = SARDET_SCALE["test"]
    root = tmp_path / "data"
    write_annotations_only(str(root), {"test": sardet_scale_annotations("test", n_images, n_boxes, seed=0)})
    out = tmp_path / "out"
    assert generate.run(["--input", str(root), "--output", str(out), "--splits", "test", "--formats", "parquet",
                         "--identify-variants", "8"]) == 0
    by_task = json.load(open(out / "manifest.json"))["counts"]["test"]["by_task"]
    mixes = {"test": {t: sum(s.values()) for t, s in by_task.items()}}
    n_images, n_boxes = SARDET_SCALE["train"]
    data = sardet_scale_annotations("train", n_images // 10, n_boxes // 10, seed=0)
    images, _ = coco.parse_coco(data, "train.json", "train", "JPEGImages/train")
    builder = DialogueBuilder(seed=0, identify_variants=8)
    train = collections.Counter()
    train.update(builder.table(images)[0].column("task").to_pylist())
    mixes["train"] = dict(train)
    for split, counts in mixes.items():
        total = sum(counts.values())
        for task, paper in TABLE5[split].items():
            ours = 100 * counts[task] / total
            assert abs(ours - paper) <= 1.0, f"{split} {task}: {ours:.2f}% vs the paper's {paper}%"
