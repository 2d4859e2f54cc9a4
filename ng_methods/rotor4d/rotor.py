"""4D rotors: 8 numbers that describe a rotation of (x, y, z, t) space, and the 4x4 matrix they give.

A rotor of 4D geometric algebra is ``r = s + b_xy e_xy + b_xz e_xz + b_yz e_yz + b_xw e_xw + b_yw e_yw + b_zw e_zw
+ p e_xyzw`` (scalar, six bivector planes, pseudoscalar). It rotates a vector by the sandwich product ``r v r~``;
the matrix of that map is :func:`rotor_to_rotation`. We store the components in that order, ``[s, b_xy, b_xz,
b_yz, b_xw, b_yw, b_zw, p]``, which is the official code's ``cat([quats1, quats2])``.

``r v r~`` is a rotation (times ``|r|^2``) only when ``r r~`` is a scalar, i.e. when ``s p - b_xy b_zw + b_xz b_yw
- b_xw b_yz = 0``. Like 4D-Rotor GS's forward pass, the model feeds the *unnormalised* rotor into
:func:`rotor_to_rotation` (so the matrix also scales, which the log-scales absorb); :func:`normalize_rotor`
projects onto that constraint and to unit length, for code that needs a true rotation.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

__all__ = ["identity_rotors", "normalize_rotor", "rotor_pseudo_residual", "rotor_to_rotation", "rotor_to_quaternion"]

ROTOR_DIM = 8


def identity_rotors(num: int, device: torch.device | str = "cpu") -> Float[Tensor, "num 8"]:
    """``num`` identity rotors ``[1, 0, ..., 0]``."""
    rotors = torch.zeros(num, ROTOR_DIM, device=device)
    rotors[:, 0] = 1.0
    return rotors


def rotor_to_rotation(rotors: Float[Tensor, "*batch 8"]) -> Float[Tensor, "*batch 4 4"]:
    """The 4x4 matrix of ``v -> r v r~`` (rows and columns ordered x, y, z, t), without normalising ``r``.

    For a unit rotor satisfying the pseudoscalar constraint this is a rotation (orthogonal, det +1); for a rotor
    with only ``s, b_xy, b_xz, b_yz`` it is the 3D rotation of the quaternion :func:`rotor_to_quaternion` in the
    top-left block and 1 for t.
    """
    s, bxy, bxz, byz, bxw, byw, bzw, p = rotors.unbind(-1)
    ss, xy2, xz2, yz2 = s * s, bxy * bxy, bxz * bxz, byz * byz
    xw2, yw2, zw2, pp = bxw * bxw, byw * byw, bzw * bzw, p * p
    # Diagonal: +s^2 - p^2, minus the planes that contain the axis, plus the planes that do not.
    d0 = ss - pp - xy2 - xz2 - xw2 + yz2 + yw2 + zw2
    d1 = ss - pp - xy2 - yz2 - yw2 + xz2 + xw2 + zw2
    d2 = ss - pp - xz2 - yz2 - zw2 + xy2 + xw2 + yw2
    d3 = ss - pp - xw2 - yw2 - zw2 + xy2 + xz2 + yz2
    rows = [
        [d0,
         2 * (bxy * s - bxz * byz - bxw * byw + bzw * p),
         2 * (bxz * s + bxy * byz - bxw * bzw - byw * p),
         2 * (bxw * s + bxy * byw + bxz * bzw + byz * p)],
        [-2 * (bxy * s + bxz * byz + bxw * byw + bzw * p),
         d1,
         2 * (byz * s - bxy * bxz - byw * bzw + bxw * p),
         2 * (byw * s - bxy * bxw + byz * bzw - bxz * p)],
        [2 * (-bxz * s + bxy * byz - bxw * bzw + byw * p),
         -2 * (byz * s + bxy * bxz + byw * bzw + bxw * p),
         d2,
         2 * (bzw * s - bxz * bxw - byz * byw + bxy * p)],
        [2 * (-bxw * s + bxy * byw + bxz * bzw - byz * p),
         2 * (-byw * s - bxy * bxw + byz * bzw + bxz * p),
         -2 * (bzw * s + bxz * bxw + byz * byw + bxy * p),
         d3],
    ]
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)


def rotor_pseudo_residual(rotors: Float[Tensor, "*batch 8"]) -> Float[Tensor, "*batch"]:
    """The e_xyzw part of ``r r~`` / 2; zero exactly when ``r`` describes a (scaled) rotation."""
    s, bxy, bxz, byz, bxw, byw, bzw, p = rotors.unbind(-1)
    return s * p - bxy * bzw + bxz * byw - bxw * byz


def normalize_rotor(rotors: Float[Tensor, "*batch 8"], eps: float = 1e-7) -> Float[Tensor, "*batch 8"]:
    """Project ``r`` onto the rotors of rotations (zero :func:`rotor_pseudo_residual`), then to unit length.

    The constraint is a quadratic form ``r^T J r = 0`` with ``J`` the involution ``s<->p, b_xy<->-b_zw,
    b_xz<->b_yw, b_yz<->-b_xw`` (``J^2 = I``). Moving along ``J r``: ``r + d J r`` has residual
    ``e (1 + d^2) + d |r|^2`` with ``e`` the old residual, which vanishes for
    ``d = (sqrt(|r|^4 - 4 e^2) - |r|^2) / (2 e)`` (the root of smaller magnitude); rotors already within
    ``eps`` of the constraint are only rescaled.
    """
    s, bxy, bxz, byz, bxw, byw, bzw, p = rotors.unbind(-1)
    dual = torch.stack([p, -bzw, byw, -bxw, -byz, bxz, -bxy, s], dim=-1)
    residual = rotor_pseudo_residual(rotors)
    norm2 = (rotors * rotors).sum(-1)
    needs = residual.abs() > eps
    safe_residual = torch.where(needs, residual, torch.ones_like(residual))
    disc = torch.clamp(norm2 * norm2 - 4 * residual * residual, min=0.0)
    step = torch.where(needs, (torch.sqrt(disc) - norm2) / (2 * safe_residual), torch.zeros_like(residual))
    projected = rotors + step[..., None] * dual
    return projected / (projected.norm(dim=-1, keepdim=True) + eps)


def rotor_to_quaternion(rotors: Float[Tensor, "*batch 8"]) -> Float[Tensor, "*batch 4"]:
    """The (w, x, y, z) quaternion of a rotor's spatial part ``s, b_xy, b_xz, b_yz`` (same 3x3 rotation)."""
    s, bxy, bxz, byz = rotors[..., 0], rotors[..., 1], rotors[..., 2], rotors[..., 3]
    return torch.stack([s, -byz, bxz, -bxy], dim=-1)
