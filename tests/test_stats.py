"""`sarchat stats`: pure statistics, then the pipeline end to end checked against independent counts."""
import collections
import glob
import hashlib
import json
import math
import os
import random

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.util import assert_that, equal_to

from sarchat.beam_pipelines import cli, generate
from sarchat.beam_pipelines import stats as stats_pipeline
from tests.helpers import write_coco
from sarchat.transforms import geometry
from sarchat.transforms.stats import dataset_stats as S
from sarchat.report import stats_report as stats_render

CATS = ["ship", "aircraft", "car", "tank", "bridge", "harbor"]


# --- fixtures -------------------------------------------------------------------------------------

def varied_dataset(root, split, n_images, seed):
    """COCO split with float boxes of widely varying aspect ratios, several image sizes and some bad records."""
    rnd = random.Random(seed)
    images, anns = [], []
    for i in range(n_images):
        W, H = rnd.choice([(256, 256), (512, 512), (800, 800), (640, 480), (300, 500)])
        images.append({"id": 10 * i + 7, "file_name": f"{split}_{i}.png", "width": W, "height": H})
        for _ in range(rnd.randint(1, 5)):
            ar = math.exp(rnd.uniform(-2.2, 2.2))                   # h / w
            area = W * H * math.exp(rnd.uniform(-9, -1.2))
            w = math.sqrt(area / ar)
            h = w * ar
            w, h = min(w, W * 0.9), min(h, H * 0.9)
            x, y = rnd.uniform(-5, W - w), rnd.uniform(0, H - h)
            anns.append({"id": len(anns) + 1, "image_id": 10 * i + 7, "category_id": rnd.randrange(6),
                         "bbox": [round(x, 2), round(y, 2), round(w, 3), round(h, 3)]})
    # exact bucket boundaries: h/w = 0.67 and 1.5, w/h = 1.5
    anns.append({"id": len(anns) + 1, "image_id": 7, "category_id": 0, "bbox": [1.0, 1.0, 100.0, 67.0]})
    anns.append({"id": len(anns) + 1, "image_id": 7, "category_id": 4, "bbox": [1.0, 1.0, 40.0, 60.0]})
    anns.append({"id": len(anns) + 1, "image_id": 7, "category_id": 1, "bbox": [1.0, 1.0, 60.0, 40.0]})
    # records that must be rejected
    anns.append({"id": len(anns) + 1, "image_id": 7, "category_id": 0, "bbox": [1, 1, float("nan"), 4]})
    anns.append({"id": len(anns) + 1, "image_id": 7, "category_id": 0, "bbox": [1, 1, 0, 4]})
    anns.append({"id": len(anns) + 1, "image_id": 99999, "category_id": 0, "bbox": [1, 1, 4, 4]})
    anns.append({"id": len(anns) + 1, "image_id": 7, "category_id": 0, "bbox": [5000, 1, 4, 4]})
    write_coco(str(root), split, images, anns)
    return images, anns


def valid_boxes(images, anns):
    """Independent filter for the fixture's bad records -> [(category, x, y, w, h, W, H, image id)]."""
    by_id = {im["id"]: im for im in images}
    out = []
    for a in anns:
        im = by_id.get(a["image_id"])
        x, y, w, h = a["bbox"]
        if im is None or not all(math.isfinite(v) for v in a["bbox"]) or w <= 0 or h <= 0:
            continue
        if x >= im["width"] or y >= im["height"] or x + w <= 0 or y + h <= 0:
            continue
        out.append((CATS[a["category_id"]], x, y, w, h, im["width"], im["height"], im["id"]))
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A dataset root (train + test) and its generated corpus."""
    base = tmp_path_factory.mktemp("stats")
    root = base / "data"
    data = {"train": varied_dataset(root, "train", 60, 1), "test": varied_dataset(root, "test", 25, 2)}
    out = base / "gen"
    assert generate.run(["--input", str(root), "--output", str(out), "--splits", "train,test",
                         "--formats", "parquet", "--images-per-shard", "20"]) == 0
    return {"base": base, "root": root, "gen": out, "data": data}


def run_stats(inp, out, *extra, test=None):
    assert stats_pipeline.run(["--dataset", str(inp), "--output", str(out), *extra], test=test) == 0
    with open(os.path.join(out, "stats.json")) as f:
        return json.load(f)


# --- pure functions -------------------------------------------------------------------------------

def test_exact_sum_is_correctly_rounded_and_order_free():
    rnd = np.random.default_rng(5)
    values = np.concatenate([rnd.normal(0, 1, 500) * 10.0 ** rnd.integers(-300, 300, 500), [1e16, 1.0, -1e16]])
    whole = S.ExactSum().add_array(values)
    assert float(whole.fraction()) == math.fsum(values.tolist())
    parts = [S.ExactSum().add_array(p) for p in np.array_split(rnd.permutation(values), 7)]
    merged = S.ExactSum()
    for p in reversed(parts):
        merged.merge(p)
    assert merged.total == whole.total
    with pytest.raises(ValueError):
        S.ExactSum().add_array([1.0, float("inf")])


def test_quantile_sketch_exact_mode_matches_numpy():
    v = np.exp(np.random.default_rng(1).normal(0.1, 0.6, 3001))
    sk = S.QuantileSketch(exact_cap=5000)
    for part in np.array_split(v, 9):
        sk.add_array(part)
    assert sk.exact
    assert sk.quantiles([0.25, 0.5, 0.75]) == pytest.approx(np.quantile(v, [0.25, 0.5, 0.75]), rel=1e-15)
    assert sk.mean() == pytest.approx(v.mean(), rel=1e-13)
    assert sk.std() == pytest.approx(v.std(), rel=1e-12)
    assert (sk.min, sk.max, sk.n) == (v.min(), v.max(), v.size)


def test_quantile_sketch_histogram_mode_error_bound_and_merge_order():
    rnd = np.random.default_rng(2)
    v = np.exp(rnd.normal(0.05, 0.8, 20000))
    parts = np.array_split(v, 13)
    a = S.QuantileSketch(exact_cap=100)
    for p in parts:
        a.add_array(p)
    b = S.QuantileSketch(exact_cap=100)
    for p in reversed(parts):
        b.merge(S.QuantileSketch(exact_cap=100).add_array(p))
    assert not a.exact and a.summary() == b.summary()
    qs = [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99]
    got, want = np.array(a.quantiles(qs)), np.quantile(v, qs)
    assert np.all(np.abs(got - want) / want <= S.SKETCH_MAX_REL_ERROR * (1 + 1e-9))
    assert "log-histogram" in a.summary()["quantile_method"]
    assert a.std() == pytest.approx(v.std(), rel=1e-12)


def _features(w, h, size=512.0):
    """box_feature_arrays of boxes w x h (lists) in a size x size image."""
    n = len(w)
    return S.box_feature_arrays(np.array(w, float), np.array(h, float), np.full(n, size), np.full(n, size),
                                np.zeros((n, 4)))


def test_ar_buckets_boundaries():
    ar = [0.5, 0.67, 0.6700001, 1.5, 1.5000001, S.AR_EDGES[0] / 2, S.AR_EDGES[-1] * 2]
    f = _features([1.0] * len(ar), ar)
    assert f["ar_bucket"][:5].tolist() == [0, 0, 1, 1, 2]
    assert f["ar_hist"][5:].tolist() == [0, len(S.AR_EDGES)]     # underflow, overflow
    f = _features([100, 40, 60], [67, 60, 40])
    assert [S.AR_BUCKETS[i] for i in f["ar_bucket"][:2]] == ["AR<=0.67", "0.67<AR<=1.5"]
    assert S.SHAPE_ORDER[f["shape"][2]] == "roughly square"   # w/h = 1.5 is not > 1.5


def _box_features(bbox, width, height):
    """Scalar reference of every per-box statistic for one COCO [x, y, w, h] box in a W x H image."""
    x, y, w, h = (float(v) for v in bbox)
    ar = h / w
    r = geometry.area_ratio(bbox, width, height)
    return {
        "aspect_ratio": ar,                                   # paper Eq. 2: h / w
        "ar_bucket": S.AR_BUCKETS[0 if ar <= 0.67 else 1 if ar <= 1.5 else 2],
        "shape": geometry.shape_word(geometry.aspect_ratio(bbox)),   # identify rule: w / h
        "area_ratio": r,
        "identify_size": geometry.identify_size(r),
        "describe_size": geometry.describe_size(r),
        "cell": geometry.grid_cell(geometry.xyxy(bbox, width, height), width, height),
    }


def test_vectorised_box_features_match_scalar_reference():
    rnd = random.Random(4)
    rows = []
    for _ in range(2000):
        W, H = rnd.choice([(256, 256), (800, 600), (333, 517)])
        w, h = rnd.choice([rnd.uniform(0.5, W), 60.0, 40.0, 100.0]), rnd.choice([rnd.uniform(0.5, H), 40.0, 67.0, 150.0])
        rows.append((rnd.uniform(-20, W - 1), rnd.uniform(-20, H - 1), w, h, W, H))
    x, y, w, h, W, H = (np.array(c, dtype=float) for c in zip(*rows))
    f = S.box_feature_arrays(w, h, W, H, geometry.xyxy_array(x, y, w, h, W, H))
    for i, (bx, by, bw, bh, iw, ih) in enumerate(rows):
        ref = _box_features([bx, by, bw, bh], int(iw), int(ih))
        assert f["aspect_ratio"][i] == ref["aspect_ratio"] and f["area_ratio"][i] == ref["area_ratio"]
        assert S.SHAPE_ORDER[f["shape"][i]] == ref["shape"]
        assert S.AR_BUCKETS[f["ar_bucket"][i]] == ref["ar_bucket"]
        assert S.IDENTIFY_SIZE_ORDER[f["identify_size"][i]] == ref["identify_size"]
        assert S.DESCRIBE_SIZE_ORDER[f["describe_size"][i]] == ref["describe_size"]
        assert S.CELL_ORDER[f["cell"][i]] == ref["cell"]


def test_box_stats_merge_equals_single_pass(tmp_path):
    images, anns = varied_dataset(tmp_path, "test", 40, 9)
    from sarchat.transforms import coco

    parsed, _ = coco.parse_coco(json.load(open(tmp_path / "Annotations" / "test.json")), "t", "test", "")
    whole = S.BoxStats(exact_cap=50).add_chunk(S.chunk_from_images(parsed))
    parts = [S.BoxStats(exact_cap=50).add_chunk(S.chunk_from_images(parsed[i:i + 7])) for i in range(0, len(parsed), 7)]
    merged = S.BoxStats(exact_cap=50)
    for p in reversed(parts):
        merged.merge(p)
    assert whole.summary() == merged.summary()
    assert whole.summary()["boxes"] == len(valid_boxes(images, anns))


def test_word_count_and_dialogue_features():
    row = {"split": "test", "task": "grounding", "subset": "multi", "width": 9, "height": 9,
           "answer": "  There are 2 instances. {<1><2><3><4>}\n", "question": "[grounding] where?", "template_id": "g3",
           "gt_boxes": [[1, 2, 3, 4]] * 2, "gt_categories": ["ship"] * 2, "gt_shapes": [], "gt_sizes": [],
           "gt_cells": ["top left"] * 2, "gt_relations": ["ship|near|harbor|above", "ship|far from|car|"]}
    d = S.DialogueStats().add_table(pa.Table.from_pylist([row])).summary()
    g = d["tasks"]["grounding"]
    assert (g["answer_words_mean"], g["question_words_mean"], g["boxes_mean"]) == (5, 2, 2)
    assert {w: v["count"] for w, v in d["grounding_relations"].items()} == {"near": 1, "far from": 1}
    assert {w: v["count"] for w, v in d["grounding_directions"].items()} == {"above": 1, "(same centre)": 1}
    assert d["identify_cells"] == {}        # cells are counted for identify only


# --- the pipeline ---------------------------------------------------------------------------------

def _expected_box_stats(images, anns):
    boxes = valid_boxes(images, anns)
    cats = collections.Counter(b[0] for b in boxes)
    w = np.array([b[3] for b in boxes])
    h = np.array([b[4] for b in boxes])
    ar = h / w
    return boxes, cats, ar, w / h


def test_dataset_root_stats_match_independent_counts(corpus, tmp_path):
    doc = run_stats(corpus["root"], tmp_path / "s", "--plots", "none")
    assert doc["input"]["kind"] == "dataset" and doc["splits"] == ["train", "test"]
    for split, (images, anns) in corpus["data"].items():
        got = doc["boxes"][split]
        boxes, cats, ar, wh = _expected_box_stats(images, anns)
        assert got["boxes"] == len(boxes)
        assert {c: v["count"] for c, v in got["categories"].items()} == {c: cats.get(c, 0) for c in CATS}
        assert sum(v["percent"] for v in got["categories"].values()) == pytest.approx(100, abs=1e-3)
        a = got["aspect_ratio"]["all"]
        assert a["count"] == ar.size and a["quantile_method"] == "exact"
        assert a["mean"] == pytest.approx(ar.mean(), abs=1e-6)
        assert a["median"] == pytest.approx(np.median(ar), abs=1e-6)
        assert a["std"] == pytest.approx(ar.std(), abs=1e-6)
        buckets = [int((ar <= 0.67).sum()), int(((ar > 0.67) & (ar <= 1.5)).sum()), int((ar > 1.5).sum())]
        assert [a["buckets"][b]["count"] for b in S.AR_BUCKETS] == buckets
        shapes = [int((wh > 1.5).sum()), int(((wh >= 0.67) & (wh <= 1.5)).sum()), int((wh < 0.67).sum())]
        assert [got["shapes"]["all"][s]["count"] for s in S.SHAPE_ORDER] == shapes
        for cat in CATS:
            sel = np.array([b[0] == cat for b in boxes])
            if sel.any():
                c = got["aspect_ratio"]["by_category"][cat]
                assert c["count"] == sel.sum() and c["median"] == pytest.approx(np.median(ar[sel]), abs=1e-6)
                assert c["buckets"]["AR>1.5"]["count"] == int((ar[sel] > 1.5).sum())
        with_boxes = {b[7] for b in boxes}
        sizes = collections.Counter(f"{im['width']}x{im['height']}" for im in images if im["id"] in with_boxes)
        assert got["images"] == len(with_boxes) and got["image_sizes"] == dict(sizes)
        per_image = collections.Counter(collections.Counter(b[7] for b in boxes).values())
        assert got["boxes_per_image"] == {str(k): v for k, v in per_image.items()}
        assert sum(got["ar_histogram"]["all"]) == len(boxes) == sum(v["count"] for v in got["cells"].values())
        r = np.array([b[3] * b[4] / (b[5] * b[6]) for b in boxes])
        assert got["identify_sizes"]["very small"]["count"] == int((r < 0.03).sum())
        assert got["area_ratio"]["median"] == pytest.approx(np.median(r), abs=1e-8)
        assert doc["rejects"][split] == {"non_finite": 1, "non_positive_size": 1, "outside_image": 1, "unknown_image": 1}


def read_parquet(out, split):
    return pq.read_table(sorted(glob.glob(os.path.join(out, "parquet", split, "*.parquet")))).to_pylist()


def test_generated_corpus_stats_match_independent_counts(corpus, tmp_path):
    out = tmp_path / "s"

    def hook(doc):
        tasks = doc | "Tasks" >> beam.Map(lambda d: sorted(d["dialogues"]["test"]["tasks"]))
        assert_that(tasks, equal_to([sorted(["classify", "describe", "count", "grounding", "identify", "refer"])]))

    doc = run_stats(corpus["gen"], out, test=hook)
    assert doc["input"]["kind"] == "generated" and doc["input"]["box_source"] == "annotations"
    for split, (images, anns) in corpus["data"].items():
        rows = read_parquet(corpus["gen"], split)
        d = doc["dialogues"][split]
        assert d["dialogues"] == len(rows)
        by_task = collections.Counter(r["task"] for r in rows)
        by_subset = collections.Counter((r["task"], r["subset"]) for r in rows if r["subset"])
        assert {t: v["count"] for t, v in d["tasks"].items()} == dict(by_task)
        assert {(t, s): v["count"] for t, e in d["tasks"].items() for s, v in e.get("subsets", {}).items()} == dict(by_subset)
        for t, e in d["tasks"].items():
            assert e["percent"] == pytest.approx(100.0 * by_task[t] / len(rows), abs=1e-4)
            words = [len(r["answer"].split()) for r in rows if r["task"] == t]
            assert e["answer_words_mean"] == pytest.approx(np.mean(words), abs=1e-3)
            assert e["templates_used"] == len({r["template_id"] for r in rows if r["task"] == t})
        shapes = collections.Counter(s for r in rows if r["task"] == "identify" for s in r["gt_shapes"])
        assert {k: v["count"] for k, v in d["identify_shapes"].items()} == dict(shapes)
        rel = collections.Counter(x.split("|")[1] for r in rows for x in r["gt_relations"])
        assert {k: v["count"] for k, v in d["grounding_relations"].items()} == dict(rel)
        # box level from the source annotations, as for the dataset root
        boxes, cats, ar, _ = _expected_box_stats(images, anns)
        assert doc["boxes"][split]["aspect_ratio"]["all"]["median"] == pytest.approx(np.median(ar), abs=1e-6)
    # outputs: json, markdown with the paper's numbers beside ours, plots
    md = (out / "stats.md").read_text()
    assert "93,373 (46.98%)" in md and "*paper*, Table 5" in md and "1,423,548" in md
    assert f"{doc['dialogues']['train']['tasks']['identify']['count']:,}" in md
    pngs = sorted(os.listdir(out / "plots"))
    assert pngs == sorted(f"{n}.png" for n in stats_render.PLOT_NAMES)
    assert all((out / "plots" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert "](plots/tasks.png)" in md


def test_grounding_box_source_and_multi_processing_determinism(corpus, tmp_path):
    a = run_stats(corpus["gen"], tmp_path / "a", "--box-source", "gt", "--plots", "none")
    b = run_stats(corpus["gen"], tmp_path / "b", "--box-source", "gt", "--plots", "none", "--exact-cap", "50",
                  "--direct_num_workers=2", "--direct_running_mode=multi_processing")
    run_stats(corpus["gen"], tmp_path / "c", "--box-source", "gt", "--plots", "none", "--exact-cap", "50")
    assert (tmp_path / "b" / "stats.json").read_bytes() == (tmp_path / "c" / "stats.json").read_bytes()
    assert a["input"]["box_source"] == "gt_boxes" and "approximate" in a["methods"]["boxes"]
    assert b["boxes"]["train"]["aspect_ratio"]["all"]["quantile_method"].startswith("log-histogram")
    assert a["dialogues"] == b["dialogues"]
    for split, (images, anns) in corpus["data"].items():
        # integer grounding boxes, recomputed here from the Parquet rows
        g = [r for r in read_parquet(corpus["gen"], split) if r["task"] == "grounding"]
        bx = np.array([bb for r in g for bb in r["gt_boxes"]], dtype=float)
        w, h = bx[:, 2] - bx[:, 0], bx[:, 3] - bx[:, 1]
        ok = (w > 0) & (h > 0)
        ar = h[ok] / w[ok]
        got = a["boxes"][split]
        assert got["degenerate_boxes"] == int((~ok).sum())
        assert got["aspect_ratio"]["all"]["median"] == pytest.approx(np.median(ar), abs=1e-6)
        assert got["aspect_ratio"]["all"]["mean"] == pytest.approx(ar.mean(), abs=1e-6)
        hist_median = b["boxes"][split]["aspect_ratio"]["all"]["median"]
        assert abs(hist_median - np.median(ar)) <= np.median(ar) * S.SKETCH_MAX_REL_ERROR + 1e-6
        cats = np.array([c for r in g for c in r["gt_categories"]])[ok]
        assert {c: v["count"] for c, v in got["categories"].items()} == {c: int((cats == c).sum()) for c in CATS}
        assert got["images"] == len(g)


def test_changed_annotations_fall_back_to_grounding_boxes(corpus, tmp_path, capsys):
    import shutil

    gen = tmp_path / "gen"
    shutil.copytree(corpus["gen"], gen)
    manifest = json.loads((gen / "manifest.json").read_text())
    missing = tmp_path / "gone.json"
    for split in manifest["inputs"]:
        manifest["inputs"][split]["path"] = str(missing)
    (gen / "manifest.json").write_text(json.dumps(manifest))
    doc = run_stats(gen, tmp_path / "s", "--plots", "none", "--splits", "test")
    assert doc["splits"] == ["test"] and doc["input"]["box_source"] == "gt_boxes"
    assert any("not found" in n for n in doc["input"]["notes"])
    assert cli.main(["stats", *["--dataset", str(gen), "--output", str(tmp_path / "t"), "--box-source", "annotations"]]) == 1
    assert "sarchat stats: error: --box-source annotations: " in capsys.readouterr().err


def test_bad_inputs_fail_fast(tmp_path, capsys):
    out = tmp_path.parent / (tmp_path.name + "-stats")  # beside the inputs: outputs may not overlap them
    assert cli.main(["stats", *["--dataset", str(tmp_path), "--output", str(out)]]) == 1
    assert "sarchat stats: error: " in capsys.readouterr().err
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "test.json").write_text('{"images": [}')
    assert cli.main(["stats", *["--dataset", str(tmp_path), "--output", str(out)]]) == 1
    assert "malformed JSON" in capsys.readouterr().err
    assert cli.main(["stats", *["--dataset", str(tmp_path), "--output", str(out), "--splits", "val"]]) == 2
    assert "not in the input" in capsys.readouterr().err
    assert not out.exists()
    # a generated corpus with a shard that is not Parquet: one line naming it
    gen = tmp_path / "gen"
    (gen / "parquet" / "test").mkdir(parents=True)
    shard = gen / "parquet" / "test" / "dialogues-00000-of-00001.parquet"
    shard.write_bytes(b"junk")
    (gen / "manifest.json").write_text(json.dumps({"files": [{"path": "parquet/test/dialogues-00000-of-00001.parquet",
                                                              "bytes": 4}]}))
    assert cli.main(["stats", *["--dataset", str(gen), "--output", str(out), "--box-source", "gt"]]) == 1
    err = capsys.readouterr().err
    assert f"sarchat stats: error: cannot read dialogue file {shard}: ArrowInvalid" in err and "Traceback" not in err
    # a manifest that is not one
    (gen / "manifest.json").write_text("{}")
    assert cli.main(["stats", *["--dataset", str(gen), "--output", str(out)]]) == 1
    assert "is not a dataset manifest" in capsys.readouterr().err


def test_stats_read_the_files_the_manifest_lists_and_nothing_else(corpus, tmp_path, capsys):
    import shutil

    gen = tmp_path / "gen"
    shutil.copytree(corpus["gen"], gen)
    expected = run_stats(corpus["gen"], tmp_path / "s0", "--plots", "none", "--box-source", "gt")
    # a stale shard of an earlier run with another shard count: not in the manifest, never read
    test_dir = gen / "parquet" / "test"
    first = sorted(test_dir.iterdir())[0]
    shutil.copy(first, test_dir / "dialogues-00000-of-00009.parquet")
    again = run_stats(gen, tmp_path / "s1", "--plots", "none", "--box-source", "gt")
    assert again["dialogues"] == expected["dialogues"] and again["boxes"] == expected["boxes"]
    # a listed shard whose size differs from the manifest: refused, named
    with open(first, "ab") as f:
        f.write(b"\0")
    assert cli.main(["stats", *["--dataset", str(gen), "--output", str(tmp_path / "s2")]]) == 1
    err = capsys.readouterr().err
    assert f"sarchat stats: error: {first} has" in err and "manifest.json says" in err
    # no manifest (a generation that did not finish): refused
    (gen / "manifest.json").unlink()
    assert cli.main(["stats", *["--dataset", str(gen), "--output", str(tmp_path / "s3")]]) == 1
    assert "neither manifest.json" in capsys.readouterr().err


def test_stats_settings_are_typed_and_checked(corpus, tmp_path):
    from sarchat.transforms.errors import UsageError
    from sarchat.transforms.stats.pipeline import StatsSettings

    args = stats_pipeline.build_parser().parse_args(["--input", str(corpus["gen"]), "--output", str(tmp_path),
                                                     "--box-source", "gt"])
    settings = stats_pipeline.settings_of(args)
    assert isinstance(settings, StatsSettings) and settings.annotations == ()
    assert set(settings.splits) == {"train", "test"}
    assert all(f.endswith(".parquet") and "/parquet/" in f for f in settings.dialogue_files)
    with pytest.raises(UsageError, match="--exact-cap"):
        stats_pipeline.settings_of(stats_pipeline.build_parser().parse_args(
            ["--input", str(corpus["gen"]), "--output", str(tmp_path), "--exact-cap", "0"]))


def test_render_functions_are_reusable_and_deterministic(corpus, tmp_path):
    doc = run_stats(corpus["root"], tmp_path / "s", "--plots", "none", "--splits", "test")
    assert not (tmp_path / "s" / "plots").exists()
    svgs = stats_render.render_plots(doc, fmt="svg")
    assert set(svgs) == set(stats_render.PLOT_NAMES) - {"tasks"}           # no dialogues in a dataset root
    assert svgs == stats_render.render_plots(doc, fmt="svg")
    assert all(v.lstrip().startswith(b"<?xml") for v in svgs.values())
    md = stats_render.stats_markdown(doc)
    assert "## Task distribution" not in md and "10,741 (44.38%)" in md and "train (ours)" not in md
    assert md == (tmp_path / "s" / "stats.md").read_text()


def test_submit_only_run_does_not_read_results_back(corpus, tmp_path, capsys):
    # A Flex Template launch or --no_wait_until_finish only submits the job: the launcher must not
    # try to read stats.json back (the job writes it later).
    out = tmp_path / "s"
    assert stats_pipeline.run(["--dataset", str(corpus["root"]), "--output", str(out), "--plots", "none",
                               "--no_wait_until_finish"]) == 0
    assert "pipeline submitted" in capsys.readouterr().out


# --- stats.md's exact text (pinned before it moved to a template) ----------------------------------

def _stats_doc():
    """A stats.json of a small generated corpus (tests/data/stats_doc.json: `sarchat stats` of
    varied_dataset's train 14 and test 8 images, the histograms the Markdown never reads left out)."""
    with open(os.path.join(os.path.dirname(__file__), "data", "stats_doc.json"), encoding="utf-8") as f:
        return json.load(f)


def _stats_variant(name):
    """(stats document, plot_links) of one rendering case; each case takes another branch."""
    doc, links = _stats_doc(), None
    if name == "plots":
        links = {n: f"plots/{n}.png" for n in stats_render.PLOT_NAMES if n != "cells"}
    elif name == "dataset_root":
        doc.pop("dialogues")
        doc["input"].update(kind="dataset", notes=["a note", "another note"])
    elif name == "gt_boxes":
        doc["input"]["box_source"] = "gt_boxes"
        doc["boxes"]["train"]["degenerate_boxes"] = 3
        doc["boxes"]["test"]["aspect_ratio"]["all"]["quantile_method"] = "log-histogram (rel. error <= 0.5%)"
        doc["rejects"] = {"train": {}, "test": {}}
    elif name == "test_only":
        doc["splits"] = ["test"]
        for key in ("boxes", "dialogues", "rejects"):
            doc[key] = {"test": doc[key]["test"]}
    elif name == "val_split":
        doc["splits"] = ["train", "val", "test"]
        for key in ("boxes", "dialogues", "rejects"):
            doc[key]["val"] = json.loads(json.dumps(doc[key]["test"]))
        doc["dialogues"]["val"]["tasks"]["extra"] = dict(doc["dialogues"]["val"]["tasks"]["count"],
                                                         subsets={"odd": {"count": 2, "percent_of_task": 50.0}})
        doc["dialogues"]["val"]["tasks"].pop("refer")
        doc["dialogues"]["val"]["grounding_relations"] = {}
    elif name == "dialogues_only":
        doc["boxes"] = {}
        doc["dialogues"]["train"]["identify_shapes"].pop("roughly square", None)
    return doc, links


STATS_CASES = ("full", "plots", "dataset_root", "gt_boxes", "test_only", "val_split", "dialogues_only")
STATS_DIGESTS = {
    "full": "987482a31eaf9506a29785dc89ec071edfd1db3dbd1b986b943391be26569f97",
    "plots": "6116b8e4c7197d8ce8eaabf723ec411780121dfef4c2a77868bcf0ca6cf84645",
    "dataset_root": "7b6e969759d497180e2c05e3846aab417eac1207c52e829c7b2507a6d3bd9f93",
    "gt_boxes": "09f77001087c1bf47b74aa3469cfe0ebfc49230556233cd9cc7beacb6f610b1c",
    "test_only": "8a4b3c7589de64164a2f7894bf3a1d1681afc8613768824c429e53ffc375d4d6",
    "val_split": "dd3b15d6d457139418f4293b333d89b0982a63886e247759317cef16010d8288",
    "dialogues_only": "3004d0af4a7f445a107611c0988e9944a9c8576e646c934af7179dde86bbdc61",
}


@pytest.mark.parametrize("name", STATS_CASES)
def test_stats_markdown_text_is_pinned(name):
    """stats_markdown's bytes for each case, pinned from the string-built version before it moved to
    the Jinja2 template. Re-pin on purpose only: SARCHAT_PRINT_GOLDEN=1 pytest -s -k pinned."""
    doc, links = _stats_variant(name)
    md = stats_render.stats_markdown(doc, plot_links=links)
    digest = hashlib.sha256(md.encode("utf-8")).hexdigest()
    if os.environ.get("SARCHAT_PRINT_GOLDEN"):
        print(f'    "{name}": "{digest}",')
    assert digest == STATS_DIGESTS[name], md
