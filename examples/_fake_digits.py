"""Generated digit-like images, so that the MNIST examples run without a download.

``fake_mnist(n_train, n_test, seed)`` returns what ``funcflux.data.load_mnist``
returns -- ``((X_train, y_train), (X_test, y_test))`` with float32 images in
[0, 1] of shape ``(N, 28, 28)`` and int64 labels 0-9 -- drawn deterministically
from ``seed``. Each digit is a few pen strokes (polylines in a unit box) whose
points are jittered, then slanted, rotated, scaled and shifted at random and
drawn with a random pen width, so a classifier has something to learn but no
real handwriting is involved. Accuracy on these says that the code trains, not
how good a model is on MNIST.

From a script in ``examples/``::

    from _fake_digits import fake_mnist
    (X_train, y_train), (X_test, y_test) = fake_mnist(2000, 500)
"""
from __future__ import annotations

import numpy as np

__all__ = ["fake_mnist", "render_digits"]


def _ellipse(cx: float, cy: float, rx: float, ry: float, start: float = 0.0,
             stop: float = 2 * np.pi, n: int = 10) -> list:
    t = np.linspace(start, stop, n + 1)
    return list(zip(cx + rx * np.sin(t), cy - ry * np.cos(t)))


# Strokes in a unit box: x to the right, y downwards, as on the page.
_STROKES: dict[int, list] = {
    0: [_ellipse(0.5, 0.5, 0.28, 0.4)],
    1: [[(0.35, 0.25), (0.55, 0.1), (0.55, 0.9)]],
    2: [[(0.25, 0.3), (0.35, 0.13), (0.6, 0.1), (0.75, 0.27), (0.7, 0.45), (0.25, 0.9),
         (0.8, 0.9)]],
    3: [[(0.25, 0.15), (0.72, 0.13), (0.48, 0.45), (0.72, 0.6), (0.72, 0.8), (0.5, 0.92),
         (0.24, 0.85)]],
    4: [[(0.62, 0.9), (0.62, 0.1), (0.2, 0.65), (0.82, 0.65)]],
    5: [[(0.75, 0.1), (0.32, 0.1), (0.28, 0.45), (0.6, 0.4), (0.76, 0.6), (0.66, 0.87),
         (0.25, 0.88)]],
    6: [[(0.7, 0.1), (0.42, 0.28), (0.28, 0.6), (0.36, 0.88), (0.64, 0.9), (0.73, 0.67),
         (0.55, 0.5), (0.29, 0.6)]],
    7: [[(0.2, 0.12), (0.8, 0.12), (0.42, 0.9)]],
    8: [_ellipse(0.5, 0.28, 0.2, 0.18), _ellipse(0.5, 0.7, 0.24, 0.21)],
    9: [_ellipse(0.48, 0.3, 0.21, 0.2), [(0.69, 0.3), (0.66, 0.6), (0.6, 0.9)]],
}


def _points_and_segments(digit: int) -> tuple[list, list]:
    """The digit's stroke points, and each segment as a pair of indices into them."""
    points, segs = [], []
    for line in _STROKES[digit]:
        base = len(points)
        points += line
        segs += [(base + i, base + i + 1) for i in range(len(line) - 1)]
    return points, segs


def _tables() -> tuple[np.ndarray, np.ndarray]:
    """``(10, P, 2)`` points and ``(10, S, 2)`` segment indices, padded to the longest digit
    (extra points are unused; extra segments repeat the last one, which changes no minimum)."""
    parts = [_points_and_segments(d) for d in range(10)]
    n_pts, n_segs = max(len(p) for p, _ in parts), max(len(s) for _, s in parts)
    points, segs = np.zeros((10, n_pts, 2)), np.zeros((10, n_segs, 2), np.intp)
    for d, (p, s) in enumerate(parts):
        points[d, :len(p)] = p
        segs[d, :len(s)] = s
        segs[d, len(s):] = s[-1]
    return points, segs


_POINTS, _SEGMENTS = _tables()
_PX, _PY = (g.reshape(1, -1, 1).astype(np.float32)
            for g in np.meshgrid(np.arange(28) + 0.5, np.arange(28) + 0.5))


def render_digits(labels: np.ndarray, rng: np.random.Generator, chunk: int = 256) -> np.ndarray:
    """One random 28x28 image per label: float32 ``(N, 28, 28)`` in [0, 1]."""
    labels = np.asarray(labels)
    out = np.empty((len(labels), 28 * 28), np.float32)
    for lo in range(0, len(labels), chunk):
        lab = labels[lo:lo + chunk]
        n = len(lab)
        # Wobble the pen: move every stroke point a little (segments that meet stay joined).
        pts = _POINTS[lab] + rng.normal(scale=0.025, size=(n,) + _POINTS.shape[1:])
        pts = pts[np.arange(n)[:, None, None], _SEGMENTS[lab]]      # (n, S, 2 ends, 2)
        # A random affine map of the unit box into the 28x28 canvas: MNIST digits sit in
        # a 20x20 box, centred.
        angle = rng.uniform(-0.25, 0.25, n)
        slant = rng.uniform(-0.3, 0.3, n)
        sx, sy = rng.uniform(14, 20, n), rng.uniform(17, 21, n)
        c, s = np.cos(angle), np.sin(angle)
        A = np.empty((n, 2, 2))
        A[:, 0, 0], A[:, 0, 1] = c * sx, (c * slant - s) * sy
        A[:, 1, 0], A[:, 1, 1] = s * sx, (s * slant + c) * sy
        shift = 14 + rng.uniform(-2.5, 2.5, (n, 2))
        pts = np.einsum("nij,nskj->nski", A, pts - 0.5) + shift[:, None, None, :]
        # Distance from every pixel to every segment, x and y apart (float32: speed).
        pts = pts.astype(np.float32)
        ax_, ay = pts[:, :, 0, 0][:, None], pts[:, :, 0, 1][:, None]     # (n, 1, S)
        dx, dy = pts[:, :, 1, 0] - pts[:, :, 0, 0], pts[:, :, 1, 1] - pts[:, :, 0, 1]
        inv = (1.0 / np.maximum(dx * dx + dy * dy, 1e-6))[:, None]
        dx, dy = dx[:, None], dy[:, None]
        px, py = _PX - ax_, _PY - ay                                   # (n, 784, S)
        t = np.clip((px * dx + py * dy) * inv, 0.0, 1.0)
        px -= t * dx
        py -= t * dy
        d = np.sqrt(np.min(px * px + py * py, axis=-1))               # (n, 784)
        width = rng.uniform(0.9, 1.8, (n, 1))
        img = np.clip(width + 0.5 - d, 0.0, 1.0)                    # anti-aliased pen
        img = img * rng.uniform(0.75, 1.0, (n, 1))
        img = img + rng.uniform(0.0, 0.08, (n, 1)) * rng.random((n, 28 * 28))
        out[lo:lo + n] = np.clip(img, 0.0, 1.0)
    return out.reshape(-1, 28, 28)


def fake_mnist(n_train: int = 6000, n_test: int = 1000, seed: int = 0
               ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``((X_train, y_train), (X_test, y_test))`` shaped like ``funcflux.data.load_mnist``'s.

    Deterministic: the same arguments give the same arrays. Classes are
    balanced up to one image.

    >>> (X, y), (Xt, yt) = fake_mnist(20, 10)
    >>> X.shape, X.dtype, y.dtype, sorted(set(y.tolist())) == list(range(10))
    ((20, 28, 28), dtype('float32'), dtype('int64'), True)
    """
    rng = np.random.default_rng(seed)
    out = []
    for n in (n_train, n_test):
        y = rng.permutation(np.arange(n) % 10).astype(np.int64)
        out.append((render_digits(y, rng), y))
    return out[0], out[1]
