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

import functools
import hashlib
import io
import json
import math
import os

import numpy as np

from sarchat.transforms.categories import CATEGORIES

SYNTH_VERSION = 1

# Paper Table 1: boxes per category (ship, aircraft, car, tank, bridge, harbor).
TABLE1_COUNTS = {
    "train": (93373, 40705, 9561, 24187, 27615, 3306),
    "test": (10741, 6779, 1230, 1773, 3281, 399),
}
# SARDet-100K scale (images, boxes) per split.
SARDET_SCALE = {"train": (94493, 198747), "val": (10492, 22703), "test": (11613, 24023)}

COCO_CATEGORIES = [{"id": i, "name": name, "supercategory": "sar_target"} for i, name in enumerate(CATEGORIES)]
CAT_ID = {name: i for i, name in enumerate(CATEGORIES)}

DEFAULT_IMAGES = 200
DEFAULT_TEST_FRACTION = 0.12
MIN_TEST_IMAGES = 5

# ---------------------------------------------------------------------------------------------
# Determinism helpers


def rng_for(seed, *parts) -> np.random.Generator:
    """A numpy Generator seeded from sha256 of the seed and a purpose path (never the salted built-in hash)."""
    text = "|".join(["sarchat-synth", str(seed)] + [str(p) for p in parts])
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(int.from_bytes(digest[:16], "little"))))


def largest_remainder(total: int, weights) -> np.ndarray:
    """Integers proportional to weights that sum exactly to total (Hamilton's method, ties by order)."""
    w = np.asarray(weights, dtype=np.float64)
    if total <= 0 or w.sum() <= 0:
        return np.zeros(len(w), dtype=np.int64)
    quota = total * w / w.sum()
    base = np.floor(quota).astype(np.int64)
    rest = int(total - base.sum())
    order = np.argsort(-(quota - base), kind="stable")
    base[order[:rest]] += 1
    return base


# ---------------------------------------------------------------------------------------------
# Smooth random fields (separable Gaussian interpolation of a coarse random grid: pure numpy)


@functools.lru_cache(maxsize=64)
def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    ctrl = np.linspace(-0.5, n_out + 0.5, n_in)
    spacing = (n_out + 1.0) / max(n_in - 1, 1)
    pos = np.arange(n_out, dtype=np.float64) + 0.5
    m = np.exp(-0.5 * ((pos[:, None] - ctrl[None, :]) / (0.75 * spacing)) ** 2)
    m /= m.sum(axis=1, keepdims=True)
    return m.astype(np.float32)


def _separable(a, g, b):
    """a @ g @ b.T with numpy's own loops: no BLAS, so no thread start-up cost on these small
    products and the same bits whatever the BLAS thread count."""
    return np.einsum("jk,lk->jl", np.einsum("ij,jk->ik", a, g), b)


def _upsample(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize of a float32 map (Pillow, deterministic)."""
    from PIL import Image

    if a.shape == (h, w):
        return a
    im = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32)).resize((w, h), Image.BILINEAR)
    return np.array(im, dtype=np.float32)  # a writable copy


def smooth_field(rng: np.random.Generator, h: int, w: int, cells: int, octaves: int = 3, scale: float = 0.0):
    """Fractal smooth noise, float32 (h, w): zero mean and unit std, or exp(scale * that) if scale.

    Built on a coarse grid (a few pixels per noise cell) and bilinearly upsampled: the field is smooth
    anyway, and this keeps a 800x800 field at about a millisecond.
    """
    finest = cells * 2 ** (octaves - 1) + 1
    lh, lw = min(h, max(32, 4 * finest)), min(w, max(32, 4 * finest))
    out = np.zeros((lh, lw), dtype=np.float32)
    amp = 1.0
    for k in range(octaves):
        c = cells * 2 ** k
        grid = rng.standard_normal((c + 1, c + 1), dtype=np.float32)
        out += amp * _separable(_interp_matrix(lh, c + 1), grid, _interp_matrix(lw, c + 1))
        amp *= 0.5
    out -= out.mean()
    sd = float(out.std())
    if sd > 0:
        out /= sd
    if scale:
        out = np.exp(np.float32(scale) * out)
    return _upsample(out, h, w)


def smooth_curve(rng: np.random.Generator, n: int, cells: int) -> np.ndarray:
    """A smooth random 1-D function sampled at n points, zero mean, unit std."""
    v = np.einsum("ij,j->i", _interp_matrix(n, cells + 1), rng.standard_normal(cells + 1).astype(np.float32))
    v = v + 0.4 * np.einsum("ij,j->i", _interp_matrix(n, 2 * cells + 1),
                            rng.standard_normal(2 * cells + 1).astype(np.float32))
    v -= v.mean()
    sd = float(v.std())
    return v / sd if sd > 0 else v


def db(x):
    return 10.0 ** (np.asarray(x, dtype=np.float64) / 10.0)


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
    """Per image: dict(index, scene, size, ext). Scene counts by largest remainder, then shuffled."""
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
    return [
        {"index": i, "scene": SCENES[int(scenes[i])], "size": IMAGE_SIZES[int(sizes[i])], "ext": "png" if png[i] else "jpg"}
        for i in range(n_images)
    ]


# ---------------------------------------------------------------------------------------------
# Target geometry: primitives ("rect", "hull", "ring", "disc") and point scatterers


def _rot(angle):
    return math.cos(angle), math.sin(angle)


def _rect(cx, cy, angle, hl, hw, level, kind="rect"):
    return (kind, float(cx), float(cy), float(angle), float(max(hl, 0.6)), float(max(hw, 0.6)), float(level))


def _seg(x0, y0, x1, y1, hw, level):
    """A flat-ended thick segment as a rect primitive."""
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    return _rect(cx, cy, math.atan2(y1 - y0, x1 - x0), math.hypot(x1 - x0, y1 - y0) / 2.0, hw, level)


def _prim_bounds(p):
    kind = p[0]
    if kind in ("rect", "hull"):
        _, cx, cy, a, hl, hw, _ = p
        c, s = _rot(a)
        ex = abs(hl * c) + abs(hw * s)
        ey = abs(hl * s) + abs(hw * c)
        return cx - ex, cy - ey, cx + ex, cy + ey
    if kind == "ring":
        _, cx, cy, r, hw, _, _ = p
        return cx - r - hw, cy - r - hw, cx + r + hw, cy + r + hw
    if kind == "disc":
        _, cx, cy, r, _ = p
        return cx - r, cy - r, cx + r, cy + r
    raise ValueError(kind)


def target_bounds(prims):
    """Continuous (x0, y0, x1, y1) covering every primitive (planning box, a bit loose)."""
    b = np.array([_prim_bounds(p) for p in prims], dtype=np.float64)
    return float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())


def _coverage(p, px, py, rng=None, blocks=None):
    """Anti-aliased coverage (0..1) and brightness modulation of a primitive on a pixel grid.

    px (1, w) and py (h, 1) are pixel-centre coordinates (pixel j covers [j, j+1]). With rng and
    blocks = (block length in pixels, spread in dB), bars are cut into blocks of random strength
    along their axis (deck sections, containers, wing panels: a patchy, not uniform, return).
    """
    kind = p[0]
    if kind in ("rect", "hull"):
        _, cx, cy, a, hl, hw, _ = p
        c, s = _rot(a)
        dx, dy = px - cx, py - cy
        u = dx * c + dy * s
        v = -dx * s + dy * c
        if kind == "hull":
            t = np.clip(u / hl, -1.0, 1.0)
            half = hw * np.sqrt(np.clip(np.where(t > 0, 1.0 - t * t, 1.0 - t ** 6), 0.0, 1.0))
            half = np.maximum(half, 0.5 * np.minimum(hw, 1.0))
        else:
            half = hw
        cov = np.clip(hl - np.abs(u) + 0.5, 0.0, 1.0) * np.clip(half - np.abs(v) + 0.5, 0.0, 1.0)
        mod = 1.0
        if kind == "hull":  # the hull side / sea surface dihedral is brighter than the deck
            mod = 0.6 + 1.4 * np.clip(np.abs(v) / np.maximum(half, 0.5), 0.0, 1.0) ** 4
        if rng is not None and blocks is not None:
            bl, spread = blocks
            n = int(math.ceil(2 * hl / bl)) + 1
            gains = db(rng.normal(0.0, spread, n)).astype(np.float32)
            mod = mod * gains[np.clip(((u + hl) / bl).astype(np.int64), 0, n - 1)]
        return cov, mod
    if kind == "ring":
        _, cx, cy, r, hw, _, look = p
        dx, dy = px - cx, py - cy
        d = np.sqrt(dx * dx + dy * dy)
        cov = np.clip(hw - np.abs(d - r) + 0.5, 0.0, 1.0)
        # wall-ground dihedral: brightest facing the radar and on the far side, dim at the flanks
        c, s = _rot(look)
        cosang = (dx * c + dy * s) / np.maximum(d, 1e-3)
        return cov, 0.25 + 0.75 * cosang ** 2
    if kind == "disc":
        _, cx, cy, r, _ = p
        dx, dy = px - cx, py - cy
        cov = np.clip(r - np.sqrt(dx * dx + dy * dy) + 0.5, 0.0, 1.0)
        return cov, 1.0
    raise ValueError(kind)


def _level(p):
    return p[6] if p[0] in ("rect", "hull") else (p[5] if p[0] == "ring" else p[4])


def _points_uv(cx, cy, angle, u, v):
    c, s = _rot(angle)
    return cx + u * c - v * s, cy + u * s + v * c


def make_ship(rng, cx, cy, angle, length, beam_ratio, level):
    hl, hw = length / 2.0, max(0.7, length * beam_ratio / 2.0)
    prims = [_rect(cx, cy, angle, hl, hw, level, kind="hull")]
    n = int(np.clip(length / 2.5, 4, 60))
    u = rng.uniform(-0.85 * hl, 0.85 * hl, n)
    sup = rng.choice((-0.55, 0.45)) * hl  # superstructure: a tight group of strong returns
    u = np.concatenate([u, sup + rng.normal(0.0, 0.06 * hl + 0.3, 3)])
    v = np.clip(rng.normal(0.0, hw / 3.0, u.size), -0.6 * hw, 0.6 * hw)
    x, y = _points_uv(cx, cy, angle, u, v)
    amp = level * 10 ** rng.uniform(0.8, 2.0, u.size)
    amp[-3:] *= 3.0
    return {"prims": prims, "points": np.stack([x, y, amp], axis=1), "blocks": (max(2.0, length * rng.uniform(0.06, 0.2)), 3.0)}


def make_aircraft(rng, cx, cy, heading, span, level):
    s = span
    hl = s * rng.uniform(0.44, 0.52)
    hw = max(0.7, s * 0.045)
    prims = [_rect(cx, cy, heading, hl, hw, level)]
    u0 = s * rng.uniform(0.0, 0.12)
    sweep = s * rng.uniform(0.08, 0.28)
    tail_u = -0.88 * hl
    pts_uv = [(hl, 0.0), (-hl, 0.0)]
    for side in (-1.0, 1.0):
        tip = (u0 - sweep, side * s / 2.0)
        x0, y0 = _points_uv(cx, cy, heading, u0, 0.0)
        x1, y1 = _points_uv(cx, cy, heading, *tip)
        prims.append(_seg(x0, y0, x1, y1, max(0.7, s * 0.05), level))
        tx0, ty0 = _points_uv(cx, cy, heading, tail_u, 0.0)
        tx1, ty1 = _points_uv(cx, cy, heading, tail_u - 0.06 * s, side * 0.17 * s)
        prims.append(_seg(tx0, ty0, tx1, ty1, max(0.6, s * 0.03), level))
        pts_uv.append(tip)
        for f in (0.36, 0.62) if s > 40 else (0.4,):
            pts_uv.append((u0 - sweep * f, side * f * s / 2.0))  # engines
    for f in np.linspace(-0.7, 0.8, int(np.clip(s / 8, 2, 8))):
        pts_uv.append((f * hl, 0.0))
    uv = np.asarray(pts_uv, dtype=np.float64)
    x, y = _points_uv(cx, cy, heading, uv[:, 0], uv[:, 1])
    amp = level * 10 ** rng.uniform(1.0, 2.0, len(uv))
    return {"prims": prims, "points": np.stack([x, y, amp], axis=1), "blocks": (rng.uniform(2.0, 4.0), 5.0)}


def make_car(rng, cx, cy, angle, length, width_ratio, level):
    hl, hw = length / 2.0, max(0.7, length * width_ratio / 2.0)
    prims = [_rect(cx, cy, angle, hl, hw, level)]
    n = int(rng.integers(2, 5))
    u = rng.uniform(-0.7 * hl, 0.7 * hl, n)
    v = rng.uniform(-0.5 * hw, 0.5 * hw, n)
    x, y = _points_uv(cx, cy, angle, u, v)
    amp = level * 10 ** rng.uniform(1.0, 1.8, n)
    return {"prims": prims, "points": np.stack([x, y, amp], axis=1), "blocks": (2.0, 3.0)}


def make_tank(rng, cx, cy, radius, look, level):
    """Oil storage tank: bright wall ring (dihedral) strongest along the range axis, dim roof."""
    hw = max(0.7, radius * 0.12)
    r = max(radius - hw, 1.0)
    prims = [("ring", float(cx), float(cy), float(r), float(hw), float(level), float(look)),
             ("disc", float(cx), float(cy), float(r), float(level * 0.12))]
    c, s = _rot(look)
    ang = look + np.concatenate([rng.normal(math.pi, 0.35, 3), rng.normal(0.0, 0.35, 2)])
    x = cx + r * np.cos(ang)
    y = cy + r * np.sin(ang)
    amp = level * 10 ** rng.uniform(0.5, 1.2, ang.size)
    shadow = (float(cx + 0.7 * r * c), float(cy + 0.7 * r * s), float(r))
    return {"prims": prims, "points": np.stack([x, y, amp], axis=1), "shadow": shadow}


def make_bridge(rng, cx, cy, angle, length, half_width, level, ghosts=True):
    prims = [_rect(cx, cy, angle, length / 2.0, half_width, level)]
    if ghosts:  # deck-water double bounce: a weaker parallel line over the water
        off = half_width * rng.uniform(2.5, 4.0) * rng.choice((-1.0, 1.0))
        gx, gy = _points_uv(cx, cy, angle, 0.0, off)
        prims.append(_rect(gx, gy, angle, 0.35 * length, max(0.6, 0.6 * half_width), level * 0.35))
    spacing = max(5.0, length / rng.uniform(6, 12))
    u = np.arange(-length / 2.0 + spacing / 2.0, length / 2.0, spacing)
    x, y = _points_uv(cx, cy, angle, u, np.zeros_like(u))
    amp = level * 10 ** rng.uniform(0.8, 1.6, u.size)
    return {"prims": prims, "points": np.stack([x, y, amp], axis=1), "blocks": (rng.uniform(3.0, 6.0), 3.0)}


def make_harbor(rng, px, py, tangent, seaward, width, pier_len, level):
    """Quay along the coast at (px, py), piers into the sea, often a breakwater offshore."""
    tx, ty = tangent
    nx, ny = seaward
    wq = max(1.0, width * 0.025)
    prims = [_seg(px - tx * width / 2 - nx * wq, py - ty * width / 2 - ny * wq,
                  px + tx * width / 2 - nx * wq, py + ty * width / 2 - ny * wq, wq, level)]
    depth = pier_len * rng.uniform(0.2, 0.4)  # container yard / port buildings behind the quay
    yx, yy = px - nx * (2 * wq + depth / 2), py - ny * (2 * wq + depth / 2)
    prims.append(_rect(yx, yy, math.atan2(ty, tx), width * rng.uniform(0.4, 0.5), depth / 2, level * 0.4))
    n_piers = int(rng.integers(2, 6))
    offs = np.linspace(-0.45 * width, 0.45 * width, n_piers) + rng.normal(0.0, 0.03 * width, n_piers)
    wp = max(0.8, width * rng.uniform(0.012, 0.025))
    pts = []
    for o in offs:
        ln = pier_len * rng.uniform(0.55, 1.0)
        x0, y0 = px + tx * o - nx * wq, py + ty * o - ny * wq
        x1, y1 = x0 + nx * ln, y0 + ny * ln
        prims.append(_seg(x0, y0, x1, y1, wp, level))
        k = max(2, int(ln / 6))
        f = np.linspace(0.15, 0.95, k)
        pts += [(x0 + (x1 - x0) * fi, y0 + (y1 - y0) * fi) for fi in f]
    if rng.random() < 0.65:  # breakwater
        d = pier_len * rng.uniform(1.1, 1.35)
        a, b = rng.uniform(-0.5, -0.2) * width, rng.uniform(0.25, 0.5) * width
        x0, y0 = px + tx * a + nx * d, py + ty * a + ny * d
        x1, y1 = px + tx * b + nx * d * rng.uniform(0.8, 1.0), py + ty * b + ny * d * rng.uniform(0.8, 1.0)
        prims.append(_seg(x0, y0, x1, y1, max(0.8, wp * 1.2), level * 0.8))
        pts += [(x0 + (x1 - x0) * fi, y0 + (y1 - y0) * fi) for fi in np.linspace(0.05, 0.95, 5)]
    cr = rng.uniform(-0.45, 0.45, int(rng.integers(3, 8))) * width  # cranes on the quay
    pts += [(px + tx * o - nx * wq, py + ty * o - ny * wq) for o in cr]
    p = np.asarray(pts, dtype=np.float64)
    amp = level * 10 ** rng.uniform(0.8, 1.8, len(p))
    return {"prims": prims, "points": np.stack([p[:, 0], p[:, 1], amp], axis=1), "blocks": (rng.uniform(6.0, 12.0), 3.0)}


def _patch(x0, y0, x1, y1, size):
    """Slices of the pixels under a continuous box, and their centre coordinates."""
    c0, r0 = max(int(math.floor(x0)), 0), max(int(math.floor(y0)), 0)
    c1, r1 = min(max(int(math.ceil(x1)) + 1, c0 + 1), size), min(max(int(math.ceil(y1)) + 1, r0 + 1), size)
    c0, r0 = min(c0, c1 - 1), min(r0, r1 - 1)
    px = (np.arange(c0, c1, dtype=np.float32) + 0.5)[None, :]
    py = (np.arange(r0, r1, dtype=np.float32) + 0.5)[:, None]
    return (slice(r0, r1), slice(c0, c1)), px, py


def render_target(target, h, w, rng=None):
    """Rasterise one target: (patch slices, body reflectivity patch, tight integer bbox or None).

    With rng, the body gets a log-normal texture (many small facets of random strength).
    """
    x0, y0, x1, y1 = target_bounds(target["prims"])
    c0, r0 = max(int(math.floor(x0)) - 1, 0), max(int(math.floor(y0)) - 1, 0)
    c1, r1 = min(int(math.ceil(x1)) + 2, w), min(int(math.ceil(y1)) + 2, h)
    if c1 <= c0 or r1 <= r0:
        return None
    px = (np.arange(c0, c1, dtype=np.float32) + 0.5)[None, :]
    py = (np.arange(r0, r1, dtype=np.float32) + 0.5)[:, None]
    body = np.zeros((r1 - r0, c1 - c0), dtype=np.float32)
    mask = np.zeros(body.shape, dtype=bool)
    for p in target["prims"]:
        cov, mod = _coverage(p, px, py, rng, target.get("blocks"))
        np.maximum(body, cov * (_level(p) * mod), out=body)
        if p[0] != "disc":
            mask |= cov >= 0.35
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    if rng is not None:
        body *= np.exp(rng.normal(-0.3, 0.8, body.shape)).astype(np.float32)
        body = _convolve_sep(body, np.array([0.25, 0.5, 0.25], dtype=np.float32))  # system blur
    bbox = (c0 + int(cols[0]), r0 + int(rows[0]), c0 + int(cols[-1]), r0 + int(rows[-1]))
    return (slice(r0, r1), slice(c0, c1)), body, bbox


# ---------------------------------------------------------------------------------------------
# Scene rendering


def _psf_kernel(res: float) -> np.ndarray:
    """1-D intensity impulse response: Hann-weighted sinc^2, peak 1 (sidelobes give the SAR cross)."""
    x = np.arange(-5, 6, dtype=np.float64)
    k = np.sinc(x / res) ** 2 * (0.5 + 0.5 * np.cos(np.pi * x / 6.0))
    return (k / k.max()).astype(np.float32)


def _convolve_sep(img, k):
    """Separable 'same' convolution with zero padding (vectorised: one shifted add per tap)."""
    r = len(k) // 2
    out = np.zeros_like(img)
    pad = np.pad(img, ((0, 0), (r, r)))
    for i, kv in enumerate(k):
        if kv:
            out += kv * pad[:, i:i + img.shape[1]]
    pad = np.pad(out, ((r, r), (0, 0)))
    out2 = np.zeros_like(img)
    for i, kv in enumerate(k):
        if kv:
            out2 += kv * pad[i:i + img.shape[0], :]
    return out2


def _curve_at(grid, vals, a):
    """A sampled curve's value and slope (central difference) at along-coordinate a."""
    p = float(np.interp(a, grid, vals))
    dp = float(np.interp(a + 1.0, grid, vals) - np.interp(a - 1.0, grid, vals)) / 2.0
    return p, dp


class _Scene:
    """Mutable state while one image is composed: masks, targets, planned boxes."""

    def __init__(self, rng, size):
        self.rng = rng
        self.h = self.w = size
        self.size = size
        self.water = np.zeros((size, size), dtype=np.float32)
        self.tarmac = np.zeros((size, size), dtype=np.float32)
        self.targets = []  # (category, target dict)
        self.boxes = []  # planned boxes (x0, y0, x1, y1) for overlap checks
        self.yy = (np.arange(size, dtype=np.float32) + 0.5)[:, None]
        self.xx = (np.arange(size, dtype=np.float32) + 0.5)[None, :]
        self.coast = None
        self.river = None

    # -- surfaces -----------------------------------------------------------------------------
    def _frame(self, phi):
        tx, ty = math.cos(phi), math.sin(phi)
        nx, ny = -ty, tx
        cx = cy = self.size / 2.0
        along = (self.xx - cx) * tx + (self.yy - cy) * ty
        across = (self.xx - cx) * nx + (self.yy - cy) * ny
        return (tx, ty), (nx, ny), along, across

    def _curve(self, amplitude, cells):
        n = 257
        grid = np.linspace(-0.75 * self.size, 0.75 * self.size, n)
        vals = amplitude * smooth_curve(self.rng, n, cells)
        return grid, vals

    def add_coast(self, land_fraction):
        """Land on one side of a smooth random coastline; the rest is water."""
        rng = self.rng
        phi = rng.uniform(0, 2 * math.pi)
        t, n, along, across = self._frame(phi)
        grid, vals = self._curve(self.size * rng.uniform(0.04, 0.10), int(rng.integers(3, 7)))
        s = across + np.interp(along, grid, vals).astype(np.float32)
        offset = float(np.quantile(s[::8, ::8], 1.0 - land_fraction))
        land = np.clip(s - offset + 0.5, 0.0, 1.0)
        self.water = np.minimum(self.water + (1.0 - land), 1.0).astype(np.float32) if self.water.any() else (1.0 - land)
        self.coast = (t, n, grid, vals, offset)

    def coast_point(self, a):
        """Point on the coast at along-coordinate a, its tangent and seaward normal."""
        (tx, ty), (nx, ny), grid, vals, offset = self.coast
        p, dp = _curve_at(grid, vals, a)
        c = self.size / 2.0
        across = offset - p
        x, y = c + a * tx + across * nx, c + a * ty + across * ny
        tan = np.array([tx - dp * nx, ty - dp * ny])
        tan /= np.linalg.norm(tan)
        sea = -np.array([nx + dp * tx, ny + dp * ty])
        sea /= np.linalg.norm(sea)
        return x, y, (float(tan[0]), float(tan[1])), (float(sea[0]), float(sea[1]))

    def add_river(self, width):
        rng = self.rng
        phi = rng.uniform(0, 2 * math.pi)
        t, n, along, across = self._frame(phi)
        grid, vals = self._curve(self.size * rng.uniform(0.02, 0.07), int(rng.integers(2, 4)))
        offset = rng.uniform(-0.25, 0.25) * self.size
        vals = vals + offset
        s = across - np.interp(along, grid, vals).astype(np.float32)
        self.water = np.clip(width / 2.0 - np.abs(s) + 0.5, 0.0, 1.0).astype(np.float32)
        self.river = (t, n, grid, vals, width)

    def river_point(self, a):
        (tx, ty), (nx, ny), grid, vals, width = self.river
        p, dp = _curve_at(grid, vals, a)
        c = self.size / 2.0
        x, y = c + a * tx + p * nx, c + a * ty + p * ny
        return x, y, math.atan2(ty + dp * ny, tx + dp * nx), math.atan(dp)

    # -- placement ----------------------------------------------------------------------------
    def surface_ok(self, xs, ys, want_water):
        xi = np.clip(np.asarray(xs, dtype=np.float64).astype(np.int64), 0, self.w - 1)
        yi = np.clip(np.asarray(ys, dtype=np.float64).astype(np.int64), 0, self.h - 1)
        v = self.water[yi, xi]
        return bool(np.all(v > 0.75)) if want_water else bool(np.all(v < 0.25))

    def fits(self, box, gap=3.0, margin=2.0):
        x0, y0, x1, y1 = box
        if x0 < margin or y0 < margin or x1 > self.w - margin or y1 > self.h - margin:
            return False
        for b in self.boxes:
            if x0 < b[2] + gap and b[0] < x1 + gap and y0 < b[3] + gap and b[1] < y1 + gap:
                return False
        return True

    def accept(self, category, target):
        self.targets.append((category, target))
        self.boxes.append(target_bounds(target["prims"]))


def _sample_area(rng, category, size, n_targets, image_offset):
    if n_targets == 1 and category not in ("car", "tank") and rng.random() < LARGE_P:
        r = rng.uniform(0.12, 0.40)
    else:
        mu, sd = AREA_LOG10[category]
        r = 10 ** (mu + image_offset + sd * rng.standard_normal())
    return float(np.clip(r, 1e-4, 0.45)) * size * size


def _box_len(area, angle, k):
    """Length of a k-thin oriented bar whose axis-aligned box has the given area."""
    c, s = abs(math.cos(angle)), abs(math.sin(angle))
    return math.sqrt(area / max((c + k * s) * (s + k * c), 1e-6))


def _place_ships(sc, n, image_offset, in_river=False, near=None):
    rng, size = sc.rng, sc.size
    last = None
    for i in range(n):
        area = _sample_area(rng, "ship", size, n + len(sc.targets), image_offset)
        k = rng.uniform(0.10, 0.20)
        shrink = 1.0
        for attempt in range(80):
            if attempt and attempt % 16 == 0:
                shrink *= 0.75
            if in_river:
                a = rng.uniform(-0.45, 0.45) * size
                cx, cy, tang, _ = sc.river_point(a)
                angle = tang + rng.normal(0, 0.05)
                width = sc.river[4]
                length = min(_box_len(area, angle, k) * shrink, 0.9 * size)
                length = min(length, 0.35 * width / k, 3.0 * width)
                off = rng.uniform(-0.25, 0.25) * width
                cx, cy = cx - math.sin(tang) * off, cy + math.cos(tang) * off
            else:
                angle = rng.uniform(0, math.pi)
                if last is not None and rng.random() < 0.4:  # convoy / anchorage: same heading, close by
                    angle = last[2] + rng.normal(0, 0.15)
                length = min(_box_len(area, angle, k) * shrink, 0.85 * size)
                anchor = near if (near is not None and rng.random() < 0.7) else (last if (last is not None and rng.random() < 0.35) else None)
                if anchor is not None:
                    d = rng.uniform(0.8, 3.0) * max(length, anchor[3])
                    th = rng.uniform(0, 2 * math.pi)
                    cx, cy = anchor[0] + d * math.cos(th), anchor[1] + d * math.sin(th)
                else:
                    cx, cy = rng.uniform(0, size), rng.uniform(0, size)
            length = max(length, 8.0)
            target = make_ship(rng, cx, cy, angle, length, k, db(rng.uniform(-9, -4)))
            box = target_bounds(target["prims"])
            if not sc.fits(box):
                continue
            c, s = math.cos(angle), math.sin(angle)
            hl, hw = length / 2, max(0.7, length * k / 2)
            xs = [cx, cx + hl * c, cx - hl * c, cx - hw * s, cx + hw * s]
            ys = [cy, cy + hl * s, cy - hl * s, cy + hw * c, cy - hw * c]
            if not sc.surface_ok(xs, ys, want_water=True):
                continue
            if not in_river and rng.random() < 0.4:  # a faint turbulent wake astern
                target["wake"] = (cx - c * hl, cy - s * hl, angle + math.pi, length * rng.uniform(1.0, 3.0), hw)
            sc.accept("ship", target)
            last = (cx, cy, angle, length)
            break


def _place_cluster(sc, category, n, image_offset, near=None, spread=(1.3, 3.0)):
    """Aircraft, cars or tanks on land, each close to the previous one (rows, farms, aprons)."""
    rng, size = sc.rng, sc.size
    look = sc.look
    last = near
    angle0 = rng.uniform(0, math.pi)
    placed = 0
    for i in range(n):
        area = _sample_area(rng, category, size, n + len(sc.targets), image_offset)
        shrink = 1.0
        for attempt in range(80):
            if attempt and attempt % 16 == 0:
                shrink *= 0.75
            if category == "aircraft":
                dim = min(max(math.sqrt(area) * shrink, 10.0), 0.8 * size)
            elif category == "car":
                k = rng.uniform(0.4, 0.55)
                angle = angle0 + (rng.normal(0, 0.1) if rng.random() < 0.7 else rng.uniform(0, math.pi))
                dim = min(max(_box_len(area, angle, k) * shrink, 5.0), 0.3 * size)
            else:
                dim = min(max(math.sqrt(area) * shrink, 6.0), 0.6 * size)
            if last is not None and rng.random() < 0.85:
                d = rng.uniform(*spread) * max(dim, last[2])
                th = rng.uniform(0, 2 * math.pi)
                cx, cy = last[0] + d * math.cos(th), last[1] + d * math.sin(th)
            else:
                cx, cy = rng.uniform(0, size), rng.uniform(0, size)
            if category == "aircraft":
                heading = angle0 + (rng.normal(0, 0.2) if rng.random() < 0.6 else rng.uniform(0, 2 * math.pi))
                target = make_aircraft(rng, cx, cy, heading, dim, db(rng.uniform(-12, -7)))
            elif category == "car":
                target = make_car(rng, cx, cy, angle, dim, k, db(rng.uniform(-5, -1)))
            else:
                target = make_tank(rng, cx, cy, dim / 2.0, look, db(rng.uniform(-3, 1)))
            box = target_bounds(target["prims"])
            if not sc.fits(box):
                continue
            x0, y0, x1, y1 = box
            if not sc.surface_ok([cx, x0 + 1, x1 - 1, cx, cx], [cy, cy, cy, y0 + 1, y1 - 1], want_water=False):
                continue
            sc.accept(category, target)
            last = (cx, cy, dim)
            placed += 1
            break
    return placed


def _place_bridges(sc, n, image_offset):
    rng, size = sc.rng, sc.size
    width = sc.river[4]
    used = []
    for i in range(n):
        for attempt in range(80):
            reach = 0.4 * (1.0 - attempt / 100.0)  # later tries stay nearer the centre, with shorter spans
            a = rng.uniform(-reach, reach) * size
            if any(abs(a - u) < 0.2 * size for u in used):
                continue
            cx, cy, tang, slope = sc.river_point(a)
            over = rng.uniform(0.15, 0.45) * width * (1.0 - attempt / 100.0)
            length = width / max(math.cos(slope), 0.5) + 2 * over
            hw = max(1.0, min(width * rng.uniform(0.03, 0.06), 0.01 * size + 1.0))
            target = make_bridge(rng, cx, cy, tang + math.pi / 2, length, hw, db(rng.uniform(-4, 0)))
            if not sc.fits(target_bounds(target["prims"])):
                continue
            sc.accept("bridge", target)
            used.append(a)
            break


def _place_harbor(sc, image_offset):
    rng, size = sc.rng, sc.size
    area = _sample_area(rng, "harbor", size, 1, image_offset)
    scale = math.sqrt(area)
    for attempt in range(80):
        if attempt and attempt % 16 == 0:
            scale *= 0.8
        a = rng.uniform(-0.35, 0.35) * size
        x, y, tan, sea = sc.coast_point(a)
        width = max(scale * rng.uniform(0.9, 1.3), 30.0)
        pier = max(scale * rng.uniform(0.45, 0.8), 12.0)
        target = make_harbor(rng, x, y, tan, sea, width, pier, db(rng.uniform(-5, -1)))
        if sc.fits(target_bounds(target["prims"])):
            sc.accept("harbor", target)
            return (x + sea[0] * pier * 0.6, y + sea[1] * pier * 0.6, 0.0, width)
    return None


def _place_fallback(sc):
    rng, size = sc.rng, sc.size
    for attempt in range(400):
        cx, cy = rng.uniform(0.1, 0.9) * size, rng.uniform(0.1, 0.9) * size
        dim = max(size * rng.uniform(0.03, 0.08) * (1.0 - attempt / 500.0), 8.0)
        if sc.water[int(cy), int(cx)] > 0.75:
            angle = rng.uniform(0, math.pi)
            target, cat = make_ship(rng, cx, cy, angle, dim, 0.15, db(rng.uniform(-9, -4))), "ship"
            c, s = math.cos(angle), math.sin(angle)
            xs, ys, water = [cx + dim / 2 * c, cx - dim / 2 * c], [cy + dim / 2 * s, cy - dim / 2 * s], True
        else:
            target, cat = make_tank(rng, cx, cy, dim / 4.0, sc.look, db(rng.uniform(-3, 1))), "tank"
            xs, ys, water = [cx - dim / 4, cx + dim / 4, cx], [cy, cy, cy - dim / 4], False
        if sc.fits(target_bounds(target["prims"])) and sc.surface_ok(xs, ys, want_water=water):
            sc.accept(cat, target)
            return


def _land_reflectivity(rng, size):
    """Textured land: agricultural parcels (a warped, rotated grid of strips of random sigma0) and
    terrain-scale variation. Computed at half resolution and upsampled (sigma0 is smooth at that
    scale; the speckle added later is full resolution)."""
    n = (size + 1) // 2
    yy = (np.arange(n, dtype=np.float32) + 0.5)[:, None]
    xx = (np.arange(n, dtype=np.float32) + 0.5)[None, :]
    phi = rng.uniform(0, math.pi)
    c, s = math.cos(phi), math.sin(phi)
    warp = smooth_field(rng, n, n, 3, 2) * np.float32(n * 0.02)
    u = xx * c + yy * s + warp
    v = -xx * s + yy * c + warp
    strip = n * rng.uniform(0.08, 0.2)
    row = np.floor(v / strip).astype(np.int64)
    n_rows = 4 * int(n / strip) + 8
    cell = (n * rng.uniform(0.15, 0.5, n_rows)).astype(np.float32)
    shift = (n * rng.uniform(0, 1, n_rows)).astype(np.float32)
    ri = np.mod(row, n_rows)
    col = np.floor((u + shift[ri]) / cell[ri]).astype(np.int64)
    table = db(rng.normal(0.0, 2.0, 4096)).astype(np.float32)
    parcels = table[np.mod(ri * 7919 + col * 104729, 4096)]
    # some areas are not farmland: blend towards unstructured terrain
    farm = np.clip(smooth_field(rng, n, n, 2, 2) * 1.5 + rng.uniform(-1.0, 1.0), 0.0, 1.0)
    terrain = smooth_field(rng, n, n, int(rng.integers(4, 9)), 3, scale=0.5)
    fine = np.exp(rng.normal(0.0, 0.35, (n, n)).astype(np.float32))  # vegetation / relief texture
    base = np.float32(db(rng.uniform(-13, -10)))
    return _upsample(base * (farm * parcels + (1.0 - farm)) * terrain * fine, size, size)


def _roads(sc, n):
    """Dark straight roads (smooth asphalt) crossing the land."""
    rng = sc.rng
    mask = np.zeros((sc.h, sc.w), dtype=np.float32)
    for _ in range(n):
        phi = rng.uniform(0, math.pi)
        off = rng.uniform(-0.4, 0.4) * sc.size
        c = sc.size / 2.0
        d = (sc.xx - c) * -math.sin(phi) + (sc.yy - c) * math.cos(phi) - off
        np.maximum(mask, np.clip(rng.uniform(1.0, 3.0) - np.abs(d) + 0.5, 0, 1), out=mask)
    return mask


def _layout_scene(seed, split: str, index: int, scene: str, size: int):
    """Surfaces and target placement of one image (the part that fixes the annotations)."""
    rng = rng_for(seed, "image", split, index)
    sc = _Scene(rng, size)
    sc.look = rng.choice((0.0, 0.5 * math.pi, math.pi, 1.5 * math.pi))  # range direction
    cats = scene_composition(rng, scene)
    image_offset = float(rng.normal(0.0, 0.15))
    roads = None

    if scene == "sea":
        sc.water[:] = 1.0
        if rng.random() < 0.3:
            sc.water[:] = 0.0
            sc.add_coast(rng.uniform(0.1, 0.3))
        _place_ships(sc, len(cats), image_offset)
    elif scene == "harbor":
        sc.add_coast(rng.uniform(0.35, 0.6))
        near = _place_harbor(sc, image_offset)
        _place_ships(sc, cats.count("ship"), image_offset, near=near)
    elif scene == "river":
        n_bridges = cats.count("bridge")
        area = _sample_area(rng, "bridge", size, len(cats), image_offset)
        k = rng.uniform(0.06, 0.12)
        length = float(np.clip(_box_len(area, rng.uniform(0, math.pi), k), 20.0, 0.7 * size))
        width = float(np.clip(length / rng.uniform(1.3, 1.9), 8.0, 0.5 * size))
        sc.add_river(width)
        _place_bridges(sc, n_bridges, image_offset)
        _place_ships(sc, cats.count("ship"), image_offset, in_river=True)
    elif scene == "airfield":
        phi = rng.uniform(0, math.pi)
        c = size / 2.0
        off = rng.uniform(-0.35, 0.35) * size
        d = (sc.xx - c) * -math.sin(phi) + (sc.yy - c) * math.cos(phi) - off
        sc.tarmac = np.clip(size * rng.uniform(0.025, 0.05) - np.abs(d) + 0.5, 0, 1).astype(np.float32)
        n_air = cats.count("aircraft")
        _place_cluster(sc, "aircraft", n_air, image_offset, spread=(1.4, 2.5))
        for cat in ("car", "tank"):
            if cat in cats:
                anchor = sc.targets[-1][1] if (cat == "car" and sc.targets) else None
                near = None
                if anchor is not None:
                    x0, y0, x1, y1 = target_bounds(anchor["prims"])
                    near = ((x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0))
                _place_cluster(sc, cat, cats.count(cat), image_offset, near=near,
                               spread=(1.2, 2.5) if cat == "car" else (1.3, 2.5))
        # apron: smooth concrete in the runway frame under all aircraft and service cars, and a taxiway
        cs, sn = math.cos(phi), math.sin(phi)
        along = (sc.xx - c) * cs + (sc.yy - c) * sn
        corners = []
        for cat, t in sc.targets:
            if cat in ("aircraft", "car"):
                x0, y0, x1, y1 = target_bounds(t["prims"])
                for x, y in ((x0, y0), (x0, y1), (x1, y0), (x1, y1)):
                    corners.append(((x - c) * cs + (y - c) * sn, -(x - c) * sn + (y - c) * cs - off))
        if corners:
            cu = np.array(corners)
            m = 0.04 * size + 4
            u0, u1 = cu[:, 0].min() - m, cu[:, 0].max() + m
            v0, v1 = cu[:, 1].min() - m, cu[:, 1].max() + m
            au = np.clip(np.minimum(along - u0, u1 - along) + 0.5, 0, 1)
            av = np.clip(np.minimum(d - v0, v1 - d) + 0.5, 0, 1)
            np.maximum(sc.tarmac, au * av, out=sc.tarmac)
            mid = (u0 + u1) / 2
            tw = size * 0.012 + 1
            lo_v, hi_v = (min(0.0, v0), max(0.0, v1))
            taxi = np.clip(tw - np.abs(along - mid) + 0.5, 0, 1) * np.clip(np.minimum(d - lo_v, hi_v - d) + 0.5, 0, 1)
            np.maximum(sc.tarmac, taxi, out=sc.tarmac)
    elif scene == "land":
        roads = _roads(sc, int(rng.integers(0, 3)))
        for cat in ("tank", "car"):
            if cat in cats:
                _place_cluster(sc, cat, cats.count(cat), image_offset,
                               spread=(1.15, 1.8) if cat == "tank" else (1.2, 2.2))
    else:
        raise ValueError(f"unknown scene {scene!r}")
    if not sc.targets:  # every image has at least one box: a small target on whatever surface there is
        _place_fallback(sc)
    sc.roads = roads
    return sc


def scene_annotations(seed, split: str, index: int, scene: str, size: int):
    """The annotations render_scene would give, without drawing the image: [(category, [x, y, w, h])]."""
    sc = _layout_scene(seed, split, index, scene, size)
    out = []
    for cat, t in sc.targets:
        res = render_target(t, size, size)
        if res is not None:
            (bx0, by0, bx1, by1) = res[2]
            out.append((cat, [bx0, by0, bx1 - bx0 + 1, by1 - by0 + 1]))
    return out


def render_scene(seed, split: str, index: int, scene: str, size: int):
    """One synthetic SAR image: (uint8 array (size, size), [(category, [x, y, w, h]), ...])."""
    sc = _layout_scene(seed, split, index, scene, size)
    rng, roads = sc.rng, sc.roads

    # ---- reflectivity map ----
    land = _land_reflectivity(rng, size)
    sea = smooth_field(rng, size, size, 4, 2, scale=0.3) * np.float32(db(rng.uniform(-21, -16)))
    if sc.water.any():
        refl = land + sc.water * (sea - land)
    else:
        refl = land
    if roads is not None:
        refl *= 1.0 - 0.85 * roads
    if sc.tarmac.any():
        concrete = np.float32(db(rng.uniform(-21, -18)) / np.mean(land))
        refl = refl + sc.tarmac * (land * concrete - refl)
    for cat, t in sc.targets:
        if "wake" in t:  # faint turbulent wake astern (drawn on water only; not part of the box)
            wx, wy, wa, wl, whw = t["wake"]
            c, s = math.cos(wa), math.sin(wa)
            ex, ey = wx + c * wl, wy + s * wl
            (rs, cs), px, py = _patch(min(wx, ex) - 2 * whw, min(wy, ey) - 2 * whw,
                                      max(wx, ex) + 2 * whw, max(wy, ey) + 2 * whw, size)
            u = (px - wx) * c + (py - wy) * s
            v = -(px - wx) * s + (py - wy) * c
            fade = np.clip(1.0 - u / wl, 0, 1) * (u > 0)
            refl[rs, cs] += (sea[rs, cs] * fade * 0.8 * np.clip(0.7 * whw * (1 + u / wl) - np.abs(v) + 0.5, 0, 1)
                             * sc.water[rs, cs])
        if "shadow" in t:  # range shadow behind a storage tank
            sx, sy, sr = t["shadow"]
            (rs, cs), px, py = _patch(sx - sr - 1, sy - sr - 1, sx + sr + 1, sy + sr + 1, size)
            sh = np.clip(sr - np.sqrt((px - sx) ** 2 + (py - sy) ** 2) + 0.5, 0, 1)
            refl[rs, cs] *= 1.0 - 0.8 * sh
    annotations, point_sets = [], []
    for cat, t in sc.targets:
        res = render_target(t, size, size, rng)
        if res is None:
            continue
        (rs, cs), body, (bx0, by0, bx1, by1) = res
        refl[rs, cs] += body
        point_sets.append(t["points"])
        annotations.append((cat, [bx0, by0, bx1 - bx0 + 1, by1 - by0 + 1]))

    # ---- speckle, impulse response, log compression ----
    looks = int(rng.choice((1, 2, 3, 4), p=(0.3, 0.3, 0.2, 0.2)))
    inten = rng.standard_gamma(looks, size=(size, size), dtype=np.float32)  # Gamma(L, 1), mean L
    inten *= refl
    inten *= np.float32(1.0 / looks)  # -> refl * Gamma(L, 1/L): mean refl
    psf = _psf_kernel(rng.uniform(1.0, 1.4))
    r = len(psf) // 2
    for p in point_sets:  # strong scatterers, spread by the impulse response, patch by patch
        xi = np.clip(p[:, 0].astype(np.int64), 0, size - 1)
        yi = np.clip(p[:, 1].astype(np.int64), 0, size - 1)
        r0, r1 = max(int(yi.min()) - r, 0), min(int(yi.max()) + r + 1, size)
        c0, c1 = max(int(xi.min()) - r, 0), min(int(xi.max()) + r + 1, size)
        patch = np.zeros((r1 - r0, c1 - c0), dtype=np.float32)
        np.add.at(patch, (yi - r0, xi - c0), p[:, 2].astype(np.float32))
        inten[r0:r1, c0:c1] += _convolve_sep(patch, psf)
    gain = rng.uniform(-2.0, 2.0)
    lo, hi = -26.0 + gain, 6.0 + gain
    inten += np.float32(1e-7)
    val = np.log10(inten, out=inten)
    val *= np.float32(10.0 * 255.0 / (hi - lo))
    val -= np.float32(lo * 255.0 / (hi - lo) - 0.5)
    img = np.clip(val, 0.0, 255.0, out=val).astype(np.uint8)
    return img, annotations


# ---------------------------------------------------------------------------------------------
# Datasets


def _coco(images, annotations, info=None):
    out = {}
    if info is not None:
        out["info"] = info
    out["images"] = images
    out["annotations"] = annotations
    out["categories"] = [dict(c) for c in COCO_CATEGORIES]
    return out


def encode_image(img: np.ndarray, ext: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    im = Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8))  # 2-D uint8 -> mode "L"
    if ext == "png":
        im.save(buf, format="PNG", compress_level=6)
    elif ext == "bmp":
        im.save(buf, format="BMP")
    else:
        im.save(buf, format="JPEG", quality=90, optimize=False, progressive=False)
    return buf.getvalue()


def image_file_name(split: str, item: dict) -> str:
    return f"{split}_{item['index']:06d}.{item['ext']}"


def render_image_record(seed, split: str, item: dict):
    """Render and encode one planned image: (file_name, bytes, annotations)."""
    img, anns = render_scene(seed, split, item["index"], item["scene"], item["size"])
    return image_file_name(split, item), encode_image(img, item["ext"]), anns


def _render_job(args):
    seed, split, item = args
    return render_image_record(seed, split, item)


def _coco_split(seed, split: str, plan: list, anns_per_image: list) -> dict:
    images, annotations = [], []
    ann_id = 1
    for image_id, (item, anns) in enumerate(zip(plan, anns_per_image), start=1):
        images.append({"id": image_id, "file_name": image_file_name(split, item),
                       "width": item["size"], "height": item["size"]})
        for cat, (x, y, w, h) in anns:
            annotations.append({
                "id": ann_id, "image_id": image_id, "category_id": CAT_ID[cat],
                "bbox": [float(x), float(y), float(w), float(h)], "area": float(w * h), "iscrowd": 0,
            })
            ann_id += 1
    info = {"description": "SARChat-Bench synthetic SAR dataset (SARDet-100K layout)",
            "generator": "sarchat synth", "version": SYNTH_VERSION, "seed": str(seed), "split": split}
    return _coco(images, annotations, info)


def synth_annotations(split: str, n_images: int, seed=0) -> dict:
    """The COCO dict `build_split` would write for this split, without drawing any image (fast)."""
    plan = plan_split(split, n_images, seed)
    anns = [scene_annotations(seed, split, it["index"], it["scene"], it["size"]) for it in plan]
    return _coco_split(seed, split, plan, anns)


def build_split(seed, split: str, n_images: int, pool=None, write=None):
    """COCO dict for one split and its encoded images.

    Images go to write(file_name, bytes) as they are rendered when write is given (and the second
    return value is None), else they are returned as a list [(file_name, bytes)] in id order.
    """
    plan = plan_split(split, n_images, seed)
    jobs = [(seed, split, item) for item in plan]
    results = pool.map(_render_job, jobs, chunksize=4) if pool is not None else map(_render_job, jobs)
    files = [] if write is None else None
    anns_per_image = []
    for file_name, data, anns in results:
        if write is None:
            files.append((file_name, data))
        else:
            write(file_name, data)
        anns_per_image.append(anns)
    return _coco_split(seed, split, plan, anns_per_image), files


def _dump_json(obj) -> bytes:
    return (json.dumps(obj, separators=(",", ":"), sort_keys=False) + "\n").encode("utf-8")


def _write_bytes(path, data: bytes):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)


def write_synthetic_dataset(root, n_images: int = DEFAULT_IMAGES, seed=0,
                            test_fraction: float = DEFAULT_TEST_FRACTION, workers: int = 1) -> dict:
    """Write ROOT/Annotations/{train,test}.json and ROOT/JPEGImages/{train,test}/*; return a summary.

    The output depends only on (n_images, seed, test_fraction), never on workers.
    """
    n_train, n_test = split_sizes(int(n_images), float(test_fraction))
    pool = None
    if workers and workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(max_workers=int(workers))
    summary = {"root": str(root), "seed": str(seed), "splits": {}}
    try:
        for split, n in (("train", n_train), ("test", n_test)):
            image_dir = os.path.join(root, "JPEGImages", split)
            os.makedirs(image_dir, exist_ok=True)

            def write(file_name, data, image_dir=image_dir):
                with open(os.path.join(image_dir, file_name), "wb") as fh:
                    fh.write(data)

            coco, _ = build_split(seed, split, n, pool=pool, write=write)
            _write_bytes(os.path.join(root, "Annotations", f"{split}.json"), _dump_json(coco))
            per_cat = np.bincount([a["category_id"] for a in coco["annotations"]], minlength=len(CATEGORIES))
            summary["splits"][split] = {
                "images": len(coco["images"]),
                "boxes": len(coco["annotations"]),
                "categories": {name: int(per_cat[i]) for i, name in enumerate(CATEGORIES)},
            }
    finally:
        if pool is not None:
            pool.shutdown()
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
SCALE_AREA_LOG10 = {
    "ship": (-2.33, 0.55), "aircraft": (-2.03, 0.45), "car": (-2.23, 0.40),
    "tank": (-2.38, 0.45), "bridge": (-1.88, 0.50), "harbor": (-1.28, 0.45),
}
SCALE_ASPECT_LOG10 = {
    "ship": (0.03, 0.35), "aircraft": (0.02, 0.125), "car": (0.033, 0.18),
    "tank": (0.0, 0.085), "bridge": (0.072, 0.27), "harbor": (0.004, 0.17),
}
MIXED_FRACTION = 0.12  # share of boxes whose category is shuffled across images (multi-category images)


def sardet_scale_annotations(split: str, n_images: int, n_boxes: int, seed=0) -> dict:
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
    info = {"description": "SARDet-100K-scale synthetic annotations (no images)", "generator": "sarchat synth",
            "version": SYNTH_VERSION, "seed": str(seed), "split": split}
    if n_images == 0:
        return _coco([], [], info)

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

    area_mu = np.array([SCALE_AREA_LOG10[c][0] for c in CATEGORIES])[cats]
    area_sd = np.array([SCALE_AREA_LOG10[c][1] for c in CATEGORIES])[cats]
    ar_mu = np.array([SCALE_ASPECT_LOG10[c][0] for c in CATEGORIES])[cats]
    ar_sd = np.array([SCALE_ASPECT_LOG10[c][1] for c in CATEGORIES])[cats]
    # boxes of one image share a resolution: a per-image offset on the area
    img_off = rng.normal(0.0, 0.25, n_images)[img_of_box]
    r = 10 ** np.clip(area_mu + img_off + area_sd * rng.standard_normal(n_boxes), -4.5, math.log10(0.6))
    ar = 10 ** (ar_mu + ar_sd * rng.standard_normal(n_boxes))  # h / w
    area = r * W * H
    bw = np.sqrt(area / ar)
    bh = bw * ar
    bw = np.clip(bw, 2.0, W * 0.98)
    bh = np.clip(bh, 2.0, H * 0.98)
    bw = np.floor(bw * 10) / 10
    bh = np.floor(bh * 10) / 10
    bx = np.floor(rng.uniform(0.0, 1.0, n_boxes) * (W - bw) * 10) / 10
    by = np.floor(rng.uniform(0.0, 1.0, n_boxes) * (H - bh) * 10) / 10
    barea = np.round(bw * bh, 2)

    width_l = sizes[:, 0].astype(np.int64).tolist()
    height_l = sizes[:, 1].astype(np.int64).tolist()
    images = [
        {"id": i + 1, "file_name": f"{split}_{i + 1:06d}.{SCALE_EXTS[e]}", "width": width_l[i], "height": height_l[i]}
        for i, e in enumerate(ext_idx.tolist())
    ]
    annotations = [
        {"id": k, "image_id": i, "category_id": c, "bbox": [x, y, w, h], "area": a, "iscrowd": 0}
        for k, i, c, x, y, w, h, a in zip(
            range(1, n_boxes + 1), (img_of_box + 1).tolist(), cats.tolist(),
            bx.tolist(), by.tolist(), bw.tolist(), bh.tolist(), barea.tolist())
    ]
    return _coco(images, annotations, info)


def write_annotations_only(root, splits: dict) -> list:
    """Write ROOT/Annotations/<split>.json for each {split: coco dict}; no images. Returns the paths."""
    paths = []
    for split, coco in splits.items():
        path = os.path.join(root, "Annotations", f"{split}.json")
        _write_bytes(path, _dump_json(coco))
        paths.append(path)
    return paths
