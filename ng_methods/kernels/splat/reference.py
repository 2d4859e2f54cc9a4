"""Pure-PyTorch differentiable 3D Gaussian rasteriser (``gsplat.rasterization`` semantics, subset).

Mirrors gsplat 1.4.0 ``rasterization(..., packed=False, rasterize_mode="classic", camera_model="pinhole")``:

* projection: gsplat's own torch reference ``_fully_fused_projection`` (EWA with the clamped-frustum Jacobian,
  ``+eps2d`` on the 2D covariance diagonal, radius ``ceil(3 sqrt(lambda_max))``, near/far and off-screen culling);
* colours: raw ``[N, D]`` / ``[C, N, D]`` or SH ``[N, K, 3]`` / ``[C, N, K, 3]`` evaluated with gsplat's
  ``_spherical_harmonics`` on the direction camera-centre -> mean, then ``clamp_min(x + 0.5, 0)``;
* compositing (our own; gsplat's torch compositing needs CUDA): 16x16 tiles, a Gaussian touches a tile iff its
  ``radius`` box overlaps it (same tile ranges as ``isect_tiles``), per-tile depth sort, pixel centres
  ``(x + 0.5, y + 0.5)``, ``alpha = min(0.999, o exp(-sigma))``, skip ``sigma < 0`` or ``alpha < 1/255``, stop
  (exclusively) at the first Gaussian with ``T (1 - alpha) <= 1e-4``, ``colour += T_final * background``.
  A tile's per-pixel intermediates (``[256, M]`` each) are not kept for backward when the tile is large: they
  are recomputed then (activation checkpointing), so memory stays bounded at full resolution (800x800 with 1e5
  Gaussians needs tens of GB otherwise) at the cost of a second forward pass over those tiles.

Everything is autograd-differentiable (means, quats, scales / covars, opacities, colours, also viewmats / Ks).
Only gsplat's CPU-capable torch helpers are imported (no CUDA extension is touched).
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import Tensor

__all__ = ["rasterize_reference", "project_gaussians", "composite_tiles", "quat_scale_to_covar", "quat_to_rotmat"]

ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.999
T_MIN = 1e-4
RECOMPUTE_MIN_PAIRS = 1 << 16
"""Tiles with at least this many pixel-Gaussian pairs recompute their intermediates in backward."""

try:  # gsplat's torch reference pieces (work on CPU, verified for gsplat 1.4.0)
    from gsplat.cuda._torch_impl import _fully_fused_projection as _gs_projection
    from gsplat.cuda._torch_impl import _spherical_harmonics as _gs_sh
except Exception:  # pragma: no cover - gsplat missing or its layout changed
    _gs_projection = None
    _gs_sh = None


# ----------------------------------------------------------------------------------------------- building blocks
def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Rotation matrices ``[..., 3, 3]`` of wxyz quaternions ``[..., 4]`` (normalised here)."""
    q = F.normalize(quats, p=2, dim=-1)
    w, x, y, z = q.unbind(-1)
    R = torch.stack(
        [
            1 - 2 * (y**2 + z**2), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x**2 + z**2), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x**2 + y**2),
        ],
        dim=-1,
    )
    return R.reshape(q.shape[:-1] + (3, 3))


def quat_scale_to_covar(quats: Tensor, scales: Tensor) -> Tensor:
    """``R diag(s)^2 R^T`` from wxyz quaternions (normalised here) and linear scales. [N,4],[N,3] -> [N,3,3]."""
    M = quat_to_rotmat(quats) * scales[..., None, :]
    return M @ M.transpose(-1, -2)


def _projection_impl(means, covars, viewmats, Ks, width, height, eps2d, near_plane, far_plane):
    """Same maths as ``gsplat.cuda._torch_impl._fully_fused_projection`` (pinhole, no compensation)."""
    R = viewmats[:, :3, :3]
    t = viewmats[:, :3, 3]
    means_c = torch.einsum("cij,nj->cni", R, means) + t[:, None, :]
    covars_c = torch.einsum("cij,njk,clk->cnil", R, covars, R)
    C, N, _ = means_c.shape
    tx, ty, tz = means_c.unbind(-1)
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lim_x_pos = (width - cx) / fx + 0.3 * tan_fovx
    lim_x_neg = cx / fx + 0.3 * tan_fovx
    lim_y_pos = (height - cy) / fy + 0.3 * tan_fovy
    lim_y_neg = cy / fy + 0.3 * tan_fovy
    txc = tz * torch.clamp(tx / tz, min=-lim_x_neg, max=lim_x_pos)
    tyc = tz * torch.clamp(ty / tz, min=-lim_y_neg, max=lim_y_pos)
    O = torch.zeros_like(tz)
    J = torch.stack([fx / tz, O, -fx * txc / tz**2, O, fy / tz, -fy * tyc / tz**2], -1).reshape(C, N, 2, 3)
    cov2d = J @ covars_c @ J.transpose(-1, -2)
    means2d = torch.einsum("cij,cnj->cni", Ks[:, :2, :3], means_c) / tz[..., None]
    det_raw = cov2d[..., 0, 0] * cov2d[..., 1, 1] - cov2d[..., 0, 1] * cov2d[..., 1, 0]
    cov2d = cov2d + torch.eye(2, device=means.device, dtype=means.dtype) * eps2d
    det = (cov2d[..., 0, 0] * cov2d[..., 1, 1] - cov2d[..., 0, 1] * cov2d[..., 1, 0]).clamp(min=1e-10)
    conics = torch.stack(
        [cov2d[..., 1, 1] / det, -(cov2d[..., 0, 1] + cov2d[..., 1, 0]) / 2.0 / det, cov2d[..., 0, 0] / det], -1
    )
    b = (cov2d[..., 0, 0] + cov2d[..., 1, 1]) / 2
    radius = torch.ceil(3.0 * torch.sqrt(b + torch.sqrt(torch.clamp(b**2 - det, min=0.01)))).detach()
    valid = (det > 0) & (tz > near_plane) & (tz < far_plane)
    radius = torch.where(valid, radius, torch.zeros_like(radius))
    inside = (
        (means2d[..., 0] + radius > 0)
        & (means2d[..., 0] - radius < width)
        & (means2d[..., 1] + radius > 0)
        & (means2d[..., 1] - radius < height)
    )
    radius = torch.where(inside, radius, torch.zeros_like(radius))
    compensations = torch.sqrt(torch.clamp(det_raw / det, min=0.0))
    return radius.int(), means2d, tz, conics, compensations


def project_gaussians(
    means: Tensor, covars: Tensor, viewmats: Tensor, Ks: Tensor, width: int, height: int,
    eps2d: float = 0.3, near_plane: float = 0.01, far_plane: float = 1e10,
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Project 3D Gaussians: returns ``radii [C,N] int32, means2d [C,N,2], depths [C,N], conics [C,N,3],
    compensations [C,N]`` (``sqrt(det(cov2d) / det(cov2d + eps2d I))``, the antialiased opacity factor)."""
    if _gs_projection is not None:
        radii, means2d, depths, conics, compensations = _gs_projection(
            means, covars, viewmats, Ks, width, height, eps2d=eps2d, near_plane=near_plane, far_plane=far_plane,
            calc_compensations=True, camera_model="pinhole",
        )
        return radii, means2d, depths, conics, compensations
    return _projection_impl(means, covars, viewmats, Ks, width, height, eps2d, near_plane, far_plane)


def _sh_colors(sh_degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    if _gs_sh is not None:
        return _gs_sh(sh_degree, dirs, coeffs)
    raise RuntimeError("SH evaluation needs gsplat.cuda._torch_impl._spherical_harmonics")  # pragma: no cover


# ----------------------------------------------------------------------------------------------- compositing
def _composite_block(
    pix_xy: Tensor, m2d: Tensor, con: Tensor, opa: Tensor, col: Tensor, absgrad_sink: Optional[Callable] = None
) -> Tuple[Tensor, Tensor]:
    """Front-to-back compositing of depth-sorted Gaussians ``[M]`` over pixels ``[P,2]`` -> ``([P,D], T_final [P])``.

    ``absgrad_sink(g)`` receives ``sum_pixels |dL/dmeans2d|`` ``[M, 2]`` during backward (gsplat's ``absgrad``).
    """
    m2d_pp = m2d[None, :, :].expand(pix_xy.shape[0], -1, -1)  # [P, M, 2]: one copy per pixel for absgrad
    if absgrad_sink is not None and m2d_pp.requires_grad:
        m2d_pp.register_hook(lambda g: absgrad_sink(g.abs().sum(0)))
    d = m2d_pp - pix_xy[:, None, :]  # [P, M, 2]  (mean - pixel, like gsplat)
    dx, dy = d[..., 0], d[..., 1]
    sigma = 0.5 * (con[:, 0] * dx * dx + con[:, 2] * dy * dy) + con[:, 1] * dx * dy
    alpha = torch.clamp(opa * torch.exp(-sigma), max=ALPHA_MAX)
    with torch.no_grad():
        use = (sigma >= 0) & (alpha >= ALPHA_MIN)
        a0 = torch.where(use, alpha, torch.zeros_like(alpha))
        # gsplat stops (exclusively) at the first Gaussian whose next_T <= 1e-4; next_T is the inclusive cumprod,
        # which is non-increasing, so "keep" is a prefix.
        keep = use & (torch.cumprod(1.0 - a0, dim=1) > T_MIN)
    alpha = torch.where(keep, alpha, torch.zeros_like(alpha))
    one_m = 1.0 - alpha
    T_incl = torch.cumprod(one_m, dim=1)
    T = torch.cat([torch.ones_like(T_incl[:, :1]), T_incl[:, :-1]], dim=1)
    w = alpha * T  # [P, M]
    if bool(torch.isfinite(col).all()):
        return w @ col, T_incl[:, -1]
    # gsplat skips pairs that fail the alpha tests; a zero weight would still turn a NaN/inf colour into NaN there
    # (and NaN gradients through the double where otherwise).
    kept_col = torch.where(keep[..., None], col[None], torch.zeros_like(col[None]))  # [P, M, D]
    return (w[..., None] * kept_col).sum(1), T_incl[:, -1]


def _absgrad_sink(buffer: Tensor, camera: int, gaussian_ids: Tensor) -> Callable[[Tensor], None]:
    def sink(grad_abs: Tensor) -> None:
        buffer[camera].index_add_(0, gaussian_ids, grad_abs.to(buffer.dtype))

    return sink


def composite_tiles(
    means2d: Tensor, conics: Tensor, opacities: Tensor, colors: Tensor, depths: Tensor, radii: Tensor,
    width: int, height: int, tile_size: int = 16, backgrounds: Optional[Tensor] = None,
    absgrad_buffer: Optional[Tensor] = None, recompute_min_pairs: Optional[int] = None,
) -> Tuple[Tensor, Tensor]:
    """Tile-based compositing of projected Gaussians (``[C,N,...]`` inputs, ``radii > 0`` = visible).

    Returns ``render_colors [C,H,W,D]`` and ``render_alphas [C,H,W,1]`` (``alpha = 1 - T_final``). When
    ``absgrad_buffer [C,N,2]`` is given, backward adds the per-pixel absolute means2d gradients into it.
    Tiles with ``pixels * Gaussians >= recompute_min_pairs`` (default :data:`RECOMPUTE_MIN_PAIRS`) are
    checkpointed: same values and gradients, less memory, a second forward pass in backward.
    """
    if recompute_min_pairs is None:
        recompute_min_pairs = RECOMPUTE_MIN_PAIRS
    C, N = radii.shape
    D = colors.shape[-1]
    device, dtype = means2d.device, means2d.dtype
    tw = (width + tile_size - 1) // tile_size
    th = (height + tile_size - 1) // tile_size
    out_c, out_a = [], []
    for c in range(C):
        img = means2d.new_zeros(th * tile_size, tw * tile_size, D)
        Tf = means2d.new_ones(th * tile_size, tw * tile_size)
        vis = torch.nonzero(radii[c] > 0).squeeze(1)
        if vis.numel() > 0:
            # depth sort once per camera; per-tile subsets keep the order
            order = torch.argsort(depths[c, vis].detach(), stable=True)
            vis = vis[order]
            m2d, con, opa, col = means2d[c, vis], conics[c, vis], opacities[c, vis], colors[c, vis]
            with torch.no_grad():
                r = radii[c, vis].to(dtype)
                tm = m2d.detach() / tile_size
                tr = (r / tile_size)[:, None]
                tmin = torch.floor(tm - tr)
                tmax = torch.ceil(tm + tr)
                tmin_x = tmin[:, 0].clamp(0, tw).long()
                tmax_x = tmax[:, 0].clamp(0, tw).long()
                tmin_y = tmin[:, 1].clamp(0, th).long()
                tmax_y = tmax[:, 1].clamp(0, th).long()
            tiles_c, tiles_T = [], []
            for ty in range(th):
                row_ok = (tmin_y <= ty) & (ty < tmax_y)
                for tx in range(tw):
                    ids = torch.nonzero(row_ok & (tmin_x <= tx) & (tx < tmax_x)).squeeze(1)
                    if ids.numel() == 0:
                        tiles_c.append(None)
                        tiles_T.append(None)
                        continue
                    ys = torch.arange(ty * tile_size, (ty + 1) * tile_size, device=device, dtype=dtype) + 0.5
                    xs = torch.arange(tx * tile_size, (tx + 1) * tile_size, device=device, dtype=dtype) + 0.5
                    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
                    pix = torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)
                    sink = None
                    if absgrad_buffer is not None:
                        sink = _absgrad_sink(absgrad_buffer, c, vis[ids])
                    block_inputs = (pix, m2d[ids], con[ids], opa[ids], col[ids], sink)
                    if torch.is_grad_enabled() and pix.shape[0] * ids.numel() >= recompute_min_pairs:
                        rc, rT = torch.utils.checkpoint.checkpoint(_composite_block, *block_inputs, use_reentrant=False)
                    else:
                        rc, rT = _composite_block(*block_inputs)
                    tiles_c.append(rc.reshape(tile_size, tile_size, D))
                    tiles_T.append(rT.reshape(tile_size, tile_size))
            zc = means2d.new_zeros(tile_size, tile_size, D)
            zT = means2d.new_ones(tile_size, tile_size)
            rows_c = [torch.cat([t if t is not None else zc for t in tiles_c[y * tw:(y + 1) * tw]], 1) for y in range(th)]
            rows_T = [torch.cat([t if t is not None else zT for t in tiles_T[y * tw:(y + 1) * tw]], 1) for y in range(th)]
            img = torch.cat(rows_c, 0)
            Tf = torch.cat(rows_T, 0)
        img = img[:height, :width]
        Tf = Tf[:height, :width]
        if backgrounds is not None:
            img = img + Tf[..., None] * backgrounds[c].to(dtype)
        out_c.append(img)
        out_a.append((1.0 - Tf)[..., None])
    return torch.stack(out_c, 0), torch.stack(out_a, 0)


# ----------------------------------------------------------------------------------------------- public entry
def rasterize_reference(
    means: Tensor,
    quats: Optional[Tensor],
    scales: Optional[Tensor],
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    sh_degree: Optional[int] = None,
    backgrounds: Optional[Tensor] = None,
    render_mode: str = "RGB",
    covars: Optional[Tensor] = None,
    tile_size: int = 16,
    absgrad: bool = False,
    rasterize_mode: str = "classic",
) -> Tuple[Tensor, Tensor, Dict]:
    """Pure-PyTorch ``gsplat.rasterization`` (packed=False, pinhole). See module docstring.

    ``rasterize_mode="antialiased"`` multiplies opacities by the projection's compensation factor (Mip-Splatting's
    2D filter, as gsplat does). ``absgrad=True`` makes backward fill ``meta["means2d"].absgrad`` ``[C,N,2]`` with
    the per-pixel absolute screen-space gradients summed over pixels, which gsplat's ``DefaultStrategy`` reads.

    Shapes: means [N,3], quats [N,4] (wxyz), scales [N,3] (linear), opacities [N] or [C,N], colors [(C,)N,D] raw
    or [(C,)N,K,3] SH with ``sh_degree``, viewmats [C,4,4] (world->camera), Ks [C,3,3], backgrounds [C,D].
    Returns render_colors [C,H,W,X] (X = D, 1 for "D"/"ED", D+1 for "RGB+D"/"RGB+ED"), render_alphas [C,H,W,1],
    meta dict (radii [C,N] int32, means2d [C,N,2], depths [C,N], conics [C,N,3], opacities [C,N], width, height,
    tile_size, n_cameras).
    """
    assert render_mode in ("RGB", "D", "ED", "RGB+D", "RGB+ED"), render_mode
    N = means.shape[0]
    C = viewmats.shape[0]
    if covars is None:
        assert quats is not None and scales is not None, "need quats+scales or covars"
        covars = quat_scale_to_covar(quats, scales)
    assert rasterize_mode in ("classic", "antialiased"), rasterize_mode
    radii, means2d, depths, conics, compensations = project_gaussians(
        means, covars, viewmats, Ks, width, height, eps2d=eps2d, near_plane=near_plane, far_plane=far_plane
    )
    opac = opacities if opacities.dim() == 2 else opacities[None].expand(C, N)
    if rasterize_mode == "antialiased":
        opac = opac * compensations

    if sh_degree is None:
        if colors.dim() == 2:
            cols = colors[None].expand(C, -1, -1)
        else:
            cols = colors
    else:
        assert (sh_degree + 1) ** 2 <= colors.shape[-2], colors.shape
        camtoworlds = torch.inverse(viewmats)
        dirs = means[None, :, :] - camtoworlds[:, None, :3, 3]  # [C, N, 3]
        shs = colors[None].expand(C, -1, -1, -1) if colors.dim() == 3 else colors
        cols = _sh_colors(sh_degree, dirs, shs)
        cols = torch.clamp_min(cols + 0.5, 0.0)

    bgs = backgrounds
    if render_mode in ("RGB+D", "RGB+ED"):
        cols = torch.cat([cols, depths[..., None]], -1)
        if bgs is not None:
            bgs = torch.cat([bgs, bgs.new_zeros(C, 1)], -1)
    elif render_mode in ("D", "ED"):
        cols = depths[..., None]
        if bgs is not None:
            bgs = bgs.new_zeros(C, 1)

    absgrad_buffer = means2d.new_zeros(means2d.shape).detach() if absgrad else None
    if absgrad_buffer is not None:
        means2d.absgrad = absgrad_buffer  # filled in place by the compositing hooks during backward
    render_colors, render_alphas = composite_tiles(
        means2d, conics, opac, cols, depths, radii, width, height, tile_size=tile_size, backgrounds=bgs,
        absgrad_buffer=absgrad_buffer,
    )
    if render_mode in ("ED", "RGB+ED"):
        render_colors = torch.cat(
            [render_colors[..., :-1], render_colors[..., -1:] / render_alphas.clamp(min=1e-10)], -1
        )
    meta = {
        "radii": radii, "means2d": means2d, "depths": depths, "conics": conics, "opacities": opac,
        "width": width, "height": height, "tile_size": tile_size, "n_cameras": C,
        "camera_ids": None, "gaussian_ids": None,  # gsplat's unpacked layout
    }
    return render_colors, render_alphas, meta
