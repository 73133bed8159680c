"""Synthetic SAR scenes in the SARDet-100K layout, and SARDet-scale annotation-only data.

This is the toolkit's bundled default dataset: small, deterministic, and shaped like SARDet-100K
(COCO JSON under `Annotations/`, images under `JPEGImages/<split>/`). Pure numpy + Pillow, no Beam.

Imaging model (why the images look like SAR and not like noise or cartoons):

* A SAR pixel measures backscattered power. The scene is first a map of mean reflectivity sigma0:
  calm water is a near-specular surface that scatters the pulse away from the radar, so sea and
  rivers are dark (about -18 dB); vegetated land scatters diffusely (about -11 dB) and is textured
  (field parcels, relief); smooth tarmac (runways, aprons) is nearly as dark as water.
* Speckle: each resolution cell holds many random scatterers whose echoes add coherently, so the
  observed intensity is sigma0 times a random factor. For an L-look image that factor is
  Gamma(L, 1/L) (mean 1; exponential for L = 1). It is multiplicative, which is why SAR clutter is
  grainy everywhere and brighter areas are grainier in absolute terms.
* Targets are bright because man-made metal structures form dihedral and trihedral corner
  reflectors (hull/deck/superstructure, fuselage/wing roots, vehicle bodies on the ground, the
  wall-ground dihedral of a storage tank, bridge deck-water multipath) that send the pulse straight
  back. They appear as clusters of strong point scatterers (spread by the sinc-shaped impulse
  response, hence the faint crosses) on top of a moderately bright body.
* The image is then log-compressed (dB), clipped to a 32 dB window and quantised to 8 bits, the
  way SAR products are usually distributed as pictures: water dark and grainy, land mid-grey,
  the strongest scatterers saturated.

Categories follow SARDet-100K: "tank" is an oil storage tank (MSAR/OGSOD), drawn as a circular
tank with bright near/far-range arcs and a range shadow; "harbor" is a set of piers, a quay and
often a breakwater on a coastline. Every annotation box is the tight pixel extent of what was drawn
for that target (wakes and shadows excluded), so it is the ground truth a detector can be scored on.

Determinism: every random number comes from a numpy Generator seeded from sha256 of
(seed, purpose, split, index) -- never Python's salted built-in hash -- so the same seed gives byte-identical
JSON and image files on any machine with the same numpy/Pillow/zlib, whatever the worker count.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from PIL import Image

# The constants are part of this module's API (synth.py and the tests read them here).
from sarchat.synthetic.constants import (DEFAULT_IMAGES, DEFAULT_TEST_FRACTION, SARDET_SCALE,  # noqa: F401
                                         SYNTH_VERSION, TABLE1_COUNTS)
from sarchat.synthetic.random_fields import largest_remainder, rng_for
from sarchat.synthetic.scene_plan import plan_split, split_sizes
from sarchat.synthetic.scene_render import render_scene, scene_annotations
from sarchat.transforms.categories import CATEGORIES

# ---------------------------------------------------------------------------------------------
# Datasets


def _coco(description, seed, split, images, annotations):
    info = {"description": description, "generator": "sarchat synth", "version": SYNTH_VERSION, "seed": str(seed),
            "split": split}
    return {"info": info, "images": images, "annotations": annotations,
            "categories": [{"id": i, "name": name, "supercategory": "sar_target"} for i, name in enumerate(CATEGORIES)]}


def _render(job):
    """Render and encode one planned image (a top-level function: worker processes run it)."""
    seed, split, item = job
    img, anns = render_scene(seed, split, item["index"], item["scene"], item["size"])
    buf = io.BytesIO()
    if item["ext"] == "png":
        Image.fromarray(img).save(buf, format="PNG", compress_level=6)
    else:
        Image.fromarray(img).save(buf, format="JPEG", quality=90, optimize=False, progressive=False)
    return buf.getvalue(), anns


def _coco_split(seed, split: str, plan: list, anns_per_image: list) -> dict:
    images, annotations = [], []
    for image_id, (item, anns) in enumerate(zip(plan, anns_per_image), start=1):
        images.append({"id": image_id, "file_name": item["file_name"], "width": item["size"], "height": item["size"]})
        for cat, (x, y, w, h) in anns:
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": CATEGORIES.index(cat),
                "bbox": [float(x), float(y), float(w), float(h)], "area": float(w * h), "iscrowd": 0,
            })
    return _coco("SARChat-Bench synthetic SAR dataset (SARDet-100K layout)", seed, split, images, annotations)


def synth_annotations(split: str, n_images: int, seed=0) -> dict:
    """The COCO dict `write_synthetic_dataset` writes for this split, without drawing any image (fast)."""
    plan = plan_split(split, n_images, seed)
    anns = [scene_annotations(seed, split, it["index"], it["scene"], it["size"]) for it in plan]
    return _coco_split(seed, split, plan, anns)


def _write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write((json.dumps(obj, separators=(",", ":")) + "\n").encode("utf-8"))


def write_synthetic_dataset(root, n_images: int = DEFAULT_IMAGES, seed: "int | str" = 0,
                            test_fraction: float = DEFAULT_TEST_FRACTION, workers: int = 1, on_image=None) -> dict:
    """Write ROOT/Annotations/{train,test}.json and ROOT/JPEGImages/{train,test}/*; return a summary.

    The output depends only on (n_images, seed, test_fraction), never on workers. on_image(1) is
    called after each image is written (progress).
    """
    n_train, n_test = split_sizes(int(n_images), float(test_fraction))
    pool = ProcessPoolExecutor(max_workers=int(workers)) if workers and workers > 1 else None
    summary: dict = {"root": str(root), "seed": str(seed), "splits": {}}
    with pool or contextlib.nullcontext():
        for split, n in (("train", n_train), ("test", n_test)):
            plan = plan_split(split, n, seed)
            image_dir = os.path.join(root, "JPEGImages", split)
            os.makedirs(image_dir, exist_ok=True)
            jobs = [(seed, split, item) for item in plan]
            results = pool.map(_render, jobs, chunksize=4) if pool else map(_render, jobs)
            anns_per_image = []
            for item, (data, anns) in zip(plan, results):
                with open(os.path.join(image_dir, item["file_name"]), "wb") as fh:
                    fh.write(data)
                if on_image is not None:
                    on_image(1)
                anns_per_image.append(anns)
            coco = _coco_split(seed, split, plan, anns_per_image)
            _write_json(os.path.join(root, "Annotations", f"{split}.json"), coco)
            per_cat = np.bincount([a["category_id"] for a in coco["annotations"]], minlength=len(CATEGORIES))
            summary["splits"][split] = {
                "images": len(coco["images"]),
                "boxes": len(coco["annotations"]),
                "categories": {name: int(per_cat[i]) for i, name in enumerate(CATEGORIES)},
            }
    return summary


# ---------------------------------------------------------------------------------------------
# SARDet-100K-scale annotations without images (for benchmarks)

SCALE_SIZES = ((512, 512), (800, 800), (256, 256), (1024, 1024), (600, 600), (500, 350), (640, 480), (200, 200))
SCALE_SIZE_P = (0.40, 0.25, 0.20, 0.05, 0.04, 0.03, 0.02, 0.01)
SCALE_EXTS = ("jpg", "png", "bmp")
SCALE_EXT_P = (0.80, 0.15, 0.05)
# log10 area ratio (median, spread) and log10 aspect ratio h/w (median, spread) per category:
# aspect spreads reproduce the paper's Table 4 shares of broad / square / tall boxes; areas make
# about half of the images keep a box under the description filter (paper Table 5).
SCALE_SHAPE_LOG10 = {
    "ship": (-2.33, 0.55, 0.03, 0.35), "aircraft": (-2.03, 0.45, 0.02, 0.125), "car": (-2.23, 0.40, 0.033, 0.18),
    "tank": (-2.38, 0.45, 0.0, 0.085), "bridge": (-1.88, 0.50, 0.072, 0.27), "harbor": (-1.28, 0.45, 0.004, 0.17),
}
MIXED_FRACTION = 0.12  # share of boxes whose category is shuffled across images (multi-category images)


def sardet_scale_annotations(split: str, n_images: int, n_boxes: int, seed: "int | str" = 0) -> dict:
    """A SARDet-100K-scale COCO dict (no images): exact image and box counts, Table 1 category mix.

    Every image has at least one box; the extra boxes go to images with heavy-tailed weights, so a
    few images hold many boxes. Most images hold one category (as in SARDet-100K, whose sources are
    single-purpose datasets); about MIXED_FRACTION of the boxes are mixed across images.
    All boxes lie inside their image. Vectorised: the train split takes about a second.
    """
    n_images, n_boxes = int(n_images), int(n_boxes)
    if n_images < 0 or n_boxes < n_images or (n_images == 0 and n_boxes > 0):
        raise ValueError("need n_boxes >= n_images >= 0 (every image gets at least one box)")
    rng = rng_for(seed, "sardet-scale", split, n_images, n_boxes)
    description = "SARDet-100K-scale synthetic annotations (no images)"
    if n_images == 0:
        return _coco(description, seed, split, [], [])

    counts = largest_remainder(n_boxes, TABLE1_COUNTS.get(split, TABLE1_COUNTS["train"]))
    # boxes per image: 1 + heavy-tailed share of the rest
    extra = n_boxes - n_images
    per_image = np.ones(n_images, dtype=np.int64)
    if extra:
        w = rng.gamma(0.3, 1.0, n_images)
        per_image += np.bincount(rng.choice(n_images, size=extra, p=w / w.sum()), minlength=n_images)
    # categories in contiguous runs (single-category images), a share shuffled across images
    cats = np.repeat(np.arange(len(CATEGORIES)), counts)
    mix = rng.choice(n_boxes, size=int(MIXED_FRACTION * n_boxes), replace=False)
    cats[mix] = cats[mix[rng.permutation(mix.size)]]
    # image ids: random order of the runs
    order = rng.permutation(n_images)  # image slot -> image id - 1
    slot_of_box = np.repeat(np.arange(n_images), per_image)
    img_of_box = order[slot_of_box]
    sort = np.argsort(img_of_box, kind="stable")
    img_of_box, cats = img_of_box[sort], cats[sort]

    size_idx = rng.choice(len(SCALE_SIZES), size=n_images, p=SCALE_SIZE_P)
    sizes = np.asarray(SCALE_SIZES, dtype=np.float64)[size_idx]
    ext_idx = rng.choice(len(SCALE_EXTS), size=n_images, p=SCALE_EXT_P)
    W, H = sizes[img_of_box, 0], sizes[img_of_box, 1]

    area_mu, area_sd, ar_mu, ar_sd = np.array([SCALE_SHAPE_LOG10[c] for c in CATEGORIES])[cats].T
    # boxes of one image share a resolution: a per-image offset on the area
    img_off = rng.normal(0.0, 0.25, n_images)[img_of_box]
    r = 10 ** np.clip(area_mu + img_off + area_sd * rng.standard_normal(n_boxes), -4.5, math.log10(0.6))
    ar = 10 ** (ar_mu + ar_sd * rng.standard_normal(n_boxes))  # h / w
    area = r * W * H
    bw = np.sqrt(area / ar)
    bh = np.floor(np.clip(bw * ar, 2.0, H * 0.98) * 10) / 10
    bw = np.floor(np.clip(bw, 2.0, W * 0.98) * 10) / 10
    bx = np.floor(rng.uniform(0.0, 1.0, n_boxes) * (W - bw) * 10) / 10
    by = np.floor(rng.uniform(0.0, 1.0, n_boxes) * (H - bh) * 10) / 10
    barea = np.round(bw * bh, 2)

    images = [
        {"id": i + 1, "file_name": f"{split}_{i + 1:06d}.{SCALE_EXTS[e]}", "width": w, "height": h}
        for i, ((w, h), e) in enumerate(zip(sizes.astype(np.int64).tolist(), ext_idx.tolist()))
    ]
    annotations = [
        {"id": k, "image_id": i, "category_id": c, "bbox": [x, y, w, h], "area": a, "iscrowd": 0}
        for k, i, c, x, y, w, h, a in zip(
            range(1, n_boxes + 1), (img_of_box + 1).tolist(), cats.tolist(),
            bx.tolist(), by.tolist(), bw.tolist(), bh.tolist(), barea.tolist())
    ]
    return _coco(description, seed, split, images, annotations)


def write_annotations_only(root, splits: dict) -> list:
    """Write ROOT/Annotations/<split>.json for each {split: coco dict}; no images. Returns the paths."""
    paths = [os.path.join(root, "Annotations", f"{split}.json") for split in splits]
    for path, coco in zip(paths, splits.values()):
        _write_json(path, coco)
    return paths
