"""One synthetic SAR image: scene layout (water, land, roads, target placement) and the imaging model
(reflectivity, speckle, impulse response, log compression); see sarchat.synthetic.sardet_synth for why."""
from __future__ import annotations

import math

import numpy as np
from sarchat.synthetic.random_fields import _upsample, db, rng_for, smooth_curve, smooth_field
from sarchat.synthetic.sar_targets import (_convolve_sep, _patch, _psf_kernel, make_aircraft, make_bridge, make_car,
                                           make_harbor, make_ship, make_tank, render_target, target_bounds)
from sarchat.synthetic.scene_plan import AREA_LOG10, LARGE_P, scene_composition

# ---------------------------------------------------------------------------------------------
# Scene rendering


def _curve_at(grid, vals, a):
    """A sampled curve's value and slope (central difference) at along-coordinate a."""
    p = float(np.interp(a, grid, vals))
    dp = float(np.interp(a + 1.0, grid, vals) - np.interp(a - 1.0, grid, vals)) / 2.0
    return p, dp


def _unit(x, y):
    v = np.array([x, y])
    return tuple((v / np.linalg.norm(v)).tolist())


class _Scene:
    """Mutable state while one image is composed: masks, targets, planned boxes."""

    def __init__(self, rng, size):
        self.rng = rng
        self.size = size
        self.look = rng.choice((0.0, 0.5 * math.pi, math.pi, 1.5 * math.pi))  # range direction
        self.water = np.zeros((size, size), dtype=np.float32)
        self.tarmac = np.zeros((size, size), dtype=np.float32)
        self.roads = None
        self.targets = []  # (category, target dict)
        self.boxes = []  # planned boxes (x0, y0, x1, y1) for overlap checks
        self.yy = (np.arange(size, dtype=np.float32) + 0.5)[:, None]
        self.xx = (np.arange(size, dtype=np.float32) + 0.5)[None, :]

    # -- surfaces -----------------------------------------------------------------------------
    def _curve(self, amplitude, cells):
        """A smooth random line across the image in a random direction, its amplitude and number of
        noise cells drawn from the (low, high) ranges: (tangent, normal, along, across, grid, vals)."""
        rng = self.rng
        phi = rng.uniform(0, 2 * math.pi)
        tx, ty = math.cos(phi), math.sin(phi)
        c = self.size / 2.0
        along = (self.xx - c) * tx + (self.yy - c) * ty
        across = (self.xx - c) * -ty + (self.yy - c) * tx
        grid = np.linspace(-0.75 * self.size, 0.75 * self.size, 257)
        vals = self.size * rng.uniform(*amplitude) * smooth_curve(rng, 257, int(rng.integers(*cells)))
        return (tx, ty), (-ty, tx), along, across, grid, vals

    def line_distance(self, phi, off):
        """Signed distance of each pixel centre to the straight line at angle phi, off from the centre."""
        c = self.size / 2.0
        return (self.xx - c) * -math.sin(phi) + (self.yy - c) * math.cos(phi) - off

    def add_coast(self, land_fraction):
        """Land on one side of a smooth random coastline; the rest is water."""
        t, n, along, across, grid, vals = self._curve((0.04, 0.10), (3, 7))
        s = across + np.interp(along, grid, vals).astype(np.float32)
        offset = float(np.quantile(s[::8, ::8], 1.0 - land_fraction))
        self.water = 1.0 - np.clip(s - offset + 0.5, 0.0, 1.0)
        self.coast = (t, n, grid, vals, offset)

    def coast_point(self, a):
        """Point on the coast at along-coordinate a, its tangent and seaward normal."""
        (tx, ty), (nx, ny), grid, vals, offset = self.coast
        p, dp = _curve_at(grid, vals, a)
        c = self.size / 2.0
        across = offset - p
        x, y = c + a * tx + across * nx, c + a * ty + across * ny
        return x, y, _unit(tx - dp * nx, ty - dp * ny), _unit(-(nx + dp * tx), -(ny + dp * ty))

    def add_river(self, width):
        t, n, along, across, grid, vals = self._curve((0.02, 0.07), (2, 4))
        vals = vals + self.rng.uniform(-0.25, 0.25) * self.size
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
        yi, xi = np.clip(np.asarray([ys, xs], dtype=np.float64).astype(np.int64), 0, self.size - 1)
        v = self.water[yi, xi]
        return bool(np.all(v > 0.75)) if want_water else bool(np.all(v < 0.25))

    def fits(self, box, gap=3.0, margin=2.0):
        x0, y0, x1, y1 = box
        if x0 < margin or y0 < margin or x1 > self.size - margin or y1 > self.size - margin:
            return False
        return not any(x0 < b[2] + gap and b[0] < x1 + gap and y0 < b[3] + gap and b[1] < y1 + gap for b in self.boxes)

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


def _near(rng, size, anchor, spread, dim):
    """A random centre at spread times the larger of dim and the anchor's extent from anchor (x, y,
    extent), in a random direction; anywhere in the image without an anchor."""
    if anchor is None:
        return rng.uniform(0, size), rng.uniform(0, size)
    d = rng.uniform(*spread) * max(dim, anchor[2])
    th = rng.uniform(0, 2 * math.pi)
    return anchor[0] + d * math.cos(th), anchor[1] + d * math.sin(th)


def _place_ships(sc, n, image_offset, in_river=False, near=None):
    rng, size = sc.rng, sc.size
    last = None
    for _ in range(n):
        area = _sample_area(rng, "ship", size, n + len(sc.targets), image_offset)
        k = rng.uniform(0.10, 0.20)
        for attempt in range(80):
            shrink = 0.75 ** (attempt // 16)
            if in_river:
                a = rng.uniform(-0.45, 0.45) * size
                cx, cy, tang, _ = sc.river_point(a)
                angle = tang + rng.normal(0, 0.05)
                width = sc.river[4]
                length = min(_box_len(area, angle, k) * shrink, 0.9 * size, 0.35 * width / k, 3.0 * width)
                off = rng.uniform(-0.25, 0.25) * width
                cx, cy = cx - math.sin(tang) * off, cy + math.cos(tang) * off
            else:
                angle = rng.uniform(0, math.pi)
                if last is not None and rng.random() < 0.4:  # convoy / anchorage: same heading, close by
                    angle = last[3] + rng.normal(0, 0.15)
                length = min(_box_len(area, angle, k) * shrink, 0.85 * size)
                anchor = near if (near is not None and rng.random() < 0.7) else (last if (last is not None and rng.random() < 0.35) else None)
                cx, cy = _near(rng, size, anchor, (0.8, 3.0), length)
            length = max(length, 8.0)
            target = make_ship(rng, cx, cy, angle, length, k, db(rng.uniform(-9, -4)))
            if not sc.fits(target_bounds(target["prims"])):
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
            last = (cx, cy, length, angle)
            break


def _place_cluster(sc, category, n, image_offset, spread, near=None):
    """Aircraft, cars or tanks on land, each close to the previous one (rows, farms, aprons)."""
    rng, size = sc.rng, sc.size
    last = near
    angle0 = rng.uniform(0, math.pi)
    for _ in range(n):
        area = _sample_area(rng, category, size, n + len(sc.targets), image_offset)
        for attempt in range(80):
            shrink = 0.75 ** (attempt // 16)
            if category == "aircraft":
                dim = min(max(math.sqrt(area) * shrink, 10.0), 0.8 * size)
            elif category == "car":
                k = rng.uniform(0.4, 0.55)
                angle = angle0 + (rng.normal(0, 0.1) if rng.random() < 0.7 else rng.uniform(0, math.pi))
                dim = min(max(_box_len(area, angle, k) * shrink, 5.0), 0.3 * size)
            else:
                dim = min(max(math.sqrt(area) * shrink, 6.0), 0.6 * size)
            cx, cy = _near(rng, size, last if (last is not None and rng.random() < 0.85) else None, spread, dim)
            if category == "aircraft":
                heading = angle0 + (rng.normal(0, 0.2) if rng.random() < 0.6 else rng.uniform(0, 2 * math.pi))
                target = make_aircraft(rng, cx, cy, heading, dim, db(rng.uniform(-12, -7)))
            elif category == "car":
                target = make_car(rng, cx, cy, angle, dim, k, db(rng.uniform(-5, -1)))
            else:
                target = make_tank(rng, cx, cy, dim / 2.0, sc.look, db(rng.uniform(-3, 1)))
            box = target_bounds(target["prims"])
            if not sc.fits(box):
                continue
            x0, y0, x1, y1 = box
            if not sc.surface_ok([cx, x0 + 1, x1 - 1, cx, cx], [cy, cy, cy, y0 + 1, y1 - 1], want_water=False):
                continue
            sc.accept(category, target)
            last = (cx, cy, dim)
            break


def _place_bridges(sc, n):
    rng, size = sc.rng, sc.size
    width = sc.river[4]
    used = []
    for _ in range(n):
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
            if sc.fits(target_bounds(target["prims"])):
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
            return (x + sea[0] * pier * 0.6, y + sea[1] * pier * 0.6, width)
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


def _lay_sea(sc, rng, cats, offset):
    if rng.random() < 0.3:
        sc.add_coast(rng.uniform(0.1, 0.3))
    else:
        sc.water[:] = 1.0
    _place_ships(sc, len(cats), offset)


def _lay_harbor(sc, rng, cats, offset):
    sc.add_coast(rng.uniform(0.35, 0.6))
    near = _place_harbor(sc, offset)
    _place_ships(sc, cats.count("ship"), offset, near=near)


def _lay_river(sc, rng, cats, offset):
    size = sc.size
    area = _sample_area(rng, "bridge", size, len(cats), offset)
    k = rng.uniform(0.06, 0.12)
    length = float(np.clip(_box_len(area, rng.uniform(0, math.pi), k), 20.0, 0.7 * size))
    width = float(np.clip(length / rng.uniform(1.3, 1.9), 8.0, 0.5 * size))
    sc.add_river(width)
    _place_bridges(sc, cats.count("bridge"))
    _place_ships(sc, cats.count("ship"), offset, in_river=True)


def _lay_airfield(sc, rng, cats, offset):
    size = sc.size
    phi = rng.uniform(0, math.pi)
    off = rng.uniform(-0.35, 0.35) * size
    d = sc.line_distance(phi, off)
    sc.tarmac = np.clip(size * rng.uniform(0.025, 0.05) - np.abs(d) + 0.5, 0, 1).astype(np.float32)
    _place_cluster(sc, "aircraft", cats.count("aircraft"), offset, (1.4, 2.5))
    for cat in ("car", "tank"):
        if cat in cats:
            near = None
            if cat == "car" and sc.boxes:  # service cars next to the last aircraft
                x0, y0, x1, y1 = sc.boxes[-1]
                near = ((x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0))
            _place_cluster(sc, cat, cats.count(cat), offset, (1.2, 2.5) if cat == "car" else (1.3, 2.5), near)
    _add_apron(sc, phi, off, d)


def _add_apron(sc, phi, off, d):
    """Smooth concrete in the runway frame under all aircraft and service cars, and a taxiway."""
    size = sc.size
    c = size / 2.0
    cs, sn = math.cos(phi), math.sin(phi)
    along = (sc.xx - c) * cs + (sc.yy - c) * sn
    boxes = [box for (cat, _), box in zip(sc.targets, sc.boxes) if cat in ("aircraft", "car")]
    if not boxes:
        return
    b = np.array(boxes)
    x, y = b[:, [0, 0, 2, 2]] - c, b[:, [1, 3, 1, 3]] - c  # the corners of the boxes
    u, v = x * cs + y * sn, -x * sn + y * cs - off  # in the runway frame
    m = 0.04 * size + 4
    u0, u1 = u.min() - m, u.max() + m
    v0, v1 = v.min() - m, v.max() + m
    au = np.clip(np.minimum(along - u0, u1 - along) + 0.5, 0, 1)
    av = np.clip(np.minimum(d - v0, v1 - d) + 0.5, 0, 1)
    np.maximum(sc.tarmac, au * av, out=sc.tarmac)
    mid = (u0 + u1) / 2
    tw = size * 0.012 + 1
    lo_v, hi_v = (min(0.0, v0), max(0.0, v1))
    taxi = np.clip(tw - np.abs(along - mid) + 0.5, 0, 1) * np.clip(np.minimum(d - lo_v, hi_v - d) + 0.5, 0, 1)
    np.maximum(sc.tarmac, taxi, out=sc.tarmac)


def _lay_land(sc, rng, cats, offset):
    """Dark straight roads (smooth asphalt) crossing the land, tank farms and car parks."""
    sc.roads = np.zeros((sc.size, sc.size), dtype=np.float32)
    for _ in range(int(rng.integers(0, 3))):
        d = sc.line_distance(rng.uniform(0, math.pi), rng.uniform(-0.4, 0.4) * sc.size)
        np.maximum(sc.roads, np.clip(rng.uniform(1.0, 3.0) - np.abs(d) + 0.5, 0, 1), out=sc.roads)
    for cat in ("tank", "car"):
        if cat in cats:
            _place_cluster(sc, cat, cats.count(cat), offset, (1.15, 1.8) if cat == "tank" else (1.2, 2.2))


# scene -> its surfaces and targets, drawn from the image's generator in a fixed order
_LAYOUTS = {"sea": _lay_sea, "harbor": _lay_harbor, "river": _lay_river, "airfield": _lay_airfield,
            "land": _lay_land}


def _layout_scene(seed, split: str, index: int, scene: str, size: int):
    """Surfaces and target placement of one image (the part that fixes the annotations)."""
    sc = _Scene(rng_for(seed, "image", split, index), size)
    cats = scene_composition(sc.rng, scene)  # raises on an unknown scene
    _LAYOUTS[scene](sc, sc.rng, cats, float(sc.rng.normal(0.0, 0.15)))
    if not sc.targets:  # every image has at least one box: a small target on whatever surface there is
        _place_fallback(sc)
    return sc


def _rendered(sc, rng=None):
    """[(category, target, render_target's result)] of the targets that show in the image."""
    out = [(cat, t, render_target(t, sc.size, sc.size, rng)) for cat, t in sc.targets]
    return [(cat, t, res) for cat, t, res in out if res is not None]


def _xywh(box):
    x0, y0, x1, y1 = box
    return [x0, y0, x1 - x0 + 1, y1 - y0 + 1]


def scene_annotations(seed, split: str, index: int, scene: str, size: int):
    """The annotations render_scene would give, without drawing the image: [(category, [x, y, w, h])]."""
    return [(cat, _xywh(res[2])) for cat, _, res in _rendered(_layout_scene(seed, split, index, scene, size))]


def render_scene(seed, split: str, index: int, scene: str, size: int):
    """One synthetic SAR image: (uint8 array (size, size), [(category, [x, y, w, h]), ...])."""
    sc = _layout_scene(seed, split, index, scene, size)
    rng = sc.rng

    # ---- reflectivity map ----
    land = _land_reflectivity(rng, size)
    sea = smooth_field(rng, size, size, 4, 2, scale=0.3) * np.float32(db(rng.uniform(-21, -16)))
    refl = land + sc.water * (sea - land)
    if sc.roads is not None:
        refl *= 1.0 - 0.85 * sc.roads
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
    rendered = _rendered(sc, rng)
    for _, _, ((rs, cs), body, _) in rendered:
        refl[rs, cs] += body

    # ---- speckle, impulse response, log compression ----
    looks = int(rng.choice((1, 2, 3, 4), p=(0.3, 0.3, 0.2, 0.2)))
    inten = rng.standard_gamma(looks, size=(size, size), dtype=np.float32)  # Gamma(L, 1), mean L
    inten *= refl
    inten *= np.float32(1.0 / looks)  # -> refl * Gamma(L, 1/L): mean refl
    psf = _psf_kernel(rng.uniform(1.0, 1.4))
    r = len(psf) // 2
    for _, t, _ in rendered:  # strong scatterers, spread by the impulse response, patch by patch
        p = t["points"]
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
    return img, [(cat, _xywh(res[2])) for cat, _, res in rendered]
