"""Procedural synthetic faces with identities, for training, tests and the demo.

No face dataset with identity labels can be installed on the project's machines, so the project
draws its own. Each *identity* has fixed traits (face shape, skin tone, hair colour and style,
eye spacing/size/colour, brows, nose, mouth, beard, glasses); each *image* of it varies in pose
(in-plane rotation, scale, shift, a yaw-like squash), lighting (direction, strength, brightness,
colour temperature), expression (smile, open mouth, eye openness), background and pixel noise.
Recognising the identity is therefore a real task: images of one person differ more in raw pixels
than some images of two different people.

Everything is a pure function of ``(seed, identity)`` for traits and ``(seed, identity, variation)``
for an image, through the counter-based hash of :mod:`advface_fast.engines.seeding`: deterministic,
independent of batching, and identity sets are disjoint by construction (different id ranges).
Rendering is vectorised over the batch with soft-edged signed-distance shapes (anti-aliased at any
size from 32 to 112 pixels and beyond). Images are float32 ``(B, 3, S, S)`` in ``[-1, 1]``.
"""

from __future__ import annotations

import math

import torch

from ..engines.seeding import row_uniform

# trait and variation slots of the counter-based uniforms (each a column of row_uniform)
_N_TRAITS = 40
_N_VARS = 24
_SALT_TRAITS = 0x5F1D
_SALT_VARS = 0xA11CE
_SALT_NOISE = 0xB0B


def _u(cols: torch.Tensor, i: int, lo: float, hi: float) -> torch.Tensor:
    """Column ``i`` of uniforms in [-1, 1) mapped to [lo, hi), shaped (B, 1, 1) for broadcasting."""
    return (lo + (cols[:, i] + 1) * 0.5 * (hi - lo)).reshape(-1, 1, 1)


def _ellipse(x, y, cx, cy, rx, ry, soft):
    """Soft mask of an axis-aligned ellipse (1 inside, 0 outside, ~``soft`` wide edge).

    The signed distance is the first-order estimate ``(1 - r) / |grad r|``, capped by the distance
    to the bounding box: alone, the estimate collapses to ~0 beyond the tips of thin ellipses
    (a closed mouth), which would smear half-tone arcs across the image."""
    dx, dy = x - cx, y - cy
    r = torch.sqrt((dx / rx) ** 2 + (dy / ry) ** 2 + 1e-12)
    grad = torch.sqrt((dx / rx**2) ** 2 + (dy / ry**2) ** 2 + 1e-12) / r
    dist = torch.minimum((1 - r) / grad, torch.minimum(rx - dx.abs(), ry - dy.abs()))
    return torch.sigmoid(dist / soft)


def _blend(img, colour, mask):
    return img + (colour - img) * mask.unsqueeze(1)


def _palette(t: torch.Tensor, stops: list[tuple[float, float, float]]) -> torch.Tensor:
    """Piecewise-linear colour ramp: ``t`` in [0, 1] (B,1,1) -> (B, 3, 1, 1)."""
    s = torch.tensor(stops, dtype=t.dtype)
    pos = t.reshape(-1).clamp(0, 1) * (len(stops) - 1)
    i0 = pos.floor().long().clamp(max=len(stops) - 2)
    w = (pos - i0).unsqueeze(1)
    return (s[i0] * (1 - w) + s[i0 + 1] * w).reshape(-1, 3, 1, 1)


SKIN = [(0.98, 0.86, 0.76), (0.93, 0.76, 0.62), (0.80, 0.60, 0.45), (0.60, 0.42, 0.30), (0.40, 0.27, 0.19)]
HAIR = [
    (0.08, 0.06, 0.05),
    (0.30, 0.18, 0.10),
    (0.55, 0.35, 0.18),
    (0.85, 0.70, 0.40),
    (0.70, 0.25, 0.10),
    (0.75, 0.75, 0.75),
]
IRIS = [(0.35, 0.20, 0.10), (0.25, 0.45, 0.70), (0.30, 0.50, 0.30), (0.45, 0.45, 0.50)]


class SynthFaces:
    """Renderer of synthetic faces.

    Args:
        size: image side in pixels (32 to 112 tested; any size >= 16 renders).
        seed: world seed: the same ``(seed, identity, variation)`` always gives the same image.
    """

    def __init__(self, size: int = 32, seed: int = 0) -> None:
        if size < 16:
            raise ValueError(f"size must be at least 16 pixels, got {size}")
        self.size = int(size)
        self.seed = int(seed)

    def render(self, identities: torch.Tensor, variations: torch.Tensor, *, noise: bool = True) -> torch.Tensor:
        """Images ``(B, 3, S, S)`` float32 in [-1, 1] for int64 ``identities`` and ``variations`` ``(B,)``."""
        ids = torch.as_tensor(identities, dtype=torch.int64).reshape(-1)
        var = torch.as_tensor(variations, dtype=torch.int64).reshape(-1)
        if ids.shape != var.shape:
            raise ValueError(f"identities and variations must have one shape, got {ids.shape} and {var.shape}")
        if len(ids) and (int(ids.min()) < 0 or int(var.min()) < 0):
            raise ValueError("identities and variations must be non-negative")
        n, s = len(ids), self.size
        tr = row_uniform(self.seed ^ _SALT_TRAITS, ids, _N_TRAITS).float()
        # an image's key combines identity and variation injectively for variations < 2**20
        vr = row_uniform(self.seed ^ _SALT_VARS, ids * (1 << 20) + var, _N_VARS).float()
        soft = torch.tensor(1.2 / s)

        # ---- pose: in-plane rotation, scale, shift, yaw-like squash (per image)
        ang = _u(vr, 0, -0.26, 0.26)  # +-15 degrees
        scale = _u(vr, 1, 0.88, 1.10)
        tx, ty = _u(vr, 2, -0.08, 0.08), _u(vr, 3, -0.07, 0.07)
        yaw = _u(vr, 4, -0.35, 0.35)
        lin = torch.linspace(-1 + 1 / s, 1 - 1 / s, s)
        v, u = torch.meshgrid(lin, lin, indexing="ij")
        u, v = u.expand(n, s, s), v.expand(n, s, s)
        cu, cv = u - tx, v - ty
        x = (torch.cos(ang) * cu + torch.sin(ang) * cv) / scale
        y = (-torch.sin(ang) * cu + torch.cos(ang) * cv) / scale
        x = x / (1 - 0.25 * yaw.abs())  # turning the head narrows it ...
        fx = yaw * 0.18  # ... and moves the inner features sideways

        # ---- identity traits
        face_w, face_h = _u(tr, 0, 0.50, 0.68), _u(tr, 1, 0.66, 0.84)
        chin = _u(tr, 2, 0.0, 0.35)
        skin = _palette(_u(tr, 3, 0, 1), SKIN) + 0.04 * torch.stack([tr[:, 4], tr[:, 5], tr[:, 6]], 1).reshape(
            -1, 3, 1, 1
        )
        hair = _palette(_u(tr, 7, 0, 1), HAIR)
        hairline = _u(tr, 8, -0.72, -0.38)
        hair_vol = _u(tr, 9, 1.02, 1.25)
        hair_len = _u(tr, 10, -0.2, 0.7)
        eye_dx, eye_y = _u(tr, 11, 0.20, 0.34), _u(tr, 12, -0.18, 0.02)
        eye_rx, eye_ry = _u(tr, 13, 0.075, 0.13), _u(tr, 14, 0.035, 0.065)
        iris = _palette(_u(tr, 15, 0, 1), IRIS)
        brow_up, brow_th = _u(tr, 16, 0.10, 0.18), _u(tr, 17, 0.018, 0.045)
        brow_tilt = _u(tr, 18, -0.25, 0.25)
        nose_len, nose_w = _u(tr, 19, 0.14, 0.30), _u(tr, 20, 0.045, 0.10)
        mouth_y, mouth_w = _u(tr, 21, 0.34, 0.52), _u(tr, 22, 0.13, 0.27)
        lip_th = _u(tr, 23, 0.018, 0.045)
        lip = skin.squeeze(-1).squeeze(-1) * torch.tensor([0.85, 0.55, 0.55])
        lip = (lip + 0.1 * _u(tr, 24, -1, 1).reshape(-1, 1)).reshape(-1, 3, 1, 1)
        beard = (_u(tr, 25, 0, 1) > 0.78).float()
        glasses = (_u(tr, 26, 0, 1) > 0.85).float()
        ear_size = _u(tr, 27, 0.08, 0.14)

        # ---- per-image appearance
        bg = (0.5 + 0.45 * torch.stack([vr[:, 5], vr[:, 6], vr[:, 7]], 1)).reshape(-1, 3, 1, 1)
        smile, mouth_open = _u(vr, 8, -0.3, 1.0), _u(vr, 9, 0.0, 0.7)
        blink = _u(vr, 10, 0.35, 1.0)
        light_dir = _u(vr, 11, -math.pi, math.pi)
        light_amt, bright = _u(vr, 12, 0.0, 0.40), _u(vr, 13, 0.72, 1.15)
        temp = 0.06 * _u(vr, 14, -1, 1)

        img = bg.expand(n, 3, s, s).clone()
        img = _blend(
            img,
            hair,
            _ellipse(x, y, 0, -0.12 + 0.2 * hair_len, face_w * hair_vol, face_h * (0.9 + 0.35 * hair_len), soft),
        )
        for side in (-1, 1):  # ears
            img = _blend(
                img, skin * 0.93, _ellipse(x, y, side * face_w * 0.98, eye_y + 0.05, ear_size * 0.7, ear_size, soft)
            )
        # face: an ellipse whose lower half narrows towards the chin
        taper = 1 - chin * torch.clamp(y / face_h, min=0) ** 2
        face = _ellipse(x / taper.clamp(min=0.3), y, 0, 0, face_w, face_h, soft)
        img = _blend(img, skin, face)
        fringe = face * torch.sigmoid((hairline + 0.06 * torch.sin(6 * x + 3 * tr[:, 28].reshape(-1, 1, 1)) - y) / soft)
        img = _blend(img, hair, fringe)
        img = _blend(img, hair * 0.9, beard * face * torch.sigmoid((y - mouth_y + 0.12) / soft) * 0.85)
        for side in (-1, 1):
            ex = side * eye_dx + fx
            img = _blend(img, torch.full_like(skin, 0.95), _ellipse(x, y, ex, eye_y, eye_rx, eye_ry * blink, soft))
            img = _blend(img, iris, _ellipse(x, y, ex + 0.3 * fx, eye_y, eye_ry * 0.95, eye_ry * 0.95 * blink, soft))
            img = _blend(
                img,
                torch.full_like(skin, 0.05),
                _ellipse(x, y, ex + 0.3 * fx, eye_y, eye_ry * 0.4, eye_ry * 0.4 * blink, soft),
            )
            by = eye_y - brow_up + side * brow_tilt * (x - ex)
            img = _blend(img, hair * 0.8, _ellipse(x, y, ex, by, eye_rx * 1.25, brow_th, soft))
            ring = _ellipse(x, y, ex, eye_y, eye_rx * 1.45, eye_ry * 2.6, soft)
            ring = ring - _ellipse(x, y, ex, eye_y, eye_rx * 1.3, eye_ry * 2.3, soft)
            img = _blend(img, torch.full_like(skin, 0.1), glasses * ring.clamp(min=0))
        nose_y = eye_y + 0.06 + nose_len / 2
        img = _blend(img, skin * 0.78, _ellipse(x, y, fx * 1.3, nose_y, nose_w, nose_len / 2, soft) * 0.6)
        img = _blend(img, skin * 0.55, _ellipse(x, y, fx * 1.3, nose_y + nose_len / 2, nose_w * 0.9, 0.025, soft))
        # mouth: lips bent by the smile, opening shows a dark gap
        mx = x - fx
        bend = mouth_y + smile * 0.08 * (1 - (mx / mouth_w) ** 2)  # smile > 0: corners up
        lips = _ellipse(mx, y, 0, bend, mouth_w, lip_th + mouth_open * 0.05, soft)
        img = _blend(img, lip, lips)
        img = _blend(
            img, torch.full_like(skin, 0.12), _ellipse(mx, y, 0, bend, mouth_w * 0.8, mouth_open * 0.045 + 1e-3, soft)
        )

        # lighting: a directional ramp, brightness and colour temperature
        ramp = 1 + light_amt * (torch.cos(light_dir) * u + torch.sin(light_dir) * v)
        img = img * (ramp * bright).unsqueeze(1)
        img = img + torch.cat([temp, torch.zeros_like(temp), -temp], 1).reshape(-1, 3, 1, 1)
        if noise:
            sigma = _u(vr, 15, 0.01, 0.05).reshape(-1, 1, 1, 1)
            pix = row_uniform(self.seed ^ _SALT_NOISE, ids * (1 << 20) + var, 3 * s * s).float()
            img = img + sigma * 1.7 * pix.reshape(n, 3, s, s)  # uniform noise of std ~ sigma
        return (img.clamp(0, 1) * 2 - 1).contiguous()

    def dataset(
        self, n_ids: int, per_id: int, id_offset: int = 0, var_offset: int = 0, batch: int = 4096
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images (n_ids*per_id, 3, S, S), labels (n_ids*per_id,) int64)`` for identities
        ``id_offset .. id_offset+n_ids-1``, variations ``var_offset ..`` of each."""
        ids = torch.arange(id_offset, id_offset + n_ids).repeat_interleave(per_id)
        var = torch.arange(var_offset, var_offset + per_id).repeat(n_ids)
        imgs = torch.cat([self.render(ids[a : a + batch], var[a : a + batch]) for a in range(0, len(ids), batch)])
        return imgs, ids


def synth_faces(
    n_ids: int, per_id: int, *, size: int = 32, seed: int = 0, id_offset: int = 0, var_offset: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shorthand for ``SynthFaces(size, seed).dataset(n_ids, per_id, id_offset, var_offset)``."""
    return SynthFaces(size, seed).dataset(n_ids, per_id, id_offset, var_offset)
