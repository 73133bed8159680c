"""Bad input: each case either fails fast with a message naming the file and position, or becomes
a counted reject with its reason; never a traceback, never a silent drop."""
import pytest

from tests.helpers import CATEGORIES
from sarchat.transforms import coco


def parse(images, annotations, categories=CATEGORIES):
    return coco.parse_coco({"images": images, "annotations": annotations, "categories": categories},
                           "ann.json", "test", "JPEGImages/test")


IMG = {"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}


def reasons(rejects):
    return sorted(r["reason"] for r in rejects)


def test_malformed_json_names_file_and_position():
    with pytest.raises(coco.InputError) as e:
        coco.load_json(b'{"images": [1, 2,, 3]}', "data/Annotations/test.json")
    assert "data/Annotations/test.json" in str(e.value) and "line 1 column 18" in str(e.value)


@pytest.mark.parametrize("key", ["images", "annotations", "categories"])
def test_missing_top_level_key(key):
    data = {"images": [IMG], "annotations": [], "categories": CATEGORIES}
    del data[key]
    with pytest.raises(coco.InputError, match=f"ann.json: missing required key '{key}'"):
        coco.check_structure(data, "ann.json")


def test_empty_split_is_unusable():
    with pytest.raises(coco.InputError, match="split is empty"):
        coco.check_structure({"images": [], "annotations": [], "categories": CATEGORIES}, "ann.json")


def test_duplicate_ids_keep_the_first():
    images, rejects = parse(
        [IMG, dict(IMG, file_name="b.jpg")],
        [{"id": 5, "image_id": 1, "category_id": 0, "bbox": [1, 1, 5, 5]},
         {"id": 5, "image_id": 1, "category_id": 0, "bbox": [10, 10, 5, 5]}],
        CATEGORIES + [{"id": 0, "name": "car"}])
    assert reasons(rejects) == ["duplicate_annotation_id", "duplicate_category_id", "duplicate_image_id"]
    assert images[0]["file_name"] == "a.jpg" and [b["bbox"] for b in images[0]["boxes"]] == [[1, 1, 5, 5]]


@pytest.mark.parametrize("bbox,reason", [
    ([1, 1, float("nan"), 5], "non_finite"),
    ([1, 1, 0, 5], "non_positive_size"),
    ([1, 1, 5, -2], "non_positive_size"),
    ([150, 1, 5, 5], "outside_image"),
])
def test_bad_boxes_are_rejected_with_reason(bbox, reason):
    images, rejects = parse([IMG], [{"id": 1, "image_id": 1, "category_id": 0, "bbox": [2, 2, 5, 5]},
                                    {"id": 2, "image_id": 1, "category_id": 0, "bbox": bbox}])
    assert reasons(rejects) == [reason]
    assert rejects[0]["record"] == "annotation 2" and rejects[0]["file"] == "ann.json" and rejects[0]["index"] == 1
    assert len(images[0]["boxes"]) == 1


def test_unknown_category_id_and_name():
    images, rejects = parse([IMG], [
        {"id": 1, "image_id": 1, "category_id": 42, "bbox": [2, 2, 5, 5]},
        {"id": 2, "image_id": 1, "category_id": 7, "bbox": [2, 2, 5, 5]},
        {"id": 3, "image_id": 1, "category_id": 1, "bbox": [2, 2, 5, 5]},
    ], CATEGORIES[:2] + [{"id": 7, "name": "submarine"}])
    assert reasons(rejects) == ["unknown_category", "unknown_category", "unknown_category_name"]
    assert [b["category"] for b in images[0]["boxes"]] == ["aircraft"]


def test_category_names_match_case_insensitively():
    images, rejects = parse([IMG], [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [2, 2, 5, 5]}],
                            [{"id": 3, "name": "  Harbor "}])
    assert not rejects and images[0]["boxes"][0]["category"] == "harbor"


def test_annotation_of_unknown_image():
    images, rejects = parse([IMG], [{"id": 1, "image_id": 1, "category_id": 0, "bbox": [2, 2, 5, 5]},
                                    {"id": 2, "image_id": 77, "category_id": 0, "bbox": [2, 2, 5, 5]}])
    assert reasons(rejects) == ["unknown_image"]


@pytest.mark.parametrize("name", ["/etc/passwd", "../../secret.jpg", "a/../../b.jpg", "C:\\x.jpg", "gs://b/x.jpg", "",
                                  "a.jpg\x00../../etc/passwd", "\x00"])
def test_unsafe_file_names_reject_the_image_and_its_boxes(name):
    images, rejects = parse([dict(IMG, file_name=name)], [{"id": 1, "image_id": 1, "category_id": 0, "bbox": [2, 2, 5, 5]}])
    assert images == [] and reasons(rejects) == ["image_rejected", "unsafe_file_name"]


def _image_tree(tmp_path):
    """ROOT/JPEGImages/test with a real image, a symlink to it, and symlinks that lead out of it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(b"secret")
    folder = tmp_path / "root" / "JPEGImages" / "test"
    folder.mkdir(parents=True)
    (folder / "real.jpg").write_bytes(b"img")
    (folder / "alias.jpg").symlink_to(folder / "real.jpg")
    (folder / "out.jpg").symlink_to(outside / "secret.jpg")
    (folder / "up.jpg").symlink_to("../../../outside/secret.jpg")
    (folder / "subdir").symlink_to(outside)
    return tmp_path / "root"


def test_symlinks_leaving_the_image_folder_reject_the_image_and_its_boxes(tmp_path):
    root = _image_tree(tmp_path)
    names = ["real.jpg", "alias.jpg", "out.jpg", "up.jpg", "subdir/secret.jpg", "missing.jpg"]
    imgs = [dict(IMG, id=i + 1, file_name=n) for i, n in enumerate(names)]
    anns = [{"id": i + 1, "image_id": i + 1, "category_id": 0, "bbox": [2, 2, 5, 5]} for i in range(len(names))]
    folder = coco.local_image_folder(str(root), "JPEGImages/test")
    images, rejects = coco.parse_coco({"images": imgs, "annotations": anns, "categories": CATEGORIES},
                                      "ann.json", "test", "JPEGImages/test", image_folder=folder)
    assert [im["file_name"] for im in images] == ["real.jpg", "alias.jpg", "missing.jpg"]
    outside = sorted(r["detail"] for r in rejects if r["reason"] == "file_name_outside_image_root")
    assert outside == ["out.jpg", "subdir/secret.jpg", "up.jpg"]
    assert reasons(rejects).count("image_rejected") == 3  # their boxes are counted too
    # without a local folder (object stores) nothing is checked on disk
    images, _ = coco.parse_coco({"images": imgs, "annotations": anns, "categories": CATEGORIES},
                                "ann.json", "test", "JPEGImages/test")
    assert len(images) == len(names)


def test_an_image_folder_that_is_itself_a_symlink_is_fine(tmp_path):
    real = tmp_path / "disk2" / "test"
    real.mkdir(parents=True)
    (real / "a.jpg").write_bytes(b"img")
    (tmp_path / "root" / "JPEGImages").mkdir(parents=True)
    (tmp_path / "root" / "JPEGImages" / "test").symlink_to(real)
    folder = coco.local_image_folder(str(tmp_path / "root"), "JPEGImages/test")
    assert not coco.escapes_folder(folder, "a.jpg")
    assert coco.local_image_folder("gs://bucket/root", "JPEGImages/test") is None


def test_safe_nested_file_name_is_normalised():
    assert coco.safe_relative_path("sub/./dir/a.jpg") == "sub/dir/a.jpg"


def test_crowd_and_ignore_are_skipped_and_counted():
    _, rejects = parse([IMG], [{"id": 1, "image_id": 1, "category_id": 0, "bbox": [2, 2, 5, 5], "iscrowd": 1},
                               {"id": 2, "image_id": 1, "category_id": 0, "bbox": [2, 2, 5, 5], "ignore": 1}])
    assert reasons(rejects) == ["crowd_or_ignore", "crowd_or_ignore", "image_without_valid_boxes"]


def test_malformed_records_never_crash():
    images, rejects = parse([IMG, "junk", {"id": "x"}, dict(IMG, id=2, width=0)],
                            ["junk", {"id": None}, {"id": 3, "image_id": 1, "category_id": 0, "bbox": "no"}])
    assert reasons(rejects) == ["bad_image_size", "image_without_valid_boxes", "malformed_annotation",
                                "malformed_annotation", "malformed_bbox", "malformed_image", "malformed_image"]
    assert images == []


def test_every_annotation_is_kept_or_rejected():
    anns = [{"id": i, "image_id": 1 + i % 3, "category_id": i % 8,
             "bbox": [i * 7 % 120, i * 3 % 90, (i % 5) * 4, 10 + i % 4]} for i in range(60)]
    imgs = [IMG, dict(IMG, id=2, file_name="b.jpg"), dict(IMG, id=3, file_name="../c.jpg")]
    images, rejects = parse(imgs, anns)
    kept = sum(len(im["boxes"]) for im in images)
    box_rejects = [r for r in rejects if r["record"].startswith("annotation")]
    assert kept + len(box_rejects) == len(anns)
    assert {r["record"] for r in box_rejects}.isdisjoint({f"annotation {b['ann_id']}" for im in images for b in im["boxes"]})


def test_escapes_folder_gives_the_same_answer_with_its_folders_resolved_once(tmp_path):
    """The one-pass cache of resolved folders (read_image_records) answers as realpath of each whole
    path does: links to folders and files inside and outside, nested, dangling, missing."""
    folder = tmp_path / "images"
    (folder / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "x.jpg").write_bytes(b"x")
    (folder / "a.jpg").write_bytes(b"a")
    (folder / "sub" / "b.jpg").write_bytes(b"b")
    (folder / "out_dir").symlink_to(tmp_path / "outside")
    (folder / "sub" / "out_file.jpg").symlink_to(tmp_path / "outside" / "x.jpg")
    (folder / "sub" / "in_file.jpg").symlink_to(folder / "a.jpg")
    (folder / "sub" / "deeper" / "up").symlink_to(folder)
    (folder / "sub" / "deeper" / "up_out").symlink_to(tmp_path)
    (folder / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    real = coco.local_image_folder(str(tmp_path), "images")
    names = ["a.jpg", "sub/b.jpg", "out_dir/x.jpg", "out_dir/none.jpg", "sub/out_file.jpg", "sub/in_file.jpg",
             "sub/deeper/up/a.jpg", "sub/deeper/up_out/outside/x.jpg", "sub/deeper/up/out_dir/x.jpg",
             "dangling.jpg", "missing/dir/c.jpg", "sub/missing.jpg", "."]
    cache = {}
    answers = [coco.escapes_folder(real, n, cache) for n in names]
    assert answers == [coco.escapes_folder(real, n) for n in names]
    assert answers == [False, False, True, True, True, False, False, True, True, True, False, False, False]
