"""Procedural, class-labelled synthetic videos generated on the fly (no files, no downloads).

Each clip shows 1-3 objects moving in one of twelve ways (:data:`CLASS_NAMES`) over a gradient or
textured background. The classes differ by **motion** (and partly by shape), never by colour:
colours, sizes, speeds, directions, positions, phases and backgrounds are drawn at random for
every clip, so a model has to look at how things move to tell the classes apart.

============================  ==============================================================
class                         what happens (shapes)
============================  ==============================================================
0  bouncing                   straight flight, reflected by the four walls (disc, square)
1  orbiting                   circles around a shared centre (disc, diamond)
2  zooming                    grows or shrinks exponentially in place (star, square)
3  rotating                   spins in place (arrow, L-shape: shapes without rotational symmetry)
4  blinking                   appears and disappears periodically in place (square, star, disc)
5  sliding left-right         sinusoidal horizontal oscillation (vertical bar, square)
6  falling                    accelerates downwards under gravity (disc, down triangle)
7  zigzag                     constant horizontal drift with a triangle-wave vertical path
                              (triangle, diamond)
8  spiral                     turns while its radius grows or shrinks (disc, star)
9  shaking                    independent random jitter every frame in place (cross, square)
10 expanding ring             rings that grow from a point, with delays (ring)
11 background pan             the whole scene (texture and the shapes on it) translates:
                              a camera pan (any shape)
============================  ==============================================================

Rendering is vectorised over frames with numpy: every object is a signed distance function
evaluated on broadcast (T, S, S) coordinates (pixel-centre grids cached per (T, S)), turned into
an anti-aliased coverage mask one pixel wide and alpha-composited. Rotation and scale are folded
into per-frame coefficients, and each object is only evaluated inside the box it covers over the
clip, so an object costs about fifteen passes over at most T*S*S floats: a 64x64x16 clip renders
in about 1.2 ms on one core (some 800 clips/s; 128x128x16 about 200 clips/s).

A clip is a pure function of ``(seed, index)``: ``SyntheticVideos`` draws everything from
``numpy.random.default_rng([seed, index])`` and never touches global random state.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import Dataset

from ._index import check_index

__all__ = ["CLASS_NAMES", "NUM_CLASSES", "SyntheticVideos", "render_clip"]

#: Human-readable class names; the label of a clip is its index in this tuple.
CLASS_NAMES: tuple[str, ...] = (
    "bouncing",
    "orbiting",
    "zooming",
    "rotating",
    "blinking",
    "sliding left-right",
    "falling",
    "zigzag",
    "spiral",
    "shaking",
    "expanding ring",
    "background pan",
)
NUM_CLASSES = len(CLASS_NAMES)

_F = np.float32
_SQRT3_2 = math.sqrt(3.0) / 2.0


# ----------------------------------------------------------------------------------------------
# Coordinates
# ----------------------------------------------------------------------------------------------


@lru_cache(maxsize=32)
def _coords(frames: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cached broadcastable grids: tau (T, 1, 1) in [0, 1], y (1, S, 1), x (1, 1, S) pixel centres in [0, 1].

    Broadcasting these three views is the (T, S, S) coordinate grid without materialising it.
    """
    tau = (np.arange(frames, dtype=_F) / _F(max(frames - 1, 1))).reshape(frames, 1, 1)
    c = (np.arange(size, dtype=_F) + _F(0.5)) / _F(size)
    for a in (tau, c):
        a.setflags(write=False)
    return tau, c.reshape(1, size, 1), c.reshape(1, 1, size)


# ----------------------------------------------------------------------------------------------
# Shapes: signed distances in the object's own unit frame (size 1, pointing "up")
# ----------------------------------------------------------------------------------------------


def _box(u: np.ndarray, v: np.ndarray, hw: float, hh: float) -> np.ndarray:
    return np.maximum(np.abs(u) - _F(hw), np.abs(v) - _F(hh))


def _triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Equilateral triangle, apex up (image v grows downwards), circumradius 1."""
    a = _F(_SQRT3_2) * u
    b = _F(-0.5) * v - _F(0.5)
    return np.maximum(np.maximum(a + b, b - a), v - _F(0.5))


def _radius(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.sqrt(u * u + v * v)  # several times faster than np.hypot on float32


def _sdf_disc(u, v):
    return _radius(u, v) - _F(1.0)


def _sdf_square(u, v):
    return _box(u, v, 0.85, 0.85)


def _sdf_diamond(u, v):
    return (np.abs(u) + np.abs(v) - _F(1.1)) * _F(0.7071)


def _sdf_star(u, v):  # hexagram: two triangles
    return np.minimum(_triangle(u, v), _triangle(u, -v))


def _sdf_triangle(u, v):
    return _triangle(u, v * _F(0.9) - _F(0.1))


def _sdf_cross(u, v):
    return np.minimum(_box(u, v, 1.0, 0.3), _box(u, v, 0.3, 1.0))


def _sdf_bar(u, v):
    return _box(u, v, 0.35, 1.1)


def _sdf_arrow(u, v):  # shaft plus a head: no rotational symmetry
    head = _triangle(u * _F(1.6), (v + _F(0.45)) * _F(1.6)) / _F(1.6)
    return np.minimum(_box(u, v - _F(0.35), 0.2, 0.65), head)


def _sdf_ell(u, v):  # an "L": no rotational or mirror symmetry about the centre
    return np.minimum(_box(u + _F(0.45), v, 0.3, 1.0), _box(u, v - _F(0.7), 0.75, 0.3))


def _sdf_ring(u, v):  # thickness set through the object's "width" parameter (see _draw)
    return np.abs(_radius(u, v) - _F(1.0))


#: every shape lies within this distance of its centre (object units); used for bounding boxes
_EXTENT = 1.3

_SHAPES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "disc": _sdf_disc,
    "square": _sdf_square,
    "diamond": _sdf_diamond,
    "star": _sdf_star,
    "triangle": _sdf_triangle,
    "cross": _sdf_cross,
    "bar": _sdf_bar,
    "arrow": _sdf_arrow,
    "ell": _sdf_ell,
    "ring": _sdf_ring,
}

#: shapes each class draws from (index = label)
_CLASS_SHAPES: tuple[tuple[str, ...], ...] = (
    ("disc", "square"),
    ("disc", "diamond"),
    ("star", "square"),
    ("arrow", "ell"),
    ("square", "star", "disc"),
    ("bar", "square"),
    ("disc", "triangle"),
    ("triangle", "diamond"),
    ("disc", "star"),
    ("cross", "square"),
    ("ring",),
    ("disc", "square", "diamond", "star", "triangle", "cross", "arrow", "ell"),
)


# ----------------------------------------------------------------------------------------------
# Colours and backgrounds
# ----------------------------------------------------------------------------------------------


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    """One HSV colour (all in [0, 1]) -> RGB float32 (3,)."""
    k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
    return (v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)).astype(_F)


def _colour(rng: np.random.Generator, light: bool, saturated: bool, mid: bool = False) -> np.ndarray:
    """A random colour: light (value 0.7-1), dark (0.08-0.35), or towards the middle (``mid``)."""
    if mid:
        value = rng.uniform(0.45, 0.6) if light else rng.uniform(0.35, 0.5)
    else:
        value = rng.uniform(0.7, 1.0) if light else rng.uniform(0.08, 0.35)
    sat = rng.uniform(0.5, 1.0) if saturated else rng.uniform(0.0, 0.5)
    return _hsv(rng.random(), sat, value)


def _periodic_lerp(q: np.ndarray, g: int) -> np.ndarray:
    """Interpolation matrices for a periodic grid of ``g`` cells sampled at q (..., S) -> (..., S, g)."""
    q0 = np.floor(q)
    f = q - q0
    f = _F(0.5) - _F(0.5) * np.cos(_F(math.pi) * f)  # smooth (cosine) weights
    i0 = q0.astype(np.int64) % g
    m = np.zeros(q.shape + (g,), dtype=_F)
    np.put_along_axis(m, i0[..., None], (1 - f)[..., None], axis=-1)
    i1 = (i0 + 1) % g
    np.put_along_axis(m, i1[..., None], np.take_along_axis(m, i1[..., None], -1) + f[..., None], axis=-1)
    return m


def _background(
    rng: np.random.Generator, frames: int, size: int, shift: np.ndarray | None, light: bool
) -> np.ndarray:
    """A background as float32 (3, T, S, S) in [0, 1]; ``shift`` (T, 2) pans it (else static)."""
    tau, y, x = _coords(frames, size)
    kind = int(rng.integers(0, 4)) if shift is None else int(rng.integers(1, 4))  # a pan needs texture
    if shift is None:
        sx = sy = _F(0.0)
        nt = 1
    else:
        sx = shift[:, 0].astype(_F).reshape(-1, 1, 1)
        sy = shift[:, 1].astype(_F).reshape(-1, 1, 1)
        nt = frames
    if kind == 0:  # linear gradient in a random direction
        a = rng.uniform(0, 2 * math.pi)
        field = np.clip(_F(math.cos(a)) * (x - _F(0.5)) + _F(math.sin(a)) * (y - _F(0.5)) + _F(0.5), 0, 1)
    elif kind == 1:  # two plane waves
        field = np.zeros((nt, size, size), dtype=_F)
        for _ in range(2):
            freq = rng.uniform(1.5, 5.0)
            a = rng.uniform(0, 2 * math.pi)
            kx, ky = _F(2 * math.pi * freq * math.cos(a)), _F(2 * math.pi * freq * math.sin(a))
            phase = _F(rng.uniform(0, 2 * math.pi)) - kx * sx - ky * sy
            field = field + _F(0.25) * np.sin(kx * x + ky * y + phase)
        field = field + _F(0.5)
    elif kind == 2:  # soft checkerboard
        f = _F(rng.uniform(2.0, 6.0))
        px, py = rng.uniform(0, 1, size=2).astype(_F)
        cx = np.sin(_F(2 * math.pi) * f * (x - sx + px))
        cy = np.sin(_F(2 * math.pi) * f * (y - sy + py))
        field = np.clip(_F(0.5) + _F(2.5) * cx * cy, 0, 1)
    else:  # smooth value noise on a periodic lattice
        g = int(rng.integers(3, 8))
        lattice = rng.random((g, g)).astype(_F)
        qx = (x[0, 0] - np.reshape(sx, (-1, 1))) * _F(g)  # (nt, S)
        qy = (y[0, :, 0] - np.reshape(sy, (-1, 1))) * _F(g)
        mx, my = _periodic_lerp(qx, g), _periodic_lerp(qy, g)  # (nt, S, g)
        field = my @ lattice @ mx.transpose(0, 2, 1)  # (nt, S, S)
    c0 = _colour(rng, light, saturated=False)
    c1 = _colour(rng, light, saturated=bool(rng.random() < 0.5), mid=shift is not None)
    contrast = _F(rng.uniform(0.3, 1.0) if shift is None else rng.uniform(0.8, 1.0))  # a pan must show
    bg = c0.reshape(3, 1, 1, 1) + (contrast * (c1 - c0)).reshape(3, 1, 1, 1) * np.reshape(field, (1, -1, size, size))
    out = np.empty((3, frames, size, size), dtype=_F)
    out[...] = bg
    return out


# ----------------------------------------------------------------------------------------------
# Compositing
# ----------------------------------------------------------------------------------------------


def _span(lo: np.ndarray, hi: np.ndarray, size: int) -> tuple[int, int]:
    """Pixel range [a, b) covering [min(lo), max(hi)] (units), clipped to the frame."""
    a = int(np.floor(float(np.min(lo)) * size))
    b = int(np.ceil(float(np.max(hi)) * size))
    return max(a, 0), min(b, size)


def _draw(
    canvas: np.ndarray,
    shape: str,
    colour: np.ndarray,
    cx: np.ndarray,
    cy: np.ndarray,
    scale: np.ndarray | float,
    angle: np.ndarray | float,
    alpha: np.ndarray | None = None,
    width: float | None = None,
) -> None:
    """Composite one object into ``canvas`` (3, T, S, S) in place.

    cx, cy: (T,) centre in [0, 1] units; scale: (T,) or scalar radius in the same units; angle:
    (T,) or scalar radians; alpha: (T,) opacity or None; width: ring half-thickness (units).
    """
    _, frames, size, _ = canvas.shape
    _, y, x = _coords(frames, size)
    t_shape = (frames, 1, 1)
    s = np.broadcast_to(np.asarray(scale, dtype=_F), (frames,)).reshape(t_shape)
    a = np.broadcast_to(np.asarray(angle, dtype=_F), (frames,)).reshape(t_shape)
    # work only inside the box the object covers in any frame (plus the anti-aliasing pixel)
    reach = _EXTENT * s.reshape(-1) + (width or 0.0) + 1.5 / size  # (T,)
    x0, x1 = _span(cx - reach, cx + reach, size)
    y0, y1 = _span(cy - reach, cy + reach, size)
    if x0 >= x1 or y0 >= y1:
        return  # entirely outside the frame
    canvas = canvas[:, :, y0:y1, x0:x1]
    x, y = x[:, :, x0:x1], y[:, y0:y1, :]
    ca, sa = np.cos(a) / s, np.sin(a) / s  # rotation and 1/scale folded together (T, 1, 1)
    dx = x - cx.astype(_F).reshape(t_shape)  # (T, 1, w)
    dy = y - cy.astype(_F).reshape(t_shape)  # (T, h, 1)
    u = dx * ca + dy * sa  # (T, h, w) object frame
    v = dy * ca - dx * sa
    d = _SHAPES[shape](u, v)  # signed distance in object units
    px = s * _F(size)  # pixels per object unit (T, 1, 1)
    if width is not None:  # ring: distance to the circle minus the half-thickness
        d = d - _F(width) / s
    m = _F(0.5) - d * px  # anti-aliased coverage, one pixel wide
    np.clip(m, 0, 1, out=m)
    if alpha is not None:
        m *= np.asarray(alpha, dtype=_F).reshape(t_shape)
    inv = _F(1.0) - m
    for c in range(3):
        ch = canvas[c]
        ch *= inv
        ch += _F(colour[c]) * m


# ----------------------------------------------------------------------------------------------
# Motions: each returns per-object tracks (cx, cy, scale, angle, alpha) of shape (T,)
# ----------------------------------------------------------------------------------------------


def _fold(p: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Reflect positions into [lo, hi] (a ball bouncing between two walls)."""
    span = max(hi - lo, 1e-6)
    q = np.mod(p - lo, 2 * span)
    return lo + span - np.abs(q - span)


def _tri(p: np.ndarray) -> np.ndarray:
    """Triangle wave of period 1 in [-1, 1]."""
    return 4.0 * np.abs(p - np.floor(p + 0.5)) - 1.0


def render_clip(label: int, rng: np.random.Generator, frames: int = 16, size: int = 64) -> np.ndarray:
    """Render one clip of class ``label`` with randomness from ``rng``.

    Returns float32 (3, T, S, S) in [-1, 1] with T = ``frames`` and S = ``size``.
    """
    if not 0 <= label < NUM_CLASSES:
        raise ValueError(f"label must be in [0, {NUM_CLASSES - 1}], got {label}.")
    if frames < 1 or size < 4:
        raise ValueError(f"need frames >= 1 and size >= 4, got frames={frames}, size={size}.")
    tau = _coords(frames, size)[0].reshape(-1).astype(np.float64)  # (T,) in [0, 1]
    name = CLASS_NAMES[label]
    light_bg = bool(rng.random() < 0.5)

    shift = None
    if name == "background pan":
        a = rng.uniform(0, 2 * math.pi)
        dist = rng.uniform(0.3, 0.8)
        shift = np.stack([math.cos(a) * dist * tau, math.sin(a) * dist * tau], axis=1)  # (T, 2)
    canvas = _background(rng, frames, size, shift, light_bg)

    n_obj = int(rng.integers(1, 4))
    shapes = _CLASS_SHAPES[label]
    ones = np.ones(frames)
    centre = rng.uniform(0.4, 0.6, size=2)  # shared by orbiting / spiral objects
    turn_sign = 1.0 if rng.random() < 0.5 else -1.0
    for _ in range(n_obj):
        shape = shapes[int(rng.integers(len(shapes)))]
        colour = _colour(rng, not light_bg, saturated=True)
        r = rng.uniform(0.06, 0.13)
        angle: np.ndarray | float = rng.uniform(0, 2 * math.pi) if shape != "bar" else 0.0
        scale: np.ndarray | float = r
        alpha = None
        width = None
        if name == "bouncing":
            p0 = rng.uniform(r, 1 - r, size=2)
            a = rng.uniform(0, 2 * math.pi)
            speed = rng.uniform(0.8, 1.6)
            cx = _fold(p0[0] + math.cos(a) * speed * tau, r, 1 - r)
            cy = _fold(p0[1] + math.sin(a) * speed * tau, r, 1 - r)
        elif name == "orbiting":
            radius = rng.uniform(0.15, 0.32)
            phase = rng.uniform(0, 2 * math.pi)
            theta = phase + turn_sign * 2 * math.pi * rng.uniform(0.5, 1.0) * tau
            cx, cy = centre[0] + radius * np.cos(theta), centre[1] + radius * np.sin(theta)
        elif name == "zooming":
            cx, cy = rng.uniform(0.3, 0.7, size=2)[:, None] * ones
            small, big = rng.uniform(0.03, 0.06), rng.uniform(0.22, 0.35)
            s0, s1 = (small, big) if rng.random() < 0.5 else (big, small)
            scale = s0 * (s1 / s0) ** tau
        elif name == "rotating":
            r = rng.uniform(0.1, 0.18)
            scale = r
            cx, cy = rng.uniform(r, 1 - r, size=2)[:, None] * ones
            angle = float(angle) + rng.choice([-1.0, 1.0]) * 2 * math.pi * rng.uniform(0.4, 1.2) * tau
        elif name == "blinking":
            cx, cy = rng.uniform(r, 1 - r, size=2)[:, None] * ones
            cycles, phase = rng.uniform(2.0, 4.0), rng.random()
            alpha = (np.mod(cycles * tau + phase, 1.0) < 0.5).astype(np.float64)
        elif name == "sliding left-right":
            amp = rng.uniform(0.15, 0.32)
            margin = max(0.45 - amp - r, 0.0)
            base = 0.5 + rng.uniform(-margin, margin)
            cx = base + amp * np.sin(2 * math.pi * rng.uniform(0.75, 2.0) * tau + rng.uniform(0, 2 * math.pi))
            cy = rng.uniform(r, 1 - r) * ones
        elif name == "falling":
            y0, y1 = rng.uniform(-0.05, 0.3), rng.uniform(0.75, 1.05)
            v0 = rng.uniform(0.0, 0.15)
            g = 2.0 * (y1 - y0 - v0)
            cy = y0 + v0 * tau + 0.5 * g * tau**2
            cx = rng.uniform(0.15, 0.85) + rng.uniform(-0.1, 0.1) * tau
            if shape == "triangle":
                angle = math.pi  # pointing down
        elif name == "zigzag":
            vx = rng.choice([-1.0, 1.0]) * rng.uniform(0.4, 0.7)
            cx = 0.5 - vx / 2 + rng.uniform(-0.08, 0.08) + vx * tau
            amp = rng.uniform(0.1, 0.22)
            cy = rng.uniform(0.3, 0.7) + amp * _tri(rng.uniform(1.5, 3.0) * tau + rng.random())
        elif name == "spiral":
            near, far = rng.uniform(0.0, 0.06), rng.uniform(0.25, 0.38)
            r0, r1 = (near, far) if rng.random() < 0.5 else (far, near)
            theta = rng.uniform(0, 2 * math.pi) + turn_sign * 2 * math.pi * rng.uniform(0.75, 1.5) * tau
            radius = r0 + (r1 - r0) * tau
            cx, cy = centre[0] + radius * np.cos(theta), centre[1] + radius * np.sin(theta)
        elif name == "shaking":
            sigma = rng.uniform(0.015, 0.04)
            jitter = rng.normal(0.0, sigma, size=(2, frames))
            cx = rng.uniform(0.2, 0.8) + jitter[0]
            cy = rng.uniform(0.2, 0.8) + jitter[1]
            angle = float(angle) + rng.normal(0.0, 0.12, size=frames)
        elif name == "expanding ring":
            cx, cy = rng.uniform(0.2, 0.8, size=2)[:, None] * ones
            delay = rng.uniform(0.0, 0.4)
            grow = np.clip((tau - delay) / (1.0 - delay), 0.0, 1.0)
            scale = 0.02 + rng.uniform(0.3, 0.55) * grow
            width = rng.uniform(0.012, 0.035)
            alpha = (tau >= delay).astype(np.float64)
        else:  # background pan: objects painted on the scene move with it
            assert shift is not None
            cx = rng.uniform(0.1, 0.9) - shift[:, 0]
            cy = rng.uniform(0.1, 0.9) - shift[:, 1]
        _draw(canvas, shape, colour, np.asarray(cx), np.asarray(cy), scale, angle, alpha, width)
    canvas *= _F(2.0)
    canvas -= _F(1.0)
    np.clip(canvas, -1.0, 1.0, out=canvas)
    return canvas


# ----------------------------------------------------------------------------------------------
# Dataset
# ----------------------------------------------------------------------------------------------


class SyntheticVideos(Dataset):
    """``num_clips`` procedural clips; item ``i`` has label ``i % NUM_CLASSES``.

    ``dataset[i]`` -> ``{"video": float32 (3, T, S, S) in [-1, 1], "label": int, "index": i}``,
    identical for the same ``(seed, i)`` in any process, worker or order.
    """

    classes: tuple[str, ...] = CLASS_NAMES

    def __init__(self, num_clips: int = 10_000, frames: int = 16, size: int = 64, seed: int = 0):
        if num_clips < 1:
            raise ValueError(f"num_clips must be at least 1, got {num_clips}.")
        if frames < 1 or size < 4:
            raise ValueError(f"need frames >= 1 and size >= 4, got frames={frames}, size={size}.")
        if seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}.")
        self.num_clips, self.frames, self.size, self.seed = int(num_clips), int(frames), int(size), int(seed)

    def __len__(self) -> int:
        return self.num_clips

    def __getitem__(self, index: int) -> dict:
        i = check_index(index, self.num_clips, "clips")
        label = i % NUM_CLASSES
        video = render_clip(label, np.random.default_rng([self.seed, i]), self.frames, self.size)
        return {"video": torch.from_numpy(video), "label": label, "index": i}

    def __repr__(self) -> str:
        return f"SyntheticVideos(num_clips={self.num_clips}, frames={self.frames}, size={self.size}, seed={self.seed})"
