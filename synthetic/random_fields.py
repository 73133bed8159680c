"""Deterministic random numbers and smooth random fields for the synthetic SAR scenes (pure numpy).

Every generator is seeded from sha256 of (seed, purpose, parts): never the salted built-in hash."""
from __future__ import annotations

import functools
import hashlib

import numpy as np
from PIL import Image

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


def _upsample(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize of a float32 map (Pillow, deterministic)."""
    if a.shape == (h, w):
        return a
    im = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32)).resize((w, h), Image.Resampling.BILINEAR)
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
        # rows @ grid @ cols.T with numpy's own loops: no BLAS, so no thread start-up cost on these
        # small products and the same bits whatever the BLAS thread count
        rows, cols = _interp_matrix(lh, c + 1), _interp_matrix(lw, c + 1)
        out += amp * np.einsum("jk,lk->jl", np.einsum("ij,jk->ik", rows, grid), cols)
        amp *= 0.5
    out = _standardise(out)
    if scale:
        out = np.exp(np.float32(scale) * out)
    return _upsample(out, h, w)


def smooth_curve(rng: np.random.Generator, n: int, cells: int) -> np.ndarray:
    """A smooth random 1-D function sampled at n points, zero mean, unit std."""
    v = np.einsum("ij,j->i", _interp_matrix(n, cells + 1), rng.standard_normal(cells + 1).astype(np.float32))
    v = v + 0.4 * np.einsum("ij,j->i", _interp_matrix(n, 2 * cells + 1),
                            rng.standard_normal(2 * cells + 1).astype(np.float32))
    return _standardise(v)


def _standardise(v):
    """v (changed in place) shifted and scaled to zero mean and unit std, unless it is constant."""
    v -= v.mean()
    sd = float(v.std())
    return v / sd if sd > 0 else v


def db(x):
    return 10.0 ** (np.asarray(x, dtype=np.float64) / 10.0)
