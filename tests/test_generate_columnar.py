"""The columnar shard builder against the reference row builder: equal tables, equal rejects,
byte-identical Parquet, on the synthetic default and on hand-made edge cases."""
import collections
import io
import json
import random

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.helpers import CATEGORIES, known_dataset
from sarchat.synthetic.sardet_synth import sardet_scale_annotations, split_sizes, synth_annotations
from sarchat.synthetic.constants import DEFAULT_IMAGES, DEFAULT_TEST_FRACTION
from sarchat.transforms import coco
from sarchat.transforms.generate import records, tfrecord
from sarchat.transforms.generate.dialogues import DIALOGUE_ROW_FIELDS
from sarchat.transforms.schema import swift_task_file
from sarchat.transforms.generate.columnar import build_shard_table, mt_sample, render
from sarchat.transforms.generate.dialogues import DialogueBuilder, build_shard


def reference(builder, images):
    rows, rejects = build_shard(builder, images)
    return rows, records.rows_to_table(rows), rejects


_TASK, _SUBSET = DIALOGUE_ROW_FIELDS.index("task"), DIALOGUE_ROW_FIELDS.index("subset")


def parquet_bytes(table):
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def assert_same(builder, images):
    rows, want, want_rejects = reference(builder, images)
    got, got_rejects = build_shard_table(builder, images)
    assert got.schema == want.schema
    if not got.equals(want):  # name the first differing column and row
        for name in want.column_names:
            a, b = got.column(name).to_pylist(), want.column(name).to_pylist()
            for i, (x, y) in enumerate(zip(a, b)):
                assert x == y, f"column {name} row {i}: {x!r} != {y!r}"
            assert len(a) == len(b), f"column {name}: {len(a)} rows != {len(b)}"
    assert got.equals(want)
    assert got_rejects == want_rejects
    assert parquet_bytes(got) == parquet_bytes(want)
    assert_exports_same(rows, got)
    return got


def assert_exports_same(rows, table):
    """TFRecord and ms-swift bytes from the table equal the per-row reference encoders'."""
    assert tfrecord.encode_table(table) == tfrecord.encode_rows(rows)
    for image_root in ("", "data", "gs://bucket/root/", "/abs/root/"):
        by_file = collections.defaultdict(list)
        for r in rows:
            by_file[swift_task_file(r[_TASK], r[_SUBSET])].append(records.swift_line(r, image_root))
        want = [(name, ("\n".join(lines) + "\n").encode("utf-8")) for name, lines in sorted(by_file.items())]
        assert records.swift_parts(table, image_root) == want


def parsed(split, data):
    images, _ = coco.parse_coco(data, f"{split}.json", split, f"JPEGImages/{split}")
    return images


@pytest.mark.parametrize("split", ["train", "test"])
def test_synthetic_default_equal_to_the_reference(split):
    n_train, n_test = split_sizes(DEFAULT_IMAGES, DEFAULT_TEST_FRACTION)
    images = parsed(split, synth_annotations(split, n_train if split == "train" else n_test, seed=0))
    table = assert_same(DialogueBuilder(seed=0), images)
    assert set(table.column("task").to_pylist()) == {"classify", "describe", "count", "grounding", "identify", "refer"}


def test_sardet_scale_mix_equal_to_the_reference_with_other_seed_and_variants():
    images = parsed("train", sardet_scale_annotations("train", 600, 1300, seed=3))
    assert_same(DialogueBuilder(seed=5), images)
    assert_same(DialogueBuilder(seed=0, identify_variants=1), images)
    assert_same(DialogueBuilder(seed=0, identify_variants=22), images)


def test_hand_made_edge_cases_equal_to_the_reference():
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
    extra += [{"id": 1000 + i, "image_id": 9, "category_id": i % 6, "bbox": [10.0 * i, 5.0, 30.0, 40.0]}
              for i in range(40)]  # many boxes of every category in one image
    data = {"images": images + extra_images, "annotations": annotations + extra, "categories": CATEGORIES}
    images = parsed("test", data)
    for seed in (0, 1, 2 ** 70, "text seed"):
        assert_same(DialogueBuilder(seed=seed), images)
    assert_same(DialogueBuilder(seed=0), images[:1])  # one image
    assert_same(DialogueBuilder(seed=0), list(reversed(images)))  # any input order


def test_no_images_gives_an_empty_table_with_the_schema():
    assert_same(DialogueBuilder(seed=0), [])


def test_vectorised_sample_is_random_sample():
    rng = random.Random(1)
    seeds = [rng.getrandbits(64) for _ in range(3000)] + [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 64 - 1]
    seeds += [rng.getrandbits(16) for _ in range(200)]
    for n, k in ((22, 7), (22, 22), (7, 1), (1, 1), (40, 5)):
        want = np.array([random.Random(s).sample(range(n), k) for s in seeds])
        assert (mt_sample(seeds, n, k) == want).all(), (n, k)


def test_render_is_str_format():
    import pyarrow as pa
    fields = {"a": pa.array(["x", "yy", ""]), "b": pa.array(["1", "2", "3"])}
    for fmt in ("{a} and {b}", "{{literal}} {a}", "no fields", "{a!r}:{b:>3}", "{b}{b}{a}"):
        want = [fmt.format(a=a, b=b) for a, b in zip(["x", "yy", ""], ["1", "2", "3"])]
        assert render(fmt, fields, 3).to_pylist() == want, fmt


def test_json_strings_is_json_dumps():
    import pyarrow as pa
    tricky = ['plain', 'a "quoted" word', 'back\\slash \\n', 'new\nline\ttab\r\b\f', '\x00\x01\x1f\x7f',
              'unicode é ✓ \u2028', '']
    assert records.json_strings(pa.array(tricky)).to_pylist() == [json.dumps(s, ensure_ascii=False) for s in tricky]
    assert records.json_strings(pa.array(["no escapes"])).to_pylist() == ['"no escapes"']


def test_tfrecord_of_odd_rows_equals_protobuf():
    """Negative and 64-bit ints, long strings (multi-byte varints), non-ASCII, empty and null fields."""
    row = ("id-1", "test", "classify", None, "p/é.png", -(2 ** 40), 70000, 1, "q" * 20000, "ans ✓", "t-1",
           [[0, 127, 128, 16384], [2 ** 31 - 1, 0, 1, 2]], ["a"] * 300, [], ["x" * 200], [], ["r|s|t|"], -1)
    rows = [row, tuple("" if isinstance(v, str) else v for v in row)]
    table = records.rows_to_table(rows)
    assert tfrecord.encode_table(table) == tfrecord.encode_rows(rows)
    assert tfrecord.encode_table(records.rows_to_table([])) == tfrecord.encode_rows([]) == b""
