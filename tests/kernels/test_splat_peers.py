"""Peers: our pure-PyTorch Gaussian projection and spherical harmonics against gsplat 1.4.0's own PyTorch
reference, ``gsplat.cuda._torch_impl`` (it runs on CPU; the CUDA extension is not touched), in float64 and
float32, values and gradients.

Ours -> peer:

- ``ng_methods.kernels.splat.reference.quat_to_rotmat`` -> ``_quat_to_rotmat``;
- ``...reference.quat_scale_to_covar`` -> ``_quat_scale_to_covar_preci(compute_preci=False)``;
- ``...reference._projection_impl`` (the maths ``project_gaussians`` falls back to without gsplat: world to
  camera, clamped-frustum EWA Jacobian, eps2d, conics, radii, culling, compensation) -> ``_fully_fused_projection``
  (``_world_to_cam`` + ``_persp_proj`` + the rest), pinhole;
- ``ng_methods.splat.sh.sh_basis`` -> ``_eval_sh_bases_fast`` and ``...sh.eval_sh`` -> ``_spherical_harmonics``,
  degrees 0 to 4 (gsplat's maximum).

Tolerances: float64 1e-12 (relative and absolute), float32 1e-5: the two sides are the same formulas up to the
order of operations (SH: gsplat uses Sloan's recurrences with z^2 = 1 - x^2 - y^2 folded in, so they agree on unit
directions only, which is what both evaluate).
"""

from __future__ import annotations

from typing import Dict, Sequence

import gsplat
import pytest
import torch
import torch.nn.functional as F

from ng_methods.kernels.splat.reference import _projection_impl, quat_scale_to_covar, quat_to_rotmat
from ng_methods.splat.sh import MAX_SH_DEGREE, eval_sh, sh_basis

G = pytest.importorskip("gsplat.cuda._torch_impl")

PEER_VERSION = "1.4.0"
PEER = f"gsplat=={gsplat.__version__}"
TOL = {torch.float64: dict(rtol=1e-12, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-5)}
DTYPES = pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=lambda d: f"{PEER}-{d}")


@pytest.fixture(autouse=True)
def pinned_peer():
    assert gsplat.__version__ == PEER_VERSION, f"peer changed: gsplat {gsplat.__version__} (pinned in pyproject.toml)"


def grads(outputs: Sequence[torch.Tensor], inputs: Sequence[torch.Tensor], seed: int = 1):
    """Gradients of a fixed random linear functional of ``outputs`` (None -> zeros)."""
    gen = torch.Generator().manual_seed(seed)
    loss = sum((torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.dtype) * o).sum() for o in outputs)
    if not loss.requires_grad:  # e.g. the degree-0 SH basis, a constant
        return [torch.zeros_like(x) for x in inputs]
    result = torch.autograd.grad(loss, inputs, allow_unused=True, retain_graph=True)
    return [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, result)]


def assert_close_all(ours: Sequence[torch.Tensor], theirs: Sequence[torch.Tensor], names: Sequence[str], **tol):
    for name, x, y in zip(names, ours, theirs):
        torch.testing.assert_close(x, y, **tol, msg=lambda m, name=name: f"{name} differs from {PEER}: {m}")


# ------------------------------------------------------------------------------------------------ rotations
@DTYPES
def test_quaternions_and_covariances(dtype):
    """Peer: gsplat 1.4.0 ``_quat_to_rotmat`` and ``_quat_scale_to_covar_preci`` (unnormalised quaternions)."""
    gen = torch.Generator().manual_seed(0)
    quats = torch.randn(500, 4, generator=gen, dtype=torch.float64).to(dtype).requires_grad_()
    scales = torch.exp(torch.randn(500, 3, generator=gen, dtype=torch.float64) - 2).to(dtype).requires_grad_()
    ours = [quat_to_rotmat(quats), quat_scale_to_covar(quats, scales)]
    theirs = [G._quat_to_rotmat(quats), G._quat_scale_to_covar_preci(quats, scales, compute_preci=False)[0]]
    names = ["rotmat", "covar"]
    assert_close_all(ours, theirs, names, **TOL[dtype])
    assert_close_all(grads(ours, [quats, scales]), grads(theirs, [quats, scales]), ["d/dquats", "d/dscales"],
                     **TOL[dtype])


# ------------------------------------------------------------------------------------------------ projection
NEAR, FAR, WIDTH, HEIGHT = 0.01, 12.0, 64, 48


def projection_scene(dtype: torch.dtype, needles: bool = True) -> Dict[str, torch.Tensor]:
    """3 cameras and Gaussians that reach every branch: visible, behind the camera, beyond ``FAR``, off-screen,
    off-axis enough for the Jacobian's frustum clamp, needle-thin (compensation << 1; only with ``needles``: without
    the eps2d low-pass their 2D covariance is singular and the gradients are too ill-conditioned to compare)."""
    gen = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    means = torch.cat([
        rand(200, 3) * torch.tensor([1.5, 1.2, 1.0]),          # in front of every camera
        torch.tensor([[0.2, 0.1, -5.6], [0.0, 0.3, -9.0]]),     # behind camera 0 (at z = -5 in its frame)
        torch.tensor([[0.1, 0.0, 8.0], [0.3, -0.2, 9.5]]),      # beyond FAR from camera 0
        torch.tensor([[14.0, 0.5, 0.0], [-16.0, -9.0, 0.5]]),   # off-screen, clamped Jacobian
        torch.tensor([[3.0, 0.4, 0.0], [0.5, -2.4, 0.2]]),      # just off-screen, large: clamped but visible
    ])
    n = means.shape[0]
    quats = rand(n, 4)
    scales = torch.exp(rand(n, 3) * 0.5 - 2.5)
    scales[-2:] = 1.5
    if needles:
        scales[:10, 1:] = 1e-4
    viewmats = torch.eye(4, dtype=torch.float64).repeat(3, 1, 1)
    viewmats[:, :3, :3] = G._quat_to_rotmat(torch.tensor([[1.0, 0, 0, 0], [0.95, 0.1, -0.2, 0.05],
                                                          [0.9, -0.2, 0.3, 0.1]], dtype=torch.float64))
    viewmats[:, :3, 3] = torch.tensor([[0.0, 0.0, 5.0], [0.3, -0.2, 6.0], [-0.5, 0.4, 4.5]])
    Ks = torch.tensor([[[60.0, 0, 32], [0, 62, 24], [0, 0, 1]], [[55.0, 0, 30], [0, 55, 26], [0, 0, 1]],
                       [[70.0, 0, 20], [0, 66, 30], [0, 0, 1]]], dtype=torch.float64)
    scene = dict(means=means, quats=quats, scales=scales, viewmats=viewmats, Ks=Ks)
    return {k: v.to(dtype).requires_grad_() for k, v in scene.items()}


def test_projection_scene_reaches_every_branch():
    s = {k: v.detach() for k, v in projection_scene(torch.float64).items()}
    covars = quat_scale_to_covar(s["quats"], s["scales"])
    radii, means2d, depths, _, comp = _projection_impl(s["means"], covars, s["viewmats"], s["Ks"], WIDTH, HEIGHT,
                                                       0.3, NEAR, FAR)
    assert (depths < 0).any() and (depths > FAR).any() and (radii > 0).sum() > 100
    off_screen = (means2d[..., 0] < 0) | (means2d[..., 0] > WIDTH) | (means2d[..., 1] < 0) | (means2d[..., 1] > HEIGHT)
    assert (off_screen & (depths > 0) & (depths < FAR) & (radii == 0)).any()  # culled off-screen
    assert (off_screen & (radii > 0)).any()  # centre off-screen, footprint on it
    Ks, t = s["Ks"], depths.clamp(min=1e-9)
    lim = (WIDTH - Ks[:, 0, 2, None]) / Ks[:, 0, 0, None] + 0.3 * 0.5 * WIDTH / Ks[:, 0, 0, None]
    x_over_z = (means2d[..., 0] - Ks[:, 0, 2, None]) / Ks[:, 0, 0, None]
    assert ((x_over_z > lim) & (t > NEAR)).any()  # the Jacobian's clamp is active
    assert comp.min() < 0.1 and comp.max() > 0.9


@DTYPES
@pytest.mark.parametrize("eps2d", [0.3, 0.0], ids=lambda e: f"eps2d={e}")
def test_projection_matches_gsplat_torch(dtype, eps2d):
    """Peer: gsplat 1.4.0 ``_fully_fused_projection(..., calc_compensations=True, camera_model="pinhole")`` with
    covariances from ``_quat_scale_to_covar_preci``; radii exactly, the rest and all gradients to TOL. eps2d=0
    (no low-pass filter) without the needle-thin Gaussians, whose 2D covariance is then singular."""
    s = projection_scene(dtype, needles=eps2d > 0)
    args = (s["viewmats"], s["Ks"], WIDTH, HEIGHT)
    ours = _projection_impl(s["means"], quat_scale_to_covar(s["quats"], s["scales"]), *args, eps2d, NEAR, FAR)
    covars = G._quat_scale_to_covar_preci(s["quats"], s["scales"], compute_preci=False)[0]
    theirs = G._fully_fused_projection(s["means"], covars, *args, eps2d=eps2d, near_plane=NEAR, far_plane=FAR,
                                       calc_compensations=True, camera_model="pinhole")
    assert ours[0].dtype == theirs[0].dtype == torch.int32
    assert torch.equal(ours[0], theirs[0]), f"radii differ from {PEER}"
    names = ["means2d", "depths", "conics", "compensations"]
    assert_close_all(ours[1:], theirs[1:], names, **TOL[dtype])
    inputs = list(s.values())
    assert_close_all(grads(ours[1:], inputs), grads(theirs[1:], inputs), [f"d/d{k}" for k in s], **TOL[dtype])


# ------------------------------------------------------------------------------------------------ SH
def sh_inputs(dtype: torch.dtype):
    gen = torch.Generator().manual_seed(0)
    dirs = torch.randn(3, 300, 3, generator=gen, dtype=torch.float64)
    dirs = dirs * torch.exp(torch.randn(3, 300, 1, generator=gen, dtype=torch.float64))  # not unit length
    coeffs = torch.randn(3, 300, (MAX_SH_DEGREE + 1) ** 2, 3, generator=gen, dtype=torch.float64)
    return dirs.to(dtype).requires_grad_(), coeffs.to(dtype).requires_grad_()


@DTYPES
@pytest.mark.parametrize("degree", range(MAX_SH_DEGREE + 1), ids=lambda d: f"degree{d}")
def test_sh_basis_matches_gsplat_torch(dtype, degree):
    """Peer: gsplat 1.4.0 ``_eval_sh_bases_fast((degree + 1) ** 2, dirs)`` on unit directions (gradients taken
    through the normalisation, i.e. along the sphere)."""
    raw, _ = sh_inputs(dtype)
    dirs = F.normalize(raw, dim=-1)
    ours, theirs = sh_basis(degree, dirs), G._eval_sh_bases_fast((degree + 1) ** 2, dirs)
    assert ours.shape == theirs.shape == (3, 300, (degree + 1) ** 2)
    assert_close_all([ours], [theirs], ["basis"], **TOL[dtype])
    assert_close_all(grads([ours], [raw]), grads([theirs], [raw]), ["d/ddirs"], **TOL[dtype])


@DTYPES
@pytest.mark.parametrize("degree", range(MAX_SH_DEGREE + 1), ids=lambda d: f"degree{d}")
def test_eval_sh_matches_gsplat_torch(dtype, degree):
    """Peer: gsplat 1.4.0 ``_spherical_harmonics(degree, dirs, coeffs)`` with unnormalised directions, batch
    shape [C, N] and all 25 coefficients given (those above the degree must not contribute)."""
    dirs, coeffs = sh_inputs(dtype)
    ours, theirs = eval_sh(degree, dirs, coeffs), G._spherical_harmonics(degree, dirs, coeffs)
    assert ours.shape == theirs.shape == (3, 300, 3)
    assert_close_all([ours], [theirs], ["colour"], **TOL[dtype])
    ours_grads, their_grads = grads([ours], [dirs, coeffs]), grads([theirs], [dirs, coeffs])
    assert_close_all(ours_grads, their_grads, ["d/ddirs", "d/dcoeffs"], **TOL[dtype])
    assert not ours_grads[1][..., (degree + 1) ** 2:, :].any()
