"""The dialogue builder (sarchat.transforms.generate.dialogues) beyond the hand-worked answers of
test_dialogues.py: its vectorised box attributes against geometry's scalar definitions, the identify
picks, shard independence (what makes output independent of the worker count), and the export
encoders of its table against their per-row definitions; on the synthetic default and edge cases."""
import collections
import functools
import json
import posixpath

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tests.helpers import CATEGORIES, known_dataset
from tests.tfrecord_reference import encode_rows
from sarchat.synthetic.sardet_synth import sardet_scale_annotations, split_sizes, synth_annotations
from sarchat.synthetic.constants import DEFAULT_IMAGES, DEFAULT_TEST_FRACTION
from sarchat.transforms import coco, geometry
from sarchat.transforms.categories import CATEGORY_INDEX
from sarchat.transforms.generate import records, tfrecord
from sarchat.transforms.arrow_text import render
from sarchat.transforms.generate.dialogues import DialogueBuilder
from sarchat.transforms.tasks.identify import identify_picks
from sarchat.transforms.schema import DIALOGUE_SCHEMA, USER_PREFIX, dialogue_id, seeded_int


def _swift_task_file(task, subset):
    """The paper's per-task test file name: classify, describe, count, grounding_single, ..."""
    return f"{task}_{subset}" if subset else task


def parsed(split, data):
    images, _ = coco.parse_coco(data, f"{split}.json", split, f"JPEGImages/{split}")
    return images


def edge_case_images():
    images, annotations = known_dataset()
    extra_images = [
        {"id": 7, "file_name": "edge.png", "width": 224, "height": 224},        # describe's minimum size
        {"id": 8, "file_name": "sub/deep name.png", "width": 1, "height": 1},   # 1x1 image
        {"id": 9, "file_name": "wide.png", "width": 5000, "height": 300},
        {"id": 2 ** 40, "file_name": "big_id.png", "width": 640, "height": 480},  # 64-bit image id
    ]
    extra = [
        {"id": 70, "image_id": 7, "category_id": 0, "bbox": [-5.5, -3.0, 240.0, 230.0]},    # clamped, out of bounds
        {"id": 71, "image_id": 7, "category_id": 0, "bbox": [111.5, 111.5, 0.5, 0.5]},     # tiny, half-pixel rounding
        {"id": 72, "image_id": 7, "category_id": 4, "bbox": [0.0, 100.0, 224.0, 2.0]},     # extreme aspect
        {"id": 73, "image_id": 7, "category_id": 4, "bbox": [10.0, 10.0, 20.0, 20.0]},
        {"id": 74, "image_id": 7, "category_id": 3, "bbox": [10.0, 10.0, 20.0, 20.0]},     # same centre: no direction
        {"id": 80, "image_id": 8, "category_id": 2, "bbox": [0.0, 0.0, 1.0, 1.0]},
        {"id": 90, "image_id": 9, "category_id": 5, "bbox": [4000.0, 0.0, 999.0, 300.0]},
        {"id": 91, "image_id": 9, "category_id": 1, "bbox": [0.0, 0.0, 1e9, 1e9]},         # huge box
        {"id": 2 ** 33, "image_id": 2 ** 40, "category_id": 0, "bbox": [1.0, 2.0, 3.0, 4.0]},
    ]
    extra += [{"id": 1000 + i, "image_id": 9, "category_id": i % 6, "bbox": [10.0 * i, 5.0, 30.0 + i, 40.0 - i / 2]}
              for i in range(40)]  # many boxes of every category in one image
    return parsed("test", {"images": images + extra_images, "annotations": annotations + extra, "categories": CATEGORIES})


def default_images(split):
    n_train, n_test = split_sizes(DEFAULT_IMAGES, DEFAULT_TEST_FRACTION)
    return parsed(split, synth_annotations(split, n_train if split == "train" else n_test, seed=0))


def assert_box_attributes(builder, images):
    """Every identify and describe row's truth equals geometry's scalar words for its box."""
    table, _ = builder.table(images)
    rows = {r["id"]: r for r in table.to_pylist()}
    K = builder.identify_variants
    shape_sentence = {t["id"]: bool(t.get("shape")) for t in builder.banks["identify"]["templates"]}
    seen = 0
    for im in images:
        W, H = im["width"], im["height"]
        subset = "single" if len(im["boxes"]) == 1 else "multi"
        for b in im["boxes"]:
            box = geometry.xyxy(b["bbox"], W, H)
            cell = geometry.grid_cell(box, W, H)
            size = geometry.identify_size(geometry.area_ratio(b["bbox"], W, H))
            shape = geometry.shape_word(geometry.aspect_ratio(b["bbox"]))
            templates = set()
            for v in range(K):
                r = rows[dialogue_id(im["split"], im["image_id"], "identify", subset, b["ann_id"], v)]
                assert (r["gt_boxes"], r["gt_cells"], r["gt_sizes"], r["gt_categories"]) == ([box], [cell], [size], [b["category"]])
                assert r["gt_shapes"] == ([shape] if shape_sentence[r["template_id"]] else [])
                assert geometry.box_text(box) in r["question"] and size in r["answer"] and cell in r["answer"]
                templates.add(r["template_id"])
                seen += 1
            assert len(templates) == K
        describe = rows.get(dialogue_id(im["split"], im["image_id"], "describe", None, "", 0))
        if describe:
            kept = [b for b in im["boxes"] if geometry.describe_box_reason(b["bbox"], W, H) is None]
            kept.sort(key=lambda b: CATEGORY_INDEX[b["category"]])
            assert describe["gt_sizes"] == [geometry.describe_size(geometry.area_ratio(b["bbox"], W, H)) for b in kept]
            assert describe["gt_cells"] == [geometry.grid_cell(geometry.xyxy(b["bbox"], W, H), W, H) for b in kept]
    assert seen == sum(pc.equal(table.column("task"), "identify").to_pylist())
    return table


def test_box_attributes_are_geometry_words_on_edge_cases():
    images = edge_case_images()
    for seed in (0, 1, 2 ** 70, "text seed"):
        assert_box_attributes(DialogueBuilder(seed=seed), images)
    assert_box_attributes(DialogueBuilder(seed=0, identify_variants=1), images)
    assert_box_attributes(DialogueBuilder(seed=0, identify_variants=22), images)


@pytest.mark.parametrize("split", ["train", "test"])
def test_box_attributes_on_the_synthetic_default(split):
    table = assert_box_attributes(DialogueBuilder(seed=0), default_images(split))
    assert set(table.column("task").to_pylist()) == {"classify", "describe", "count", "grounding", "identify", "refer"}


def test_a_shard_is_the_union_of_its_images():
    """Images split over shards any way give the same rows: output does not depend on the worker
    count or on which images share a shard, and comes out in id order whatever the input order."""
    images = edge_case_images() + parsed("train", sardet_scale_annotations("train", 60, 130, seed=3))
    builder = DialogueBuilder(seed=5)
    whole, rejects = builder.table(images)
    assert whole.column("id").to_pylist() == sorted(whole.column("id").to_pylist())
    parts = [builder.table(images[k::3]) for k in range(3)]
    joined = pa.concat_tables([p[0] for p in parts])
    joined = joined.take(pc.sort_indices(joined.column("id")))
    assert joined.equals(whole)
    assert sorted(map(json.dumps, rejects)) == sorted(json.dumps(r) for p in parts for r in p[1])
    assert builder.table(list(reversed(images)))[0].equals(whole)


def test_identify_picks_are_distinct_uniform_and_pinned():
    seeds = [seeded_int(0, "test", i, i) for i in range(20000)]
    picks = identify_picks(seeds, 22, 7)
    assert picks.shape == (20000, 7) and picks.dtype == np.int64
    assert all(len(set(row)) == 7 for row in picks.tolist()) and picks.min() == 0 and picks.max() == 21
    for variant in range(7):  # each variant spreads over the bank: 20000 / 22 = 909 expected per template
        counts = np.bincount(picks[:, variant], minlength=22)
        assert counts.min() > 780 and counts.max() < 1040, (variant, counts)
    assert (identify_picks(seeds[:50], 22, 22)[:, :7] == picks[:50]).all()  # K more variants extend, never reshuffle
    assert identify_picks([], 22, 7).shape == (0, 7)
    # the scheme as docs/rules.md section 6 states it, in plain Python integers; and pinned: a change
    # to it changes the data and must bump the generator version
    assert identify_picks(seeds[:300], 22, 7).tolist() == [documented_picks(s, 22, 7) for s in seeds[:300]]
    assert identify_picks([0, 1, 2 ** 64 - 1], 22, 7).tolist() == [
        [2, 4, 6, 18, 8, 5, 10], [20, 21, 15, 8, 10, 14, 4], [12, 9, 10, 18, 17, 14, 2]]


def documented_picks(seed, n, k):
    def splitmix64(z):
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9 % 2 ** 64
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB % 2 ** 64
        return z ^ (z >> 31)
    scores = [splitmix64((seed + (t + 1) * 0x9E3779B97F4A7C15) % 2 ** 64) for t in range(n)]
    return sorted(range(n), key=lambda t: (scores[t], t))[:k]


def test_seed_changes_identify_templates_not_targets():
    images = edge_case_images()
    a, _ = DialogueBuilder(seed=0).table(images)
    b, _ = DialogueBuilder(seed=1).table(images)
    assert a.column("id").equals(b.column("id")) and a.column("gt_boxes").equals(b.column("gt_boxes"))
    ident = pc.equal(a.column("task"), "identify")
    assert a.filter(ident).column("template_id").to_pylist() != b.filter(ident).column("template_id").to_pylist()


def test_no_images_gives_an_empty_table_with_the_schema():
    table, rejects = DialogueBuilder(seed=0).table([])
    assert table.schema == DIALOGUE_SCHEMA and table.num_rows == 0 and rejects == []


def swift_line(row, image_root: str) -> str:
    """One ms-swift JSONL line of a dialogue row (a dict): the per-row definition swift_parts is
    tested against."""
    path = row["image_path"]
    if image_root:
        path = image_root.rstrip("/") + "/" + path if "://" in image_root else posixpath.join(image_root, path)
    dumps = functools.partial(json.dumps, ensure_ascii=False)
    return ('{"messages": [{"role": "user", "content": ' + dumps(USER_PREFIX + row["question"])
            + '}, {"role": "assistant", "content": ' + dumps(row["answer"])
            + '}], "images": [' + dumps(path) + ']}')


@pytest.mark.parametrize("images", [edge_case_images, lambda: default_images("test")])
def test_exports_of_the_table_equal_the_per_row_encoders(images):
    """TFRecord and ms-swift bytes from the table equal the per-row reference encoders'."""
    table, _ = DialogueBuilder(seed=0).table(images())
    rows = table.to_pylist()
    assert tfrecord.encode_table(table) == encode_rows(rows)
    for image_root in ("", "data", "gs://bucket/root/", "/abs/root/"):
        by_file = collections.defaultdict(list)
        for r in rows:
            by_file[_swift_task_file(r["task"], r["subset"])].append(swift_line(r, image_root))
        want = [(name, ("\n".join(lines) + "\n").encode("utf-8")) for name, lines in sorted(by_file.items())]
        assert records.swift_parts(table, image_root) == want


def test_render_is_str_format():
    fields = {"a": pa.array(["x", "yy", ""]), "b": pa.array(["1", "2", "3"])}
    for fmt in ("{a} and {b}", "{{literal}} {a}", "no fields", "{a!r}:{b:>3}", "{b}{b}{a}"):
        want = [fmt.format(a=a, b=b) for a, b in zip(["x", "yy", ""], ["1", "2", "3"])]
        assert render(fmt, fields, 3).to_pylist() == want, fmt


def test_json_strings_is_json_dumps():
    tricky = ['plain', 'a "quoted" word', 'back\\slash \\n', 'new\nline\ttab\r\b\f', '\x00\x01\x1f\x7f',
              'unicode é ✓ \u2028', '']
    assert records.json_strings(pa.array(tricky), large=True).to_pylist() == [json.dumps(s, ensure_ascii=False) for s in tricky]
    assert records.json_strings(pa.array(["no escapes"]), large=True).to_pylist() == ['"no escapes"']


def test_tfrecord_of_odd_rows_equals_protobuf():
    """Negative and 64-bit ints, long strings (multi-byte varints), non-ASCII, empty and null fields."""
    row = {"id": "id-1", "split": "test", "task": "classify", "subset": None, "image_path": "p/é.png",
           "image_id": -(2 ** 40), "width": 70000, "height": 1, "question": "q" * 20000, "answer": "ans ✓",
           "messages": [{"role": "user", "content": "<image>\n" + "q" * 20000}, {"role": "assistant", "content": "ans ✓"}],
           "template_id": "t-1", "gt_boxes": [[0, 127, 128, 16384], [2 ** 31 - 1, 0, 1, 2]], "gt_categories": ["a"] * 300,
           "gt_cells": [], "gt_sizes": ["x" * 200], "gt_shapes": [], "gt_relations": ["r|s|t|"], "gt_count": -1}
    blank = {k: ("" if isinstance(v, str) else v) for k, v in row.items()}
    blank["messages"] = [{"role": "user", "content": "<image>\n"}, {"role": "assistant", "content": ""}]
    rows = [row, blank]
    assert tfrecord.encode_table(pa.Table.from_pylist(rows, schema=DIALOGUE_SCHEMA)) == encode_rows(rows)
    assert tfrecord.encode_table(DIALOGUE_SCHEMA.empty_table()) == encode_rows([]) == b""
