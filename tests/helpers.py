"""Helpers shared by the tests: tests import this module (and conftest's fixtures), never each
other's test modules."""
import contextlib
import glob
import io
import json
import os
import random
import time

import pyarrow.parquet as pq

from sarchat.beam_pipelines import cli, demo, generate, synth

CATEGORIES = [{"id": i, "name": n} for i, n in enumerate(["ship", "aircraft", "car", "tank", "bridge", "harbor"])]


def write_coco(root, split, images, annotations, categories=None):
    path = os.path.join(root, "Annotations", f"{split}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": annotations,
                   "categories": CATEGORIES if categories is None else categories}, f)
    return path


def known_dataset():
    """Test split with boxes whose dialogues are worked out by hand in the tests."""
    images = [
        {"id": 1, "file_name": "harbor_scene.jpg", "width": 512, "height": 512},
        {"id": 2, "file_name": "small.png", "width": 200, "height": 200},
        {"id": 3, "file_name": "airport.jpg", "width": 800, "height": 800},
    ]
    annotations = [
        {"id": 10, "image_id": 1, "category_id": 0, "bbox": [294.2, 358.0, 35.0, 69.0]},   # ship, bottom center
        {"id": 11, "image_id": 1, "category_id": 0, "bbox": [60.5, 448.0, 61.0, 55.0]},    # ship, bottom left
        {"id": 12, "image_id": 1, "category_id": 5, "bbox": [300.0, 20.0, 150.0, 120.0]},  # harbor, top right
        {"id": 13, "image_id": 2, "category_id": 1, "bbox": [10.0, 10.0, 50.0, 40.0]},     # aircraft
        {"id": 14, "image_id": 3, "category_id": 1, "bbox": [100.0, 100.0, 300.0, 280.0]}, # aircraft, large
        {"id": 15, "image_id": 3, "category_id": 2, "bbox": [500.0, 600.0, 20.0, 10.0]},   # car
    ]
    return images, annotations


def run_generate(root, out, *extra, test=None):
    argv = ["--input", str(root), "--output", str(out), "--splits", "test", *extra]
    assert generate.run(argv, test=test) == 0
    with open(os.path.join(out, "manifest.json")) as f:
        return json.load(f)


def read_rows(out, split="test"):
    table = pq.read_table(sorted(glob.glob(os.path.join(out, "parquet", split, "*.parquet"))))
    return table.sort_by("id").to_pylist()


def random_dataset(root, n_images=40, seed=3):
    rnd = random.Random(seed)
    images, anns = [], []
    for i in range(n_images):
        size = rnd.choice([256, 512, 800])
        images.append({"id": 1000 + i, "file_name": f"img_{i}.jpg", "width": size, "height": size})
        for _ in range(rnd.randint(1, 4)):
            w, h = rnd.uniform(5, size / 3), rnd.uniform(5, size / 3)
            anns.append({"id": len(anns) + 1, "image_id": 1000 + i, "category_id": rnd.randrange(6),
                         "bbox": [rnd.uniform(-10, size - w), rnd.uniform(0, size - h), w, h]})
    # a few bad records
    anns.append({"id": len(anns) + 1, "image_id": 1000, "category_id": 0, "bbox": [1, 1, float("nan"), 4]})
    anns.append({"id": len(anns) + 1, "image_id": 5, "category_id": 0, "bbox": [1, 1, 4, 4]})
    write_coco(str(root), "test", images, anns)
    return images, anns


def file_bytes(out):
    return {os.path.relpath(p, out): open(p, "rb").read()
            for p in glob.glob(os.path.join(out, "**", "*"), recursive=True) if os.path.isfile(p)}


def count_lines(path):
    try:
        with open(path, "rb") as fh:
            return fh.read().count(b"\n")
    except FileNotFoundError:
        return 0


TINY_DEMO_ARGS = ["--tiny"]  # the settings tests/test_golden.py pins the scores of


def run_demo(argv):
    out, err = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = demo.run(argv)
    return rc, out.getvalue(), err.getvalue(), time.perf_counter() - t0


def generated_dataset(tmp_path, images=30, seed="0", extra=()):
    """`sarchat synth` + `sarchat generate` (all formats) into tmp_path; returns the output folder."""
    data, out = os.path.join(str(tmp_path), "data"), os.path.join(str(tmp_path), "out")
    assert synth.run(["--output", data, "--images", str(images), "--seed", str(seed), "--quiet"]) in (0, None)
    assert generate.run(["--input", data, "--output", out, *extra]) in (0, None)
    return out


def infer(argv):
    """`sarchat infer ARGV` in this process, as a user runs it: a failure is the one error line on
    stderr and the exit status (cli.main), not an exception."""
    return cli.main(["infer", *argv])
