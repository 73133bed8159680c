"""The generation pipeline end to end on temp dirs: outputs, rejects, determinism across runners."""
import glob
import json
import os

import pytest
from apache_beam.testing.util import assert_that, equal_to

from sarchat.beam_pipelines import generate
from sarchat.transforms.errors import UsageError
from tests.helpers import file_bytes, random_dataset, read_rows, run_generate, write_coco
from tests.tfrecord_reference import frame, read_records


def test_known_dataset_outputs_and_accounting(known_root, tmp_path):
    out = tmp_path / "out"

    def hook(manifest, rejects):
        reasons = rejects | "Reasons" >> __import__("apache_beam").Map(lambda r: r["reason"])
        assert_that(reasons, equal_to(["describe_small_area", "describe_small_area", "describe_image_too_small"]))

    manifest = run_generate(known_root, out, test=hook)
    rows = read_rows(out)
    assert len(rows) == 60 == manifest["counts"]["test"]["dialogues"]
    assert manifest["counts"]["test"]["by_task"]["identify"] == {"multi": 35, "single": 7}
    count = [r for r in rows if r["task"] == "count" and r["gt_categories"] == ["ship", "ship"]]
    assert count[0]["answer"] == "There are 2 instances. {<294><358><329><427>}{<61><448><122><503>}"
    assert count[0]["messages"][0] == {"role": "user", "content": "<image>\n" + count[0]["question"]}
    assert count[0]["image_path"] == "JPEGImages/test/harbor_scene.jpg"
    # every input box: 6 annotations, none invalid -> each has exactly 7 identify dialogues
    assert sum(1 for r in rows if r["task"] == "identify") == 6 * 7
    swift = os.path.join(out, "swift", "test", "refer_multi.jsonl")
    lines = [json.loads(x) for x in open(swift)]
    assert lines[0]["images"] == [os.path.join(str(known_root), "JPEGImages/test/harbor_scene.jpg")]
    assert lines[0]["messages"][1]["content"] == "{<294><358><329><427>} (bottom center){<61><448><122><503>} (bottom left)"
    listed = {f["path"] for f in manifest["files"]}
    on_disk = {os.path.relpath(p, out) for p in glob.glob(os.path.join(out, "**", "*"), recursive=True) if os.path.isfile(p)}
    assert on_disk - {"manifest.json"} == listed
    assert manifest["inputs"]["test"]["sha256"] and manifest["seed"] == 0 and manifest["config"]["identify_variants"] == 7


def test_identical_output_in_process_and_multi_processing(tmp_path):
    root = tmp_path / "data"
    images, anns = random_dataset(root)
    a, b = tmp_path / "a", tmp_path / "b"
    every_format = ("--formats", "parquet,tfrecord,swift,authors")
    ma = run_generate(root, a, "--images-per-shard", "10", *every_format)
    mb = run_generate(root, b, "--images-per-shard", "10", *every_format,
                      "--direct_num_workers=2", "--direct_running_mode=multi_processing")
    assert ma["num_shards"]["test"] == 4 and ma == mb
    assert read_rows(a) == read_rows(b)
    fa, fb = file_bytes(a), file_bytes(b)
    assert fa.keys() == fb.keys() and all(fa[k] == fb[k] for k in fa), "outputs differ between runners"
    assert os.path.join("authors", "SARChat_classify_identify_multi_test.json") in fa
    # every input box is a dialogue or a reject with a reason
    rejected = [json.loads(x) for x in open(a / "rejects" / "test.jsonl")]
    box_rejects = [r for r in rejected if r["record"].startswith("annotation") and r.get("task") != "describe"]
    identify = [r for r in read_rows(a) if r["task"] == "identify"]
    assert len(identify) / 7 + len(box_rejects) == len(anns)
    assert {r["reason"] for r in box_rejects} >= {"non_finite", "unknown_image"}


def test_seed_changes_output(tmp_path):
    root = tmp_path / "data"
    random_dataset(root, n_images=8)
    a = read_rows(run_generate(root, tmp_path / "a") and tmp_path / "a")
    b = read_rows(run_generate(root, tmp_path / "b", "--seed", "5") and tmp_path / "b")
    assert [r["id"] for r in a] == [r["id"] for r in b]
    assert [r["question"] for r in a] != [r["question"] for r in b]


def _varint(buf, pos):
    shift = value = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _fields(buf):
    """Minimal independent protobuf wire-format reader: [(field number, wire type, value)]."""
    pos, out = 0, []
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 2:
            n, pos = _varint(buf, pos)
            out.append((number, buf[pos:pos + n]))
            pos += n
        elif wire == 0:
            v, pos = _varint(buf, pos)
            out.append((number, v))
        else:
            raise AssertionError(f"unexpected wire type {wire}")
    return out


def decode_example(record):
    """tf.train.Example bytes -> {name: list of bytes or ints}, without protobuf or TensorFlow."""
    (features,) = [v for n, v in _fields(record) if n == 1]
    result = {}
    for n, entry in _fields(features):
        parts = dict(_fields(entry))
        name = parts[1].decode()
        kind = _fields(parts[2])
        values = []
        for list_field, lst in kind:
            for _, v in _fields(lst):
                if list_field == 1:
                    values.append(v.decode())
                else:  # packed int64
                    pos = 0
                    while pos < len(v):
                        x, pos = _varint(v, pos)
                        values.append(x)
        result[name] = values
    return result


def test_tfrecord_matches_parquet(known_root, tmp_path):
    out = tmp_path / "out"
    run_generate(known_root, out, "--formats", "parquet,tfrecord")
    rows = {r["id"]: r for r in read_rows(out)}
    (path,) = glob.glob(os.path.join(out, "tfrecord", "test", "*.tfrecord"))
    examples = [decode_example(r) for r in read_records(open(path, "rb").read())]
    assert len(examples) == len(rows)
    for ex in examples:
        row = rows[ex["id"][0]]
        assert ex["answer"] == [row["answer"]] and ex["question"] == [row["question"]]
        assert ex["image_id"] == [row["image_id"]] and ex["width"] == [row["width"]]
        assert ex["gt_boxes"] == [c for box in row["gt_boxes"] for c in box]
        assert ex["gt_categories"] == row["gt_categories"] and ex["gt_relations"] == row["gt_relations"]
        assert ex["messages_content"] == [m["content"] for m in row["messages"]]
        assert ex["subset"] == ([] if row["subset"] is None else [row["subset"]])


def test_tfrecord_gzip_holds_the_same_records(known_root, tmp_path):
    import gzip
    plain, packed = tmp_path / "plain", tmp_path / "gz"
    run_generate(known_root, plain, "--formats", "tfrecord")
    manifest = run_generate(known_root, packed, "--formats", "tfrecord", "--tfrecord-compression", "gzip")
    (path,) = glob.glob(os.path.join(packed, "tfrecord", "test", "*.tfrecord.gz"))
    (plain_path,) = glob.glob(os.path.join(plain, "tfrecord", "test", "*.tfrecord"))
    data = gzip.decompress(open(path, "rb").read())
    assert data == open(plain_path, "rb").read() and list(read_records(data))
    listed = {f["path"]: f["bytes"] for f in manifest["files"]}
    assert listed[os.path.relpath(path, packed)] == os.path.getsize(path)
    assert manifest["config"]["tfrecord_compression"] == "gzip"
    assert manifest["dataset_version"] != json.load(open(plain / "manifest.json"))["dataset_version"]


def test_tfrecord_crc_is_checked():
    data = bytearray(frame(b"hello"))
    data[13] ^= 1
    with pytest.raises(ValueError, match="CRC"):
        list(read_records(bytes(data)))


def test_unusable_input_fails_fast_with_clear_message(tmp_path, capsys):
    root = tmp_path / "data"
    (root / "Annotations").mkdir(parents=True)
    (root / "Annotations" / "test.json").write_text('{"images": [}')
    # generate raises UsageError (exit 2); the `sarchat` command prints it as one line (tests/test_bad_input.py)
    with pytest.raises(UsageError, match="Annotations/test.json: malformed JSON at line 1 column 13"):
        generate.run(["--input", str(root), "--output", str(tmp_path / "o"), "--splits", "test"])
    with pytest.raises(UsageError, match="annotation file of split 'val' not found"):
        generate.run(["--input", str(root), "--output", str(tmp_path / "o"), "--splits", "val"])
    write_coco(str(root), "test", [], [])
    with pytest.raises(UsageError, match="split is empty"):
        generate.run(["--input", str(root), "--output", str(tmp_path / "o"), "--splits", "test"])
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_images_leaving_the_image_root_are_written_out_rejects(tmp_path):
    root = tmp_path / "data"
    folder = root / "JPEGImages" / "test"
    folder.mkdir(parents=True)
    (tmp_path / "secret.jpg").write_bytes(b"not an image of the dataset")
    (folder / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    images = [{"id": 1, "file_name": "ok.jpg", "width": 100, "height": 100},
              {"id": 2, "file_name": "link.jpg", "width": 100, "height": 100},
              {"id": 3, "file_name": "a.jpg\x00../../secret.jpg", "width": 100, "height": 100}]
    anns = [{"id": i, "image_id": i, "category_id": 0, "bbox": [10, 10, 20, 20]} for i in (1, 2, 3)]
    write_coco(str(root), "test", images, anns)
    out = tmp_path / "out"
    manifest = run_generate(root, out, "--formats", "parquet")
    assert manifest["rejects"]["test"] == {"file_name_outside_image_root": 1, "image_rejected": 2,
                                           "unsafe_file_name": 1}
    rejected = [json.loads(x) for x in open(out / "rejects" / "test.jsonl")]
    assert {(r["record"], r["reason"]) for r in rejected} >= {("image 2", "file_name_outside_image_root"),
                                                             ("image 3", "unsafe_file_name")}
    assert {r["image_id"] for r in read_rows(out)} == {1}


def test_gzipped_annotations_give_the_same_rows(known_root, tmp_path):
    """--annotations test=...json.gz: the launcher's pre-flight reads it decompressed, as the
    pipeline does (it used to refuse it as 'not UTF-8 text')."""
    import gzip

    plain = known_root / "Annotations" / "test.json"
    packed = tmp_path / "test.json.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    run_generate(known_root, tmp_path / "a", "--formats", "parquet")
    run_generate(known_root, tmp_path / "b", "--formats", "parquet", "--annotations", f"test={packed}")
    assert read_rows(tmp_path / "a") == read_rows(tmp_path / "b")
