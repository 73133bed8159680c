"""Scene plan of the synthetic dataset: scene types, their target mix, image sizes and formats per split."""
from __future__ import annotations

import math

import numpy as np
from sarchat.synthetic.constants import MIN_TEST_IMAGES
from sarchat.synthetic.random_fields import largest_remainder, rng_for

# ---------------------------------------------------------------------------------------------
# Scene plan: scene types and their target composition
#
# sea: ships at sea (sometimes a coast); harbor: a harbor on a coast with ships; river: bridges over
# a river, sometimes ships in it; airfield: aircraft on aprons, sometimes service cars / fuel tanks;
# land: oil-tank farms and car parks.
SCENES = ("sea", "harbor", "river", "airfield", "land")
# Fractions of images per scene, fitted (least squares on the expected composition of each scene)
# so that the box mix follows the paper's Table 1 for each split.
SCENE_FRACTIONS = {
    "train": (0.412, 0.034, 0.229, 0.220, 0.105),
    "test": (0.390, 0.034, 0.225, 0.305, 0.046),
}
IMAGE_SIZES = (256, 512, 800)
IMAGE_SIZE_P = (0.3, 0.45, 0.25)
PNG_FRACTION = 0.15

# log10 of the box area ratio: per-category median and spread (most boxes small, some medium).
AREA_LOG10 = {
    "ship": (-2.25, 0.40),
    "aircraft": (-2.05, 0.30),
    "car": (-2.55, 0.25),
    "tank": (-2.35, 0.25),
    "bridge": (-1.85, 0.30),
    "harbor": (-1.15, 0.25),
}
LARGE_P = 0.08  # chance that a single-target image shows a large target (R in 0.12..0.40)


def _choice(rng, values, p):
    return values[int(rng.choice(len(values), p=np.asarray(p, dtype=np.float64) / np.sum(p)))]


def scene_composition(rng: np.random.Generator, scene: str) -> list:
    """Categories of the targets of one scene, in placement order (big structures first)."""
    if scene == "sea":
        return ["ship"] * _choice(rng, (1, 2, 3, 4, 5), (0.50, 0.24, 0.12, 0.08, 0.06))
    if scene == "harbor":
        return ["harbor"] + ["ship"] * _choice(rng, (0, 1, 2, 3), (0.30, 0.35, 0.20, 0.15))
    if scene == "river":
        return ["bridge"] * _choice(rng, (1, 2), (0.75, 0.25)) + ["ship"] * _choice(rng, (0, 1, 2), (0.6, 0.3, 0.1))
    if scene == "airfield":
        cats = ["aircraft"] * _choice(rng, (1, 2, 3, 4), (0.45, 0.30, 0.15, 0.10))
        if rng.random() < 0.3:
            cats += [_choice(rng, ("car", "tank"), (0.5, 0.5))] * _choice(rng, (1, 2), (0.5, 0.5))
        return cats[:5]
    if scene == "land":
        if rng.random() < 0.75:
            cats = ["tank"] * _choice(rng, (1, 2, 3, 4, 5), (0.35, 0.25, 0.15, 0.15, 0.10))
            extra = "car"
        else:
            cats = ["car"] * _choice(rng, (1, 2, 3, 4), (0.40, 0.30, 0.20, 0.10))
            extra = "tank"
        if rng.random() < 0.2:
            cats.append(extra)
        return cats[:5]
    raise ValueError(f"unknown scene {scene!r}")


def split_sizes(n_images: int, test_fraction: float) -> tuple:
    """(n_train, n_test): about test_fraction, but at least a handful of test images."""
    if n_images <= 0:
        return 0, 0
    if test_fraction <= 0:
        return n_images, 0
    n_test = int(math.floor(n_images * test_fraction + 0.5))
    n_test = max(n_test, min(MIN_TEST_IMAGES, n_images // 2), 1 if n_images > 1 else 0)
    n_test = min(n_test, n_images - 1) if n_images > 1 else n_test
    return n_images - n_test, n_test


def plan_split(split: str, n_images: int, seed) -> list:
    """Per image: dict(index, scene, size, ext, file_name). Scene counts by largest remainder, then shuffled."""
    if n_images <= 0:
        return []
    rng = rng_for(seed, "plan", split, n_images)
    fractions = SCENE_FRACTIONS.get(split, SCENE_FRACTIONS["train"])
    counts = largest_remainder(n_images, fractions)
    if n_images >= 20 and counts[SCENES.index("harbor")] == 0:  # at least one harbor in a real set
        counts[int(np.argmax(counts))] -= 1
        counts[SCENES.index("harbor")] += 1
    scenes = np.repeat(np.arange(len(SCENES)), counts)
    scenes = scenes[rng.permutation(n_images)]
    sizes = rng.choice(len(IMAGE_SIZES), size=n_images, p=IMAGE_SIZE_P)
    # every size appears when the split is big enough to hold them all
    if n_images >= 2 * len(IMAGE_SIZES):
        for k in range(len(IMAGE_SIZES)):
            if not np.any(sizes == k):
                sizes[k] = k
    n_png = int(math.floor(n_images * PNG_FRACTION + 0.5))
    png = np.zeros(n_images, dtype=bool)
    png[rng.permutation(n_images)[:n_png]] = True
    exts = np.where(png, "png", "jpg")
    return [{"index": i, "scene": SCENES[int(scenes[i])], "size": IMAGE_SIZES[int(sizes[i])], "ext": str(exts[i]),
             "file_name": f"{split}_{i:06d}.{exts[i]}"} for i in range(n_images)]
