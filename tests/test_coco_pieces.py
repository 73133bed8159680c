"""The read of a COCO file in pieces (issue 14 item 3): the launcher's pre-flight (coco.preflight:
structure, counts and byte ranges without a full parse), the per-piece and per-shard steps
(read_*_records, assemble) against the whole-file parse_coco, and `sarchat generate` end to end
with many small pieces against the whole-file read."""
import filecmp
import json
import os
import random

import numpy as np
import pytest

from sarchat.beam_pipelines import generate
from sarchat.transforms import coco
from sarchat.transforms.generate import pipeline
from tests.helpers import CATEGORIES, write_coco


def messy_dataset(n_images=40, seed=3):
    """Images and annotations with every kind of fault, spread so that the records of one check
    (an id and its duplicate, an annotation and its image) fall in different pieces and shards."""
    rng = random.Random(seed)
    images = [{"id": i, "file_name": f"img_{i}.jpg", "width": 100 + i, "height": 120} for i in range(1, n_images + 1)]
    images += [
        "junk", {"id": "7"},                                                   # malformed_image
        {"id": 5, "file_name": "again.jpg", "width": 10, "height": 10},        # duplicate of a good image
        {"id": 900, "file_name": "z.jpg", "width": 0, "height": 10},           # bad_image_size
        {"id": 900, "file_name": "y.jpg", "width": 10, "height": 10},          # duplicate of a bad image
        {"id": 901, "file_name": "../out.jpg", "width": 10, "height": 10},     # unsafe_file_name
        {"id": 902, "file_name": "lonely.jpg", "width": 50, "height": 50},     # no valid box
        {"id": 2**70, "file_name": "big.jpg", "width": 50, "height": 50},      # an id beyond 64 bits: malformed
    ]
    anns = []
    for k in range(4 * n_images):
        image_id = rng.randint(1, n_images)
        anns.append({"id": 1000 + k, "image_id": image_id, "category_id": rng.randrange(6),
                     "bbox": [rng.uniform(0, 40), rng.uniform(0, 40), rng.uniform(1, 30), rng.uniform(1, 30)]})
    anns += [
        "junk", {"id": None}, {"id": "x", "image_id": 1},                      # malformed_annotation
        {"id": 1003, "image_id": 2, "category_id": 0, "bbox": [1, 1, 2, 2]},   # duplicate id, other image
        {"id": 1000, "image_id": 900, "category_id": 0, "bbox": [1, 1, 2, 2]},  # duplicate id, bad image
        {"id": 50, "image_id": 3, "category_id": 0, "bbox": [1, 1, 2, 2], "iscrowd": 1},
        {"id": 50, "image_id": 3, "category_id": 0, "bbox": [1, 1, 2, 2]},     # duplicate of a crowd box
        {"id": 51, "image_id": 900.0, "category_id": 0, "bbox": [1, 1, 2, 2]},  # float id of a bad image
        {"id": 52, "image_id": True, "category_id": 0, "bbox": [1, 1, 2, 2]},   # True == 1, not an image id
        {"id": 53, "image_id": 1.5, "category_id": 0, "bbox": [1, 1, 2, 2]},
        {"id": 54, "image_id": [1], "category_id": 0, "bbox": [1, 1, 2, 2]},    # unhashable image_id
        {"id": 55, "image_id": 4040, "category_id": 0, "bbox": [1, 1, 2, 2]},   # unknown_image
        {"id": 56, "image_id": 4, "category_id": 99, "bbox": [1, 1, 2, 2]},     # unknown_category
        {"id": 57, "image_id": 4, "category_id": 0, "bbox": [1, 1, 0, 2]},      # non_positive_size
        {"id": 58, "image_id": 4, "category_id": 0, "bbox": [1, 1, float("nan"), 2]},
        {"id": 59, "image_id": 2**70, "category_id": 1, "bbox": [1, 1, 5, 5]},
        {"id": 2**70, "image_id": 6, "category_id": 1, "bbox": [1, 1, 5, 5]},
        {"id": 2**70, "image_id": 7, "category_id": 1, "bbox": [1, 1, 5, 5]},   # duplicate of a huge id
    ]
    categories = CATEGORIES + [{"id": 0, "name": "car"}, {"id": 40, "name": "submarine"}, "junk"]
    return images, anns, categories


def sharded_parse(images, anns, categories, num_shards, piece_size, seed=0):
    """What the pipeline does, without Beam: random pieces, records routed by their image's shard,
    duplicate annotation ids over all pieces, assemble per shard, the shards in shuffled order."""
    rng = random.Random(seed)
    cats, rejects = coco.read_categories(categories, "test", "ann.json")
    by_shard = {s: ([], []) for s in range(num_shards)}
    ids, indices = [], []
    for array, entries in (("images", images), ("annotations", anns)):
        first = 0
        while first < len(entries):
            piece = entries[first:first + rng.randint(1, piece_size)]
            if array == "images":
                records, more = coco.read_image_records(piece, first, "test", "ann.json")
                for r in records:
                    by_shard[pipeline.shard_of("test", r.image_id, num_shards)][0].append(r)
            else:
                records, more = coco.read_annotation_records(piece, first, "test", "ann.json")
                shards = pipeline.annotation_shards("test", [r.image_id for r in records], num_shards)
                for shard, r in zip(shards, records):
                    by_shard[shard][1].append(r)
                ids += [r.ann_id for r in records]
                indices += [r.index for r in records]
            rejects += more
            first += len(piece)
    duplicates = coco.duplicate_annotation_ids(np.array(ids, dtype=object), indices)
    kept = []
    for shard in rng.sample(range(num_shards), num_shards):
        image_records, ann_records = by_shard[shard]
        rng.shuffle(image_records)
        rng.shuffle(ann_records)
        shard_images, *groups = coco.assemble("test", "ann.json", "JPEGImages/test", cats, image_records,
                                              ann_records, duplicates)
        kept += shard_images
        rejects += [r for g in groups for r in g]
    return kept, rejects


def canonical(images, rejects):
    key = lambda r: json.dumps(r, sort_keys=True, default=str)  # noqa: E731
    return sorted(images, key=lambda im: im["image_id"]), sorted(rejects, key=key)


@pytest.mark.parametrize("num_shards,piece_size,seed", [(1, 1000, 0), (3, 5, 1), (7, 2, 2), (16, 1, 3)])
def test_pieces_and_shards_give_what_one_pass_gives(num_shards, piece_size, seed):
    images, anns, categories = messy_dataset(seed=seed)
    expected = coco.parse_coco({"images": images, "annotations": anns, "categories": categories},
                               "ann.json", "test", "JPEGImages/test")
    got = sharded_parse(images, anns, categories, num_shards, piece_size, seed)
    assert canonical(*got) == canonical(*expected)
    reasons = {r["reason"] for r in expected[1]}
    # the dataset exercises every cross-record check (else the equality above would prove little)
    assert {"duplicate_image_id", "duplicate_annotation_id", "image_rejected", "unknown_image",
            "image_without_valid_boxes", "crowd_or_ignore", "bad_image_size", "unknown_category"} <= reasons
    assert sum(len(im["boxes"]) for im in expected[0]) > 50


def test_records_cross_the_shuffle_as_plain_tuples_and_are_named_again(tmp_path):
    """Beam's coder pickles any object but a plain tuple one at a time: the read sends plain tuples,
    and the shard's side types them again (RECORD_TYPES) before assemble reads their fields."""
    from apache_beam.coders import coders

    images, anns, categories = messy_dataset(n_images=5)
    anns = [a for a in anns if not (isinstance(a, dict) and a.get("bbox") and a["bbox"][2] != a["bbox"][2])]  # no NaN
    path = tmp_path / "ann.json"
    path.write_bytes(_file(images, anns, categories))
    read = pipeline.ReadCocoPieceFn({"test": categories})
    outputs = [(array, batch) for tag, value in read.process(("test", str(path), "JPEGImages/test", 3, None, None))
               if tag == read.RECORDS for _, (array, batch) in [value] if array != pipeline.REJECTS_BATCH]
    batches = [batch for _, batch in outputs]
    expected = {"images": coco.read_image_records(images, 0, "test", str(path))[0],
                "annotations": coco.read_annotation_records(anns, 0, "test", str(path))[0]}
    assert batches and all(type(r) is tuple for batch in batches for r in batch)
    coder = coders.FastPrimitivesCoder()
    named = {array: [] for array in expected}
    for array, batch in outputs:
        named[array] += [pipeline.RECORD_TYPES[array](*r) for r in coder.decode(coder.encode(batch))]
    for array, records in expected.items():
        assert sorted(named[array], key=lambda r: r.index) == records
        assert all(type(r) is type(records[0]) for r in named[array])


def test_parse_coco_keeps_one_pass_semantics_on_the_tricky_ids():
    images, anns, categories = messy_dataset()
    _, rejects = coco.parse_coco({"images": images, "annotations": anns, "categories": categories},
                                 "ann.json", "test", "JPEGImages/test")
    by_record = {(r["record"], r["index"]): r["reason"] for r in rejects}
    n_img, n_ann = len(images), len(anns)
    at = lambda k: n_ann - 18 + k  # noqa: E731 (index of the k-th hand-made annotation)
    assert by_record[("image 5", n_img - 6)] == "duplicate_image_id"
    assert by_record[("image 900", n_img - 4)] == "duplicate_image_id"  # the first, bad, entry wins
    assert by_record[("annotation 1003", at(3))] == "duplicate_annotation_id"
    assert by_record[("annotation 1000", at(4))] == "duplicate_annotation_id"
    assert by_record[("annotation 50", at(5))] == "crowd_or_ignore"
    assert by_record[("annotation 50", at(6))] == "duplicate_annotation_id"  # a crowd box still claims its id
    assert by_record[("annotation 51", at(7))] == "image_rejected"  # 900.0 finds image 900, as a dict does
    assert by_record[("annotation 54", at(10))] == "unknown_image"  # an unhashable image_id: no crash
    assert by_record[(f"annotation {2**70}", at(17))] == "duplicate_annotation_id"
    assert by_record[(f"image {2**70}", n_img - 1)] == "malformed_image"  # the image_id column is int64
    assert by_record[("annotation 59", at(15))] == "unknown_image"  # as for any malformed image
    # rejects come in file order, categories, then images, then annotations, then empty images
    phases = [r["record"].split()[0] for r in rejects if r["reason"] != "image_without_valid_boxes"]
    assert phases == sorted(phases, key=["category", "image", "annotation"].index)


def test_duplicate_annotation_ids_names_the_first_entry_of_each_repeated_id():
    assert coco.duplicate_annotation_ids([5, 3, 5, 9, 3, 5], [10, 2, 4, 7, 1, 0]) == {5: 0, 3: 1}
    assert coco.duplicate_annotation_ids([1, 2, 3], [0, 1, 2]) == {}
    assert coco.duplicate_annotation_ids([], []) == {}
    big = 2**70
    assert coco.duplicate_annotation_ids(np.array([big, 1, big], dtype=object), [3, 1, 2]) == {big: 2}


def test_image_key_is_the_integer_a_dict_lookup_finds():
    assert [coco.image_key(v) for v in (3, True, 4.0, 4.5, "4", None, [4], float("nan"))] == \
        [3, 1, 4, None, None, None, None, None]


# --- the pre-flight ------------------------------------------------------------------------------

def _file(images, anns, categories=CATEGORIES, **extra):
    return json.dumps({"info": {"note": "a [tricky] {string}, with \"quotes\""}, **extra,
                       "images": images, "annotations": anns, "categories": categories}, indent=1).encode()


def test_preflight_pieces_cover_each_array_in_order():
    images, anns, categories = messy_dataset()
    anns = [a for a in anns if not (isinstance(a, dict) and a.get("bbox") and a["bbox"][2] != a["bbox"][2])]  # no NaN
    data = _file(images, anns, categories)
    index = coco.preflight(data, "ann.json", piece_bytes=300)
    assert (index["images"], index["annotations"], index["categories"]) == (len(images), len(anns), categories)
    for array, entries in (("images", images), ("annotations", anns)):
        pieces = [p for p in index["pieces"] if p["array"] == array]
        assert len(pieces) > 5
        assert [p["first"] for p in pieces] == list(np.cumsum([0] + [p["count"] for p in pieces])[:-1])
        assert sum(p["count"] for p in pieces) == len(entries)
        got = [e for p in pieces for e in coco.load_piece(data[p["start"]:p["end"]], "ann.json", p)]
        assert got == json.loads(data)[array]
    # one piece per array when the pieces are large
    assert [p["array"] for p in coco.preflight(data, "ann.json")["pieces"]] == ["images", "annotations"]


BAD_FILES = {
    "malformed": b'{"images": [1, 2,, 3], "annotations": [], "categories": []}',
    "truncated": b'{"images": [}',
    "bom": b'\xef\xbb\xbf{"images": [1], "annotations": [], "categories": [1]}',
    "not utf-8": b'{"images": [{"file_name": "\xff"}], "annotations": [], "categories": [1]}',
    "top-level array": b'[1, 2]',
    "missing key": b'{"images": [1], "categories": [1]}',
    "not a list": b'{"images": {}, "annotations": [], "categories": [1]}',
    "empty split": b'{"images": [], "annotations": [], "categories": [1]}',
    "no categories": b'{"images": [1], "annotations": [], "categories": []}',
    "trailing data": b'{"images": [1], "annotations": [], "categories": [1]} x',
    "control character": b'{"images": ["a\tb"], "annotations": [], "categories": [1]}',
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_preflight_refuses_what_the_whole_file_read_refuses_with_the_same_message(name):
    data = BAD_FILES[name]
    with pytest.raises(coco.InputError) as whole:
        coco.check_structure(coco.load_json(data, "Annotations/test.json"), "Annotations/test.json")
    with pytest.raises(coco.InputError) as pre:
        coco.preflight(data, "Annotations/test.json", piece_bytes=8)
    assert str(pre.value) == str(whole.value) and str(pre.value).startswith("Annotations/test.json: ")


def test_files_only_json_loads_accepts_are_read_whole():
    """NaN is JSON to Python's json (it writes NaN itself), not to msgspec: such a file is read
    whole, as before, so the NaN box is still a counted reject."""
    data = _file([{"id": 1, "file_name": "a.jpg", "width": 9, "height": 9}],
                 [{"id": 1, "image_id": 1, "category_id": 0, "bbox": [1, 1, float("nan"), 2]}])
    assert b"NaN" in data
    index = coco.preflight(data, "ann.json", piece_bytes=8)
    assert index["pieces"] is None and (index["images"], index["annotations"]) == (1, 1)
    assert index["categories"] == CATEGORIES


def test_a_lone_surrogate_refuses_the_file_with_one_message_naming_it():
    """A lone surrogate is no text (nothing can write it as UTF-8): the one decoding layer
    (transforms/decode.py) refuses the file, whichever path reads it (issue 19)."""
    data = _file([{"id": 1, "file_name": "a\ud800.jpg", "width": 9, "height": 9}], [])
    for pieces in (8, None):
        with pytest.raises(coco.InputError, match="ann.json.*lone UTF-16 surrogate"):
            coco.preflight(data, "ann.json", piece_bytes=pieces)


def test_a_compressed_file_or_one_the_fast_path_declines_is_read_whole(monkeypatch):
    data = _file([{"id": 1, "file_name": "a.jpg", "width": 9, "height": 9}], [])
    assert coco.preflight(data, "a.json", split_into_pieces=False)["pieces"] is None
    monkeypatch.setattr(coco, "_index", lambda data, piece_bytes: None)
    assert coco.preflight(data, "a.json")["pieces"] is None
    with pytest.raises(coco.InputError, match="a.json: malformed JSON at line 1 column 13"):
        coco.preflight(b'{"images": [}', "a.json")


def test_a_piece_that_changed_since_the_preflight_is_one_clear_error():
    piece = {"array": "annotations", "first": 10, "count": 2, "start": 0, "end": 9}
    assert coco.load_piece(b'{"a": 1},  {}', "ann.json", piece) == [{"a": 1}, {}]
    with pytest.raises(coco.InputError, match=r"ann.json: annotations entries 10..11: 1 entries .* changed"):
        coco.load_piece(b'{"a": 1}', "ann.json", piece)
    with pytest.raises(coco.InputError, match=r"ann.json: annotations entries 10..11 are not the JSON"):
        coco.load_piece(b'{"a": 1', "ann.json", piece)


# --- end to end -----------------------------------------------------------------------------------

def _tree(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)


def test_generate_in_many_pieces_equals_the_whole_file_read(tmp_path, monkeypatch):
    """Tiny pieces (dozens per split), read by two workers, give byte for byte the files of the
    whole-file read: dialogues, rejects, manifest (same counts, fingerprint and version)."""
    root = tmp_path / "data"
    for split, seed in (("test", 5), ("train", 6)):
        images, anns, categories = messy_dataset(n_images=60, seed=seed)
        anns = [a for a in anns if not (isinstance(a, dict) and a.get("bbox") and a["bbox"][2] != a["bbox"][2])]
        write_coco(str(root), split, images, anns, categories)
    argv = ["--input", str(root), "--formats", "parquet,swift", "--images-per-shard", "9", "--identify-variants", "2"]

    monkeypatch.setattr(coco, "PIECE_BYTES", 400)
    args = generate.build_parser().parse_args(argv + ["--output", str(tmp_path / "x")])
    splits = generate.plan_splits(args)
    assert all(len(s.pieces) > 10 for s in splits)
    assert generate.run(argv + ["--output", str(tmp_path / "pieces"), "--direct_num_workers=2",
                                "--direct_running_mode=multi_threading"]) == 0

    monkeypatch.setattr(coco, "_index", lambda data, piece_bytes: None)  # the whole-file read
    assert generate.plan_splits(args)[0].pieces is None
    assert generate.run(argv + ["--output", str(tmp_path / "whole")]) == 0

    a, b = tmp_path / "pieces", tmp_path / "whole"
    assert _tree(a) == _tree(b) and len(_tree(a)) > 20
    _, mismatch, errors = filecmp.cmpfiles(a, b, _tree(a), shallow=False)
    assert mismatch == [] and errors == []
    manifest = json.loads((a / "manifest.json").read_text())
    assert manifest["rejects"]["test"]["duplicate_annotation_id"] >= 3
    assert manifest["counts"]["train"]["boxes"] > 100


def test_annotation_shards_are_their_images_shards_and_0_for_an_id_naming_no_image():
    ids = [5, 5.0, True, 1, "5", None, [1], 7, 2 ** 70, 5, 1.5, 7]
    keys = [coco.image_key(i) for i in ids]
    assert pipeline.annotation_shards("test", ids, 4) == [0 if k is None else pipeline.shard_of("test", k, 4) for k in keys]
