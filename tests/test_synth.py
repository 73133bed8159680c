"""Tests of `sarchat synth`: layout, COCO validity, determinism, image content, category mix,
SARDet-scale annotations and the CLI entry point."""
import collections
import hashlib
import json
import os

import numpy as np
import pytest
from PIL import Image

from sarchat.beam_pipelines import cli, synth
from sarchat.transforms import box_match, geometry
from sarchat.synthetic import constants as C
from sarchat.synthetic import random_fields as F
from sarchat.synthetic import sar_targets as T
from sarchat.synthetic import sardet_synth as S
from sarchat.synthetic import scene_plan as P
from sarchat.synthetic import scene_render as R
from sarchat.transforms.categories import CATEGORIES

N_IMAGES = 48
SEED = "t1"


def _tree_digest(root):
    """{relative path: sha256} of every file under root."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "ds"
    rc = synth.run([str(root), "--images", str(N_IMAGES), "--seed", SEED, "--workers", "1", "--quiet"])
    assert rc == 0
    return root


def _load(root, split):
    with open(os.path.join(root, "Annotations", f"{split}.json")) as fh:
        return json.load(fh)


def _by_image(coco):
    anns = collections.defaultdict(list)
    for a in coco["annotations"]:
        anns[a["image_id"]].append(a)
    return anns


# ------------------------------------------------------------------------------- layout / COCO


def test_layout_and_coco_validity(dataset):
    assert sorted(os.listdir(dataset / "Annotations")) == ["test.json", "train.json"]
    n_total = 0
    for split in ("train", "test"):
        coco = _load(dataset, split)
        assert [c["id"] for c in coco["categories"]] == list(range(6))
        assert [c["name"] for c in coco["categories"]] == list(CATEGORIES)
        ids = [im["id"] for im in coco["images"]]
        assert len(set(ids)) == len(ids)
        names = [im["file_name"] for im in coco["images"]]
        assert len(set(names)) == len(names)
        assert sorted(os.listdir(dataset / "JPEGImages" / split)) == sorted(names)
        images = {im["id"]: im for im in coco["images"]}
        ann_ids = [a["id"] for a in coco["annotations"]]
        assert len(set(ann_ids)) == len(ann_ids)
        for a in coco["annotations"]:
            im = images[a["image_id"]]
            assert a["category_id"] in range(6)
            assert a["iscrowd"] == 0
            x, y, w, h = a["bbox"]
            assert w > 0 and h > 0
            assert 0 <= x and 0 <= y and x + w <= im["width"] and y + h <= im["height"]
            assert a["area"] == pytest.approx(w * h)
            assert geometry.invalid_box_reason(a["bbox"], im["width"], im["height"]) is None
        per_image = collections.Counter(a["image_id"] for a in coco["annotations"])
        assert all(1 <= per_image[i] <= 5 for i in images), "every image has 1..5 boxes"
        n_total += len(images)
    assert n_total == N_IMAGES
    n_test = len(_load(dataset, "test")["images"])
    assert C.MIN_TEST_IMAGES <= n_test <= 0.2 * N_IMAGES


def test_split_sizes():
    assert P.split_sizes(200, C.DEFAULT_TEST_FRACTION) == (176, 24)
    assert P.split_sizes(20, 0.1)[1] == 5  # at least a handful of test images
    assert P.split_sizes(3, 0.1) == (2, 1)
    assert P.split_sizes(10, 0.0) == (10, 0)


def test_boxes_do_not_overlap_much(dataset):
    for split in ("train", "test"):
        coco = _load(dataset, split)
        for anns in _by_image(coco).values():
            boxes = [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]] for a in anns]
            for i in range(len(boxes)):
                for j in range(i + 1, len(boxes)):
                    assert box_match.iou_one(boxes[i], boxes[j]) < 0.05


# ------------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes_any_worker_count(dataset, tmp_path):
    again = tmp_path / "again"
    assert synth.run([str(again), "--images", str(N_IMAGES), "--seed", SEED, "--workers", "2", "--quiet"]) == 0
    first, second = _tree_digest(dataset), _tree_digest(again)
    assert len(first) == N_IMAGES + 2
    assert first == second


def test_different_seed_differs(dataset, tmp_path):
    other = tmp_path / "other"
    S.write_synthetic_dataset(other, n_images=N_IMAGES, seed="another", workers=1)
    a, b = _tree_digest(dataset), _tree_digest(other)
    assert a["Annotations/train.json"] != b["Annotations/train.json"]
    same_images = [k for k in a if k.startswith("JPEGImages") and a[k] == b.get(k)]
    assert not same_images


def test_rng_is_hash_derived_not_python_hash():
    # the same (seed, parts) always give the same stream, and no part is ignored
    a = F.rng_for(7, "image", "train", 3).random(4)
    assert np.array_equal(a, F.rng_for(7, "image", "train", 3).random(4))
    assert not np.array_equal(a, F.rng_for(7, "image", "train", 4).random(4))
    assert not np.array_equal(a, F.rng_for("7x", "image", "train", 3).random(4))


def test_annotations_without_images_match_the_rendered_set(dataset):
    coco = S.synth_annotations("train", len(_load(dataset, "train")["images"]), SEED)
    assert coco == _load(dataset, "train")


# ------------------------------------------------------------------------------- image content


def test_image_sizes_and_formats_as_declared(dataset):
    seen_sizes, seen_formats = set(), collections.Counter()
    for split in ("train", "test"):
        for im in _load(dataset, split)["images"]:
            with Image.open(dataset / "JPEGImages" / split / im["file_name"]) as pic:
                assert pic.size == (im["width"], im["height"])
                assert pic.mode == "L"
                ext = im["file_name"].rsplit(".", 1)[1]
                assert pic.format == {"jpg": "JPEG", "png": "PNG"}[ext]
                seen_formats[pic.format] += 1
            assert im["width"] == im["height"] and im["width"] in (256, 512, 800)
            seen_sizes.add(im["width"])
    assert seen_sizes == {256, 512, 800}
    assert seen_formats["JPEG"] > seen_formats["PNG"] > 0


def _ca_cfar(gray, train=16, guard=6, alpha=12.0):
    """Cell-averaging CFAR on the (dB-scaled) 8-bit image, back in linear power."""
    power = 10.0 ** (gray.astype(np.float64) / 255.0 * 3.2)
    ii = np.zeros((power.shape[0] + 1, power.shape[1] + 1))
    ii[1:, 1:] = power.cumsum(0).cumsum(1)

    def window(r):
        h, w = power.shape
        y0, y1 = np.clip(np.arange(h) - r, 0, h), np.clip(np.arange(h) + r + 1, 0, h)
        x0, x1 = np.clip(np.arange(w) - r, 0, w), np.clip(np.arange(w) + r + 1, 0, w)
        total = ii[y1][:, x1] - ii[y0][:, x1] - ii[y1][:, x0] + ii[y0][:, x0]
        return total, (y1 - y0)[:, None] * (x1 - x0)[None, :]

    outer, n_outer = window(train)
    inner, n_inner = window(guard)
    clutter = (outer - inner) / np.maximum(n_outer - n_inner, 1)
    return power > alpha * clutter


def _shifted(box, width, height, rng):
    x, y, w, h = box
    return [float(rng.uniform(0, width - w)), float(rng.uniform(0, height - h)), w, h]


def test_boxes_hold_the_bright_targets(dataset):
    """A CA-CFAR detector finds the targets inside the boxes, and few detections fall outside.

    Control: the same boxes moved to random places find far fewer detections.
    """
    rng = np.random.default_rng(0)
    n = hits = control_hits = 0
    det_in = det_out = 0
    contrast_ok = brightest_ok = 0
    for split in ("train", "test"):
        coco = _load(dataset, split)
        anns = _by_image(coco)
        for im in coco["images"]:
            gray = np.asarray(Image.open(dataset / "JPEGImages" / split / im["file_name"]))
            det = _ca_cfar(gray)
            in_boxes = np.zeros(gray.shape, dtype=bool)
            for a in anns[im["id"]]:
                x, y, w, h = (int(v) for v in a["bbox"])
                in_boxes[y:y + h, x:x + w] = True
            background = gray[~in_boxes]
            for a in anns[im["id"]]:
                x, y, w, h = (int(v) for v in a["bbox"])
                inside = gray[y:y + h, x:x + w]
                n += 1
                hits += bool(det[y:y + h, x:x + w].any())
                # the brightest tenth of the box is well above the background median
                top = np.sort(inside, axis=None)[-max(1, inside.size // 10):]
                brightest_ok += top.mean() > np.median(background) + 40
                # locally the box is brighter than what surrounds it (the CFAR reference cells)
                m = max(6, max(w, h) // 2)
                ring = np.zeros(gray.shape, dtype=bool)
                ring[max(y - m, 0):y + h + m, max(x - m, 0):x + w + m] = True
                ring &= ~in_boxes
                contrast_ok += np.percentile(inside, 90) > np.percentile(gray[ring], 90) + 10
                sx, sy, sw, sh = (int(v) for v in _shifted(a["bbox"], im["width"], im["height"], rng))
                control_hits += bool(det[sy:sy + sh, sx:sx + sw].any())
            grown = np.zeros(gray.shape, dtype=bool)
            for a in anns[im["id"]]:
                x, y, w, h = (int(v) for v in a["bbox"])
                grown[max(y - 3, 0):y + h + 3, max(x - 3, 0):x + w + 3] = True
            det_in += int((det & grown).sum())
            det_out += int((det & ~grown).sum())
    assert hits / n >= 0.95, (hits, n)
    assert control_hits / n <= 0.35, (control_hits, n)
    assert det_in / (det_in + det_out) >= 0.8, (det_in, det_out)
    assert brightest_ok / n >= 0.95, (brightest_ok, n)
    assert contrast_ok / n >= 0.9, (contrast_ok, n)


def test_bbox_is_the_tight_extent_of_what_is_drawn():
    # an axis-aligned bar centred at (50.5, 40.5), half length 10, half width 3 covers pixel
    # columns 40..60 and rows 37..43
    target = {"prims": [T._rect(50.5, 40.5, 0.0, 10.0, 3.0, 1.0)], "points": np.zeros((0, 3))}
    (rows, cols), body, bbox = T.render_target(target, 100, 100)
    assert bbox == (40, 37, 60, 43)
    assert body[37 - rows.start, 40 - cols.start] > 0
    # a storage tank of radius 8 at (30, 30): a square box about 16 pixels wide
    tank = T.make_tank(np.random.default_rng(1), 30.0, 30.0, 8.0, 0.0, 1.0)
    _, _, (x0, y0, x1, y1) = T.render_target(tank, 64, 64)
    assert abs((x1 - x0) - (y1 - y0)) <= 1 and 14 <= x1 - x0 + 1 <= 18
    assert x0 <= 30 <= x1 and y0 <= 30 <= y1


def test_scene_backgrounds_look_like_sar():
    """Speckle: a sea-only scene has a dark median and grainy texture; land is brighter than sea."""
    img, anns = R.render_scene("bg", "train", 1, "sea", 256)
    in_boxes = np.zeros(img.shape, dtype=bool)
    for _, (x, y, w, h) in anns:
        in_boxes[y:y + h, x:x + w] = True
    sea = img[~in_boxes].astype(np.float64)
    assert np.median(sea) < 110
    # neighbouring pixels decorrelate (speckle), unlike a smooth cartoon
    assert np.mean(np.abs(np.diff(img.astype(np.float64), axis=1))) > 8
    land_img, _ = R.render_scene("bg", "train", 2, "land", 256)
    assert np.median(land_img) > np.median(sea) + 20


# ------------------------------------------------------------------------------- category mix


def test_category_mix_near_table1():
    coco = S.synth_annotations("train", 320, "mix")
    counts = collections.Counter(CATEGORIES[a["category_id"]] for a in coco["annotations"])
    total = sum(counts.values())
    share = {c: counts[c] / total for c in CATEGORIES}
    assert 0.38 <= share["ship"] <= 0.55
    assert 0.15 <= share["aircraft"] <= 0.30
    assert 0.02 <= share["car"] <= 0.09
    assert 0.07 <= share["tank"] <= 0.16
    assert 0.09 <= share["bridge"] <= 0.19
    assert counts["harbor"] >= 1 and share["harbor"] <= 0.05
    per_image = collections.Counter(a["image_id"] for a in coco["annotations"])
    dist = collections.Counter(per_image.values())
    assert (dist[1] + dist[2]) / len(coco["images"]) >= 0.6  # mostly 1-2 boxes
    cats_per_image = collections.defaultdict(set)
    for a in coco["annotations"]:
        cats_per_image[a["image_id"]].add(CATEGORIES[a["category_id"]])
    pairs = collections.Counter(tuple(sorted(s)) for s in cats_per_image.values() if len(s) > 1)
    assert pairs[("bridge", "ship")] and pairs[("harbor", "ship")]
    assert pairs[("aircraft", "car")] + pairs[("aircraft", "tank")] > 0
    # sizes: most boxes small, some medium, a handful large
    images = {im["id"]: im for im in coco["images"]}
    ratios = np.array([geometry.area_ratio(a["bbox"], images[a["image_id"]]["width"], images[a["image_id"]]["height"])
                       for a in coco["annotations"]])
    assert np.mean(ratios < 0.05) >= 0.8
    assert np.mean(ratios >= 0.01) >= 0.2  # the description task keeps a fair share
    assert np.any(ratios >= 0.05)


def test_default_set_has_a_harbor():
    coco = S.synth_annotations("train", P.split_sizes(C.DEFAULT_IMAGES, C.DEFAULT_TEST_FRACTION)[0], 0)
    assert any(a["category_id"] == CATEGORIES.index("harbor") for a in coco["annotations"])


# ------------------------------------------------------------------------------- SARDet scale


@pytest.mark.parametrize("split,n_images,n_boxes", [("test", 11613, 24023), ("train", 3000, 6301), ("val", 7, 7)])
def test_sardet_scale_counts_are_exact(split, n_images, n_boxes):
    coco = S.sardet_scale_annotations(split, n_images, n_boxes, seed=3)
    assert len(coco["images"]) == n_images
    assert len(coco["annotations"]) == n_boxes
    counts = np.bincount([a["category_id"] for a in coco["annotations"]], minlength=6)
    table = np.array(C.TABLE1_COUNTS.get(split, C.TABLE1_COUNTS["train"]), dtype=np.float64)
    expected = n_boxes * table / table.sum()
    assert np.all(np.abs(counts - expected) < 1.0 + 1e-9)
    images = {im["id"]: im for im in coco["images"]}
    per_image = collections.Counter(a["image_id"] for a in coco["annotations"])
    assert set(per_image) == set(images)  # at least one box per image
    for a in coco["annotations"]:
        im = images[a["image_id"]]
        assert geometry.invalid_box_reason(a["bbox"], im["width"], im["height"]) is None
        x, y, w, h = a["bbox"]
        assert x >= 0 and y >= 0 and x + w <= im["width"] and y + h <= im["height"]


def test_sardet_scale_realistic_shapes():
    coco = S.sardet_scale_annotations("test", 11613, 24023, seed=0)
    assert coco == S.sardet_scale_annotations("test", 11613, 24023, seed=0)
    assert coco != S.sardet_scale_annotations("test", 11613, 24023, seed=1)
    images = {im["id"]: im for im in coco["images"]}
    per_image = collections.Counter(a["image_id"] for a in coco["annotations"])
    assert max(per_image.values()) >= 10  # some images with many boxes
    assert len({(im["width"], im["height"]) for im in images.values()}) >= 3
    kept = set()
    shapes = collections.Counter()
    for a in coco["annotations"]:
        im = images[a["image_id"]]
        shapes[geometry.shape_word(geometry.aspect_ratio(a["bbox"]))] += 1
        if geometry.describe_image_ok(im["width"], im["height"]) and \
                geometry.describe_box_reason(a["bbox"], im["width"], im["height"]) is None:
            kept.add(a["image_id"])
    # the paper's description task covers about half of the images (Table 5)
    assert 0.35 <= len(kept) / len(images) <= 0.65
    n = sum(shapes.values())
    assert 0.4 <= shapes["roughly square"] / n <= 0.75
    assert shapes["wide"] / n >= 0.1 and shapes["tall"] / n >= 0.1


def test_sardet_scale_rejects_impossible_counts():
    with pytest.raises(ValueError):
        S.sardet_scale_annotations("train", 10, 5)


def test_write_annotations_only(tmp_path):
    splits = {s: S.sardet_scale_annotations(s, 50, 120, seed=0) for s in ("train", "test")}
    paths = S.write_annotations_only(tmp_path, splits)
    assert sorted(os.path.relpath(p, tmp_path) for p in paths) == [
        os.path.join("Annotations", "test.json"), os.path.join("Annotations", "train.json")]
    for split, coco in splits.items():
        assert _load(tmp_path, split) == coco
    assert not (tmp_path / "JPEGImages").exists()


# ------------------------------------------------------------------------------- CLI


def test_cli_sardet_scale(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(C.SARDET_SCALE, "train", (40, 90))
    monkeypatch.setitem(C.SARDET_SCALE, "test", (10, 21))
    assert synth.run(["--output", str(tmp_path), "--sardet-scale", "--seed", "5"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["splits"]["train"] == {"images": 40, "boxes": 90}
    train = _load(tmp_path, "train")
    assert len(train["images"]) == 40 and len(train["annotations"]) == 90
    assert len(_load(tmp_path, "test")["annotations"]) == 21


def test_cli_through_sarchat_main(tmp_path, capsys):
    from sarchat.beam_pipelines import cli

    assert cli.main(["synth", "--output", str(tmp_path / "d"), "--images", "6", "--seed", "x", "--workers", "1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["splits"]["train"]["images"] + summary["splits"]["test"]["images"] == 6
    assert (tmp_path / "d" / "Annotations" / "train.json").exists()


def test_cli_rejects_bad_arguments(tmp_path, capsys):
    assert cli.main(["synth", "--output", str(tmp_path), "--images", "0"]) == 2
    assert cli.main(["synth", "--output", str(tmp_path), "--test-fraction", "1.5"]) == 2
    assert cli.main(["synth"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("sarchat synth: error: ") for line in err), err
