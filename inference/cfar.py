"""A SAR baseline: CA-CFAR detection, connected components, and hand-set shape rules for the category
(thresholds tuned on the synthetic scenes of `sarchat synth`).

It really looks at the image (no ground truth is read), so it is a floor any VLM should beat and a
CPU-only end-to-end check of the benchmark.

Detection, on the 8-bit picture as distributed (usually log-compressed amplitude):
  * cell under test: the 3x3 mean around the pixel;
  * clutter: cell averaging over the training window minus the guard window, both square and
    centred: mean and standard deviation from (sum_train - sum_guard) / (n_train - n_guard) of the
    values and of their squares, i.e. four scipy.ndimage.uniform_filter passes; the guard radius
    (6% of the image side) covers the target itself, the training ring (5%) the clutter around it;
  * a pixel is detected when cut > mean + k * std and cut > mean + min_contrast; on log-compressed
    speckle this is the classical log-CFAR, on linear amplitude a CA-CFAR with a contrast floor;
  * hysteresis: a detection grows over neighbouring pixels passing a lower test (k_grow,
    min_contrast_grow), so a box covers the whole target, not just its brightest scatterers;
  * closing, hole filling, then 8-connected labelling after a 2-pixel dilation (the scattered
    returns of one target merge); components under `min_area` pixels are dropped.

Category rules (features: box side relative to the image, area ratio R, elongation from the second
moments of the pixels, fill ratio of the box, median grey level of a ring around the box):
  huge, or large and sparse (piers, quays)               -> harbor
  very elongated, or elongated and long                  -> bridge
  elongated: on bright land and long -> bridge, else     -> ship
  sparse and compact (wings, a Y or a cross)             -> aircraft
  round and compact (a storage tank's disc)              -> tank
  otherwise (small, dense, slightly elongated)           -> car
The thresholds (CfarParams) were tuned on the train split of `sarchat synth` scenes and checked on
its test split; on real SARDet-100K imagery expect lower numbers.

Answers follow docs/rules.md section 7 in canonical pixel boxes (`answer(row, image)`, through each task
module's detector_answer in sarchat.transforms.tasks): count and refer use
the detections of the category the question names (the strongest detection when none has that
category), identify classifies the region inside the box the question names and derives size,
cell and shape from that box, grounding lists detections per category with relation sentences
from sarchat.transforms.geometry.relation.
"""
import threading
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from sarchat.transforms.tasks import BY_ID

CFAR_VERSION = 2  # bump when detection or answers change: part of the run key


@dataclass(frozen=True)
class CfarParams:
    guard_frac: float = 0.06      # guard radius / min(W, H) (about the largest small target)
    train_frac: float = 0.05      # training ring width / min(W, H)
    min_guard: int = 3
    min_train: int = 4
    k: float = 2.5                # cut > mean + k * std of the training ring ...
    min_contrast: float = 40.0    # ... and > mean + this (grey levels of the 8-bit image)
    k_grow: float = 1.0           # hysteresis: a detection grows over pixels passing these
    min_contrast_grow: float = 30.0
    close_iter: int = 1
    merge_iter: int = 2           # dilation before labelling: returns this close merge
    min_area: int = 12            # pixels
    pad: int = 0                  # pixels added around a component's box
    max_detections: int = 40
    # classification (sizes relative to min(W, H))
    harbor_r: float = 0.2         # area ratio of the box
    harbor_side: float = 0.2      # or a box side this long with a sparse fill
    harbor_fill: float = 0.25
    bridge_elong_any: float = 8.0 # this elongated: a bridge whatever its size
    bridge_elong: float = 6.0     # this elongated and long: a bridge
    bridge_side: float = 0.1
    ship_elong: float = 2.6
    aircraft_fill: float = 0.35
    tank_elong: float = 1.45
    car_side: float = 0.02
    land_ring: float = 100.0      # ring median above this grey level: an elongated target on land

    def key(self):
        return asdict(self)


@dataclass
class Detection:
    box: list            # [x1, y1, x2, y2] integer pixels
    category: str
    score: float
    feats: dict


def to_amplitude(gray):
    a = np.asarray(gray, dtype=np.float32)
    return a.mean(axis=2) if a.ndim == 3 else a


def cfar_mask(amp, p=CfarParams()):
    """Boolean detection mask: the CA-CFAR test, grown by hysteresis over the target's extent.

    The test runs on the 8-bit picture as distributed (usually log-compressed): the cell under
    test (3x3 mean) must exceed the training ring's mean by k standard deviations and by a
    minimum contrast. On log-compressed speckle this is the classical log-CFAR; on linear
    amplitude it is a cell-averaging CFAR with a contrast floor.
    """
    x = amp.astype(np.float64)
    guard = max(p.min_guard, int(round(p.guard_frac * min(x.shape))))
    train = guard + max(p.min_train, int(round(p.train_frac * min(x.shape))))
    gw, tw = 2 * guard + 1, 2 * train + 1
    n = float(tw * tw - gw * gw)

    def ring_sum(v):  # the sum of v over the training window less the guard window
        return (ndimage.uniform_filter(v, size=tw, mode="reflect") * (tw * tw)
                - ndimage.uniform_filter(v, size=gw, mode="reflect") * (gw * gw))

    s1, s2 = ring_sum(x), ring_sum(x * x)
    mean = s1 / n
    std = np.sqrt(np.maximum(s2 / n - mean * mean, 1.0))
    cut = ndimage.uniform_filter(x, size=3, mode="reflect")
    excess = cut - mean
    strong = (excess > p.k * std) & (excess > p.min_contrast)
    if not strong.any():
        return strong
    weak = ((excess > p.k_grow * std) & (excess > p.min_contrast_grow)) | strong
    labels, _ = ndimage.label(weak, structure=np.ones((3, 3), dtype=bool))
    keep = np.unique(labels[strong])
    return np.isin(labels, keep[keep > 0])


class Scene:
    """One image's amplitude with its CFAR mask and detections computed once, on first use
    (the several dialogues of an image share them). Thread-safe."""

    def __init__(self, gray, p=CfarParams()):
        self.amp = to_amplitude(gray)
        self.p = p
        self.median = float(np.median(self.amp)) or 1.0
        self._mask = self._dets = None
        self._lock = threading.Lock()

    @property
    def mask(self):
        with self._lock:
            if self._mask is None:
                self._mask = cfar_mask(self.amp, self.p)
            return self._mask

    @property
    def detections(self):
        mask = self.mask
        with self._lock:
            if self._dets is None:
                self._dets = _detect(self.amp, mask, self.median, self.p)
            return self._dets


def _scene(image, p):
    return image if isinstance(image, Scene) else Scene(image, p)


def detect(gray, p=CfarParams()):
    """Detections (box, category, features) in an image (an array or a Scene), strongest first."""
    return _scene(gray, p).detections


def _detect(amp, mask, image_median, p):
    h, w = amp.shape
    if h < 8 or w < 8:
        return []
    if p.close_iter:
        mask = ndimage.binary_closing(mask, iterations=p.close_iter)
    mask = ndimage.binary_fill_holes(mask)
    grouped = ndimage.binary_dilation(mask, iterations=p.merge_iter) if p.merge_iter else mask
    labels, n = ndimage.label(grouped, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return []
    labels = np.where(mask, labels, 0)
    dets = []
    for idx, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        comp = labels[sl] == idx
        area = int(comp.sum())
        if area < p.min_area:
            continue
        ys, xs = np.nonzero(comp)
        ys, xs = ys + sl[0].start, xs + sl[1].start
        x1, y1 = max(0, int(xs.min()) - p.pad), max(0, int(ys.min()) - p.pad)
        x2, y2 = min(w - 1, int(xs.max()) + 1 + p.pad), min(h - 1, int(ys.max()) + 1 + p.pad)
        box = [x1, y1, x2, y2]
        feats = region_features(amp, box, xs, ys, image_median)
        score = float(amp[ys, xs].mean() - feats["ring"]) * np.sqrt(area)
        dets.append(Detection(box, classify_region(feats, w, h, p), score, feats))
    dets.sort(key=lambda d: -d.score)
    return dets[: p.max_detections]


def region_features(amp, box, xs, ys, image_median):
    """Size, shape and context of a region: the numbers the category rules use."""
    x1, y1, x2, y2 = box
    bw, bh = max(1, x2 - x1), max(1, y2 - y1)
    if len(xs) >= 3:
        cov = np.cov(np.vstack([xs, ys]).astype(np.float64))
        ev = np.sort(np.linalg.eigvalsh(cov))[::-1]
        l1, l2 = max(ev[0], 1e-6), max(ev[1], 0.25)
        elong = float(np.sqrt(l1 / l2))
    else:
        elong = 1.0
    ring = _ring_median(amp, box)
    return {"w": bw, "h": bh, "elongation": elong, "fill": len(xs) / float(bw * bh),
            "ring": ring, "dark_ratio": ring / image_median}


def _ring_median(amp, box):
    h, w = amp.shape
    x1, y1, x2, y2 = box
    m = max(4, int(0.5 * max(x2 - x1, y2 - y1)))
    X1, Y1, X2, Y2 = max(0, x1 - m), max(0, y1 - m), min(w, x2 + m), min(h, y2 + m)
    ring = amp[Y1:Y2, X1:X2]
    inner = np.zeros(ring.shape, dtype=bool)
    inner[max(0, y1 - Y1):y2 - Y1 + 1, max(0, x1 - X1):x2 - X1 + 1] = True
    values = ring[~inner]
    return float(np.median(values if values.size else amp))


def classify_region(feats, width, height, p=CfarParams()):
    """A category guess from size, shape and context (see module doc)."""
    m = float(min(width, height))
    bw, bh = feats["w"], feats["h"]
    side = max(bw, bh) / m
    r = bw * bh / float(width * height)
    elong, fill = feats["elongation"], feats["fill"]
    if r >= p.harbor_r or (side >= p.harbor_side and fill < p.harbor_fill and elong < p.bridge_elong):
        return "harbor"
    if elong >= p.bridge_elong_any or (elong >= p.bridge_elong and side >= p.bridge_side):
        return "bridge"
    if elong >= p.ship_elong:
        return "bridge" if feats["ring"] > p.land_ring and side >= p.bridge_side else "ship"
    if side <= p.car_side:
        return "car"
    if fill < p.aircraft_fill:
        return "aircraft"
    if elong < p.tank_elong:
        return "tank"
    return "car"


def describe_region(gray, box, p=CfarParams()):
    """Category of the object inside a given box (identify task): CFAR pixels inside the box."""
    scene = _scene(gray, p)
    amp = scene.amp
    h, w = amp.shape
    x1, y1, x2, y2 = [int(round(v)) for v in box]
    x1, y1 = max(0, min(x1, w - 1)), max(0, min(y1, h - 1))
    x2, y2 = max(x1 + 1, min(x2, w)), max(y1 + 1, min(y2, h))  # at least one pixel inside the image
    crop = amp[y1:y2, x1:x2]
    mask = scene.mask[y1:y2, x1:x2]
    if mask.sum() < max(3, 0.05 * crop.size):  # too little passed the test: the brighter part of the box
        mask = crop > (float(crop.mean()) + 0.5 * float(crop.std()))
    mask = ndimage.binary_fill_holes(mask)
    ys, xs = np.nonzero(mask)
    feats = region_features(amp, [x1, y1, x2, y2], xs + x1, ys + y1, scene.median)
    return classify_region(feats, w, h, p)


# ---- answers (docs/rules.md section 7, canonical boxes): each task module's detector_answer


def answer(row, image, dets=None, p=CfarParams()):
    """The answer to one dialogue row given its image (2-D amplitude array or a Scene): the task
    module's detector_answer over this image's detections (found only when the task asks for
    them) and the category rules applied to one region (identify's box)."""
    def detections():
        return detect(image, p) if dets is None else dets

    module = BY_ID.get(row["task"]) or BY_ID["classify"]
    return module.detector_answer(row, int(row["width"]), int(row["height"]), detections,
                                  lambda box: describe_region(image, box, p))
