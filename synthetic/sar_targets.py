"""Target geometry of the synthetic SAR scenes: primitives (rect, hull, ring, disc), point scatterers,
and the rendering of one target into a reflectivity patch with its tight box."""
from __future__ import annotations

import math

import numpy as np
from sarchat.synthetic.random_fields import db

# ---------------------------------------------------------------------------------------------
# Target geometry: primitives and point scatterers. A primitive is a tuple: ("rect" or "hull", cx, cy,
# angle, half length, half width, level) or ("ring" or "disc", cx, cy, radius, half width (0 for a
# disc), level, look direction)


def _rot(angle):
    return math.cos(angle), math.sin(angle)


def _rect(cx, cy, angle, hl, hw, level, kind="rect"):
    return (kind, float(cx), float(cy), float(angle), float(max(hl, 0.6)), float(max(hw, 0.6)), float(level))


def _seg(x0, y0, x1, y1, hw, level):
    """A flat-ended thick segment as a rect primitive."""
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    return _rect(cx, cy, math.atan2(y1 - y0, x1 - x0), math.hypot(x1 - x0, y1 - y0) / 2.0, hw, level)


def _prim_bounds(p):
    if p[0] in ("rect", "hull"):
        _, cx, cy, a, hl, hw, _ = p
        c, s = _rot(a)
        ex = abs(hl * c) + abs(hw * s)
        ey = abs(hl * s) + abs(hw * c)
        return cx - ex, cy - ey, cx + ex, cy + ey
    _, cx, cy, r, hw, _, _ = p
    return cx - r - hw, cy - r - hw, cx + r + hw, cy + r + hw


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
    dx, dy = px - p[1], py - p[2]
    if kind in ("rect", "hull"):
        _, _, _, a, hl, hw, level = p
        c, s = _rot(a)
        u = dx * c + dy * s
        v = -dx * s + dy * c
        half, mod = hw, 1.0
        if kind == "hull":
            t = np.clip(u / hl, -1.0, 1.0)
            half = hw * np.sqrt(np.clip(np.where(t > 0, 1.0 - t * t, 1.0 - t ** 6), 0.0, 1.0))
            half = np.maximum(half, 0.5 * np.minimum(hw, 1.0))
            # the hull side / sea surface dihedral is brighter than the deck
            mod = 0.6 + 1.4 * np.clip(np.abs(v) / np.maximum(half, 0.5), 0.0, 1.0) ** 4
        cov = np.clip(hl - np.abs(u) + 0.5, 0.0, 1.0) * np.clip(half - np.abs(v) + 0.5, 0.0, 1.0)
        if rng is not None and blocks is not None:
            bl, spread = blocks
            n = int(math.ceil(2 * hl / bl)) + 1
            gains = db(rng.normal(0.0, spread, n)).astype(np.float32)
            mod = mod * gains[np.clip(((u + hl) / bl).astype(np.int64), 0, n - 1)]
        return cov, level * mod
    _, _, _, r, hw, level, look = p
    d = np.sqrt(dx * dx + dy * dy)
    if kind == "disc":
        return np.clip(r - d + 0.5, 0.0, 1.0), level
    # wall-ground dihedral: brightest facing the radar and on the far side, dim at the flanks
    c, s = _rot(look)
    cosang = (dx * c + dy * s) / np.maximum(d, 1e-3)
    return np.clip(hw - np.abs(d - r) + 0.5, 0.0, 1.0), level * (0.25 + 0.75 * cosang ** 2)


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

    def at(u, v):
        return _points_uv(cx, cy, heading, u, v)

    u0 = s * rng.uniform(0.0, 0.12)
    sweep = s * rng.uniform(0.08, 0.28)
    tail_u = -0.88 * hl
    pts_uv = [(hl, 0.0), (-hl, 0.0)]
    for side in (-1.0, 1.0):
        tip = (u0 - sweep, side * s / 2.0)
        prims.append(_seg(*at(u0, 0.0), *at(*tip), max(0.7, s * 0.05), level))  # wing
        prims.append(_seg(*at(tail_u, 0.0), *at(tail_u - 0.06 * s, side * 0.17 * s), max(0.6, s * 0.03), level))
        pts_uv.append(tip)
        for f in (0.36, 0.62) if s > 40 else (0.4,):
            pts_uv.append((u0 - sweep * f, side * f * s / 2.0))  # engines
    for f in np.linspace(-0.7, 0.8, int(np.clip(s / 8, 2, 8))):
        pts_uv.append((f * hl, 0.0))
    uv = np.asarray(pts_uv, dtype=np.float64)
    x, y = at(uv[:, 0], uv[:, 1])
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
             ("disc", float(cx), float(cy), float(r), 0.0, float(level * 0.12), float(look))]
    c, s = _rot(look)
    ang = look + np.concatenate([rng.normal(math.pi, 0.35, 3), rng.normal(0.0, 0.35, 2)])
    x = cx + r * np.cos(ang)
    y = cy + r * np.sin(ang)
    amp = level * 10 ** rng.uniform(0.5, 1.2, ang.size)
    shadow = (float(cx + 0.7 * r * c), float(cy + 0.7 * r * s), float(r))
    return {"prims": prims, "points": np.stack([x, y, amp], axis=1), "shadow": shadow}


def make_bridge(rng, cx, cy, angle, length, half_width, level):
    # the deck, and its deck-water double bounce: a weaker parallel line over the water
    off = half_width * rng.uniform(2.5, 4.0) * rng.choice((-1.0, 1.0))
    gx, gy = _points_uv(cx, cy, angle, 0.0, off)
    prims = [_rect(cx, cy, angle, length / 2.0, half_width, level),
             _rect(gx, gy, angle, 0.35 * length, max(0.6, 0.6 * half_width), level * 0.35)]
    spacing = max(5.0, length / rng.uniform(6, 12))
    u = np.arange(-length / 2.0 + spacing / 2.0, length / 2.0, spacing)
    x, y = _points_uv(cx, cy, angle, u, np.zeros_like(u))
    amp = level * 10 ** rng.uniform(0.8, 1.6, u.size)
    return {"prims": prims, "points": np.stack([x, y, amp], axis=1), "blocks": (rng.uniform(3.0, 6.0), 3.0)}


def _along(x0, y0, x1, y1, fractions):
    """Points at the given fractions of the way from (x0, y0) to (x1, y1)."""
    return [(x0 + (x1 - x0) * f, y0 + (y1 - y0) * f) for f in fractions]


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
        pts += _along(x0, y0, x1, y1, np.linspace(0.15, 0.95, max(2, int(ln / 6))))
    if rng.random() < 0.65:  # breakwater
        d = pier_len * rng.uniform(1.1, 1.35)
        a, b = rng.uniform(-0.5, -0.2) * width, rng.uniform(0.25, 0.5) * width
        x0, y0 = px + tx * a + nx * d, py + ty * a + ny * d
        x1, y1 = px + tx * b + nx * d * rng.uniform(0.8, 1.0), py + ty * b + ny * d * rng.uniform(0.8, 1.0)
        prims.append(_seg(x0, y0, x1, y1, max(0.8, wp * 1.2), level * 0.8))
        pts += _along(x0, y0, x1, y1, np.linspace(0.05, 0.95, 5))
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
        cov, gain = _coverage(p, px, py, rng, target.get("blocks"))
        np.maximum(body, cov * gain, out=body)
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


def _psf_kernel(res: float) -> np.ndarray:
    """1-D intensity impulse response: Hann-weighted sinc^2, peak 1 (sidelobes give the SAR cross)."""
    x = np.arange(-5, 6, dtype=np.float64)
    k = np.sinc(x / res) ** 2 * (0.5 + 0.5 * np.cos(np.pi * x / 6.0))
    return (k / k.max()).astype(np.float32)


def _convolve_sep(img, k):
    """Separable 'same' convolution with zero padding (vectorised: one shifted add per tap)."""
    r = len(k) // 2
    for _ in range(2):  # along the rows, then (transposed) along the columns
        pad = np.pad(img, ((0, 0), (r, r)))
        out = np.zeros_like(img)
        for i, kv in enumerate(k):
            if kv:
                out += kv * pad[:, i:i + img.shape[1]]
        img = out.T
    return img
