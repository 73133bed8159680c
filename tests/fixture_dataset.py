"""A tiny synthetic SAR dialogue set for tests and benchmarks of the inference stage.

Not the dataset generator (`sarchat synth` + `sarchat generate` are): this writes, in one call,
images of speckled sea or land with bright scatterer targets (ships on sea; aircraft, cars and
tanks on land; bridges over a river; harbors), and a `parquet/<split>/dialogues-*.parquet` with
DIALOGUE_SCHEMA rows for every task (built by sarchat.transforms.generate.dialogues.DialogueBuilder, one identify
question per box), plus `manifest.json` with `input_root`, i.e. the layout
`sarchat infer` reads. Deterministic for a seed. A test fixture: it lives under tests/, out of the
wheel (`benchmarks/infer_vllm.py` and `inference/gpu_smoke.sh` run it from a checkout).
"""
import hashlib
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sarchat.transforms.generate.dialogues import DialogueBuilder
from sarchat.transforms.schema import DIALOGUE_SCHEMA


def _speckle(rng, shape, mean_amp, looks=3):
    intensity = rng.gamma(looks, 1.0 / looks, size=shape) * (mean_amp ** 2)
    return np.sqrt(intensity)


def _paint(img, mask, rng, level=230.0):
    n = int(mask.sum())
    if n:
        img[mask] = np.clip(level * np.sqrt(rng.gamma(4, 0.25, size=n)), 0, 255)


def _rect_mask(h, w, cx, cy, length, width, angle):
    yy, xx = np.mgrid[0:h, 0:w]
    c, s = np.cos(angle), np.sin(angle)
    u = (xx - cx) * c + (yy - cy) * s
    v = -(xx - cx) * s + (yy - cy) * c
    return (np.abs(u) <= length / 2.0) & (np.abs(v) <= width / 2.0)


def _box_of(mask):
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def _free(boxes, box, margin=6):
    for b in boxes:
        if not (box[2] + margin < b[0] or b[2] + margin < box[0] or box[3] + margin < b[1] or b[3] + margin < box[1]):
            return False
    return True


def make_scene(rng, size=256):
    """(uint8 image, [(category, [x1,y1,x2,y2]), ...]) for one synthetic SAR scene."""
    h = w = size
    kind = rng.choice(["sea", "land", "river", "port"], p=[0.4, 0.35, 0.15, 0.10])
    objects = []
    shore = h
    if kind in ("sea", "port"):
        img = _speckle(rng, (h, w), 18.0)
    else:
        img = _speckle(rng, (h, w), 75.0)
    if kind == "port":
        # land along the bottom, a quay on the shore and piers reaching into the water
        shore = int(rng.integers(int(0.7 * h), int(0.85 * h)))
        img[shore:, :] = _speckle(rng, (h - shore, w), 75.0)
        bw = int(rng.integers(w // 3, w // 2))
        x0 = int(rng.integers(0, w - bw))
        pier = int(rng.integers(h // 4, h // 3))
        mask = np.zeros((h, w), bool)
        mask[shore - 5:shore, x0:x0 + bw] = True
        for px in range(x0 + 2, x0 + bw - 3, max(12, bw // 4)):
            mask[shore - pier:shore, px:px + 4] = True
        _paint(img, mask, rng, 235.0)
        objects.append(("harbor", _box_of(mask)))
    if kind == "river":
        ry = int(rng.integers(h // 3, 2 * h // 3))
        rw = int(rng.integers(24, 40))
        img[ry - rw // 2: ry + rw // 2, :] = _speckle(rng, (2 * (rw // 2), w), 15.0)
        bx = int(rng.integers(w // 4, 3 * w // 4))
        length = int(rng.integers(int(0.3 * h), int(0.5 * h)))
        mask = _rect_mask(h, w, bx, ry, length, 5, np.pi / 2)
        _paint(img, mask, rng, 235.0)
        objects.append(("bridge", _box_of(mask)))
    n = int(rng.integers(1, 4))
    for _ in range(20):
        if len(objects) >= n + (1 if kind in ("port", "river") else 0):
            break
        y_max = (shore - 12) if kind == "port" else h - 24
        cx, cy = float(rng.uniform(24, w - 24)), float(rng.uniform(24, y_max))
        if kind in ("sea", "port"):
            cat = "ship"
            mask = _rect_mask(h, w, cx, cy, float(rng.uniform(16, 34)), float(rng.uniform(5, 8)),
                              float(rng.uniform(0, np.pi)))
        elif kind == "river":
            cat = "car"
            mask = _rect_mask(h, w, cx, cy, 7, 4, 0.0)
        else:
            cat = str(rng.choice(["aircraft", "car", "tank"]))
            if cat == "aircraft":
                span = float(rng.uniform(24, 36))
                mask = (_rect_mask(h, w, cx, cy, span, 4, 0.0) |
                        _rect_mask(h, w, cx, cy - span * 0.1, 4, span * 0.9, 0.0))
            elif cat == "car":
                mask = _rect_mask(h, w, cx, cy, 7, 4, float(rng.choice([0.0, np.pi / 2])))
            else:
                mask = _rect_mask(h, w, cx, cy, 13, 10, 0.0)
        if not mask.any():
            continue
        box = _box_of(mask)
        if kind == "river" and abs((box[1] + box[3]) / 2 - h / 2) < h / 6:
            continue
        if not _free([b for _, b in objects], box):
            continue
        _paint(img, mask, rng)
        objects.append((cat, box))
    return np.clip(img, 0, 255).astype(np.uint8), objects


def _rows_for_image(builder, split, image_id, rel_path, w, h, objects):
    """Dialogue rows (DIALOGUE_SCHEMA dicts) for one image, built by the generator's own builder."""
    image = {"split": split, "image_id": image_id, "file_name": rel_path.rsplit("/", 1)[-1], "image_path": rel_path,
             "width": w, "height": h,
             "boxes": [{"ann_id": i, "category": cat, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]}
                       for i, (cat, b) in enumerate(objects)]}
    return builder.rows([image])[0]


def write_fixture_dataset(out_dir, n_images=8, size=256, seed=0, splits=("test",), shards=2, image_ext="png"):
    """Write images under OUT/images_root/JPEGImages/<split>/ and the dialogues under OUT/generated/.

    Returns (generated folder, image root, {split: rows}).
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    image_root = os.path.join(out_dir, "images_root")
    generated = os.path.join(out_dir, "generated")
    all_rows = {}
    for split in splits:
        img_dir = os.path.join(image_root, "JPEGImages", split)
        os.makedirs(img_dir, exist_ok=True)
        rows = []
        builder = DialogueBuilder(seed=seed, identify_variants=1)
        for k in range(n_images):
            img, objects = make_scene(rng, size)
            name = f"{split}_{k:04d}.{image_ext}"
            Image.fromarray(img, mode="L").save(os.path.join(img_dir, name))
            rows.extend(_rows_for_image(builder, split, k, f"JPEGImages/{split}/{name}", size, size, objects))
        rows.sort(key=lambda r: r["id"])
        all_rows[split] = rows
        pdir = os.path.join(generated, "parquet", split)
        os.makedirs(pdir, exist_ok=True)
        for s in range(shards):
            part = [r for j, r in enumerate(rows) if j % shards == s]
            pq.write_table(pa.Table.from_pylist(part, schema=DIALOGUE_SCHEMA),
                           os.path.join(pdir, f"dialogues-{s:05d}-of-{shards:05d}.parquet"))
    # Like generate's manifest: the files with their sizes (consumers read only those) and a
    # dataset version that changes with the content.
    files, digest = [], hashlib.sha256()
    for folder, _, names in sorted(os.walk(os.path.join(generated, "parquet"))):
        for name in sorted(names):
            path = os.path.join(folder, name)
            with open(path, "rb") as fh:
                data = fh.read()
            rel = os.path.relpath(path, generated).replace(os.sep, "/")
            files.append({"path": rel, "bytes": len(data)})
            digest.update(rel.encode() + b"\x1f" + hashlib.sha256(data).digest())
    with open(os.path.join(generated, "manifest.json"), "w", encoding="utf-8") as fh:
        json.dump({"input_root": image_root, "seed": seed, "fixture": True, "files": files,
                   "dataset_version": digest.hexdigest()[:16]}, fh)
    return generated, image_root, all_rows


def main(argv=None):
    """`python -m tests.fixture_dataset OUT [--images N] [--size S] [--seed K]`: a Beam-free fixture
    dataset; prints the generated folder (the --dataset of `sarchat infer`)."""
    import argparse

    p = argparse.ArgumentParser(description="write a tiny synthetic dialogue set for `sarchat infer`")
    p.add_argument("out")
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    generated, _, rows = write_fixture_dataset(args.out, n_images=args.images, size=args.size, seed=args.seed)
    print(generated)
    return 0


if __name__ == "__main__":
    main()
