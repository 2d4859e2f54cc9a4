"""The four NGPC applications (NeRF, neural SDF, gigapixel image, neural volume) as minimal training loops.

Each application owns a grid field (``GridEncoding`` + ``TinyMLP``, or the fused ``encode_and_mlp``) and defines
``loss(prof)``, one training iteration's forward pass. Every grid-encoding / MLP call goes through
``prof.run(part, fn, *inputs)`` so the profiler in ``profile_ngpc.py`` can time its forward and, separately, its
backward; everything else (data, ray marching, compositing, losses, Adam) is "other". Only torch, numpy and PIL are
needed (no nerfstudio; nerfacc only if installed and asked for).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import sys
from pathlib import Path
from typing import Callable, Dict

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

if str(Path(__file__).resolve().parent) not in sys.path:  # imported from tests, or run from elsewhere
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmark_kernels import REPO_ROOT, backend_status, fused_kernel_backend, load_fused  # noqa: E402
from ng_methods.encodings import GridEncoding  # noqa: E402
from ng_methods.kernels.grid_encoding import (  # noqa: E402
    GridSpec,
    hashgrid_spec,
    lowres_densegrid_spec,
    multires_densegrid_spec,
    resolve_backend,
)
from ng_methods.kernels.ray_marching import march_occupancy_grid, ray_aabb_intersect  # noqa: E402
from ng_methods.kernels import volume_rendering  # noqa: E402
from ng_methods.networks import TinyMLP  # noqa: E402

ENCODINGS = ("hashgrid", "multires-dense", "lowres-dense")
APPS = ("nerf", "sdf", "image", "volume")
PRESETS: Dict[str, Callable[[], GridSpec]] = {
    "hashgrid": hashgrid_spec, "multires-dense": multires_densegrid_spec, "lowres-dense": lowres_densegrid_spec,
}
FOX_DIR = REPO_ROOT.parent / "shared" / "data" / "ingp" / "fox"


class Unavailable(RuntimeError):
    """The requested backend cannot run here (no CUDA, no Triton, fused kernels not importable)."""


def grid_spec(encoding: str, n_dims: int, tiny: bool) -> GridSpec:
    """The encoding's preset in ``n_dims`` dimensions; ``tiny`` shrinks tables and resolutions for CPU smoke runs."""
    spec = dataclasses.replace(PRESETS[encoding](), n_dims=n_dims)
    if tiny:
        small = {"hashgrid": dict(n_levels=4, log2_hashmap_size=10, per_level_scale=2.0),
                 "multires-dense": dict(n_levels=3, base_resolution=4, per_level_scale=2.0),
                 "lowres-dense": dict(base_resolution=16)}[encoding]
        spec = dataclasses.replace(spec, **small)
    return spec


def field_mode(backend: str, device: str, spec: GridSpec) -> str:
    """What the grid fields run: an encoding backend (torch/triton), or "fused"; raises when it cannot run here."""
    if backend == "fused":
        if load_fused()[0] is None:
            raise Unavailable(f"fused encoding+MLP unavailable: {load_fused()[1]}")
        return "fused"
    concrete = resolve_backend(backend, device)
    why = backend_status(concrete, device, spec, torch.float32)
    if why is not None:
        raise Unavailable(why)
    return concrete


class GridField(nn.Module):
    """Grid encoding followed by a ``TinyMLP``, timed as two parts ("encoding", "mlp") or one ("fused")."""

    def __init__(self, spec: GridSpec, mode: str, device: str, out_dim: int = 16, hidden_layers: int = 1):
        super().__init__()
        self.spec, self.mode = spec, mode
        self.encoding = GridEncoding(spec, backend="torch" if mode == "fused" else mode)
        self.mlp = TinyMLP(spec.n_output_dims, out_dim, hidden_dim=64, hidden_layers=hidden_layers)
        self.kernel_backend = fused_kernel_backend(device)

    def _fused(self, x: Tensor) -> Tensor:
        encode_and_mlp = load_fused()[0]
        weights = [layer.weight for layer in self.mlp.layers]
        return encode_and_mlp(x, self.encoding.table, self.spec, weights, backend=self.kernel_backend)

    def forward(self, prof, x: Tensor) -> Tensor:
        if self.mode == "fused":
            return prof.run("fused", self._fused, x)
        return prof.run("mlp", self.mlp, prof.run("encoding", self.encoding, x))


def sh_encoding(dirs: Tensor) -> Tensor:
    """Real spherical harmonics of degree < 4 (16 values) of unit directions (tiny-cuda-nn's SphericalHarmonics)."""
    x, y, z = dirs.unbind(-1)
    xx, yy, zz = x * x, y * y, z * z
    return torch.stack([
        torch.full_like(x, 0.28209479177387814), -0.48860251190291987 * y, 0.48860251190291987 * z,
        -0.48860251190291987 * x, 1.0925484305920792 * x * y, -1.0925484305920792 * y * z,
        0.94617469575755997 * zz - 0.31539156525251999, -1.0925484305920792 * x * z,
        0.54627421529603959 * (xx - yy), 0.59004358992664352 * y * (-3.0 * xx + yy),
        2.8906114426405538 * x * y * z, 0.45704579946446572 * y * (1.0 - 5.0 * zz),
        0.3731763325901154 * z * (5.0 * zz - 3.0), 0.45704579946446572 * x * (1.0 - 5.0 * zz),
        1.4453057213202769 * z * (xx - yy), 0.59004358992664352 * x * (-xx + 3.0 * yy),
    ], dim=-1)


class App:
    """One application with one encoding: ``loss(prof)`` runs a training iteration's forward pass."""

    n_dims = 3

    def __init__(self, encoding: str, ctx) -> None:
        self.ctx, self.device = ctx, ctx.device
        self.spec = grid_spec(encoding, self.n_dims, ctx.tiny)
        self.mode = field_mode(ctx.backend, ctx.device, self.spec)
        self.generator = torch.Generator(device=ctx.device).manual_seed(ctx.seed)
        self.info: Dict[str, object] = {}
        self.build()
        self.to(ctx.device)
        params = [p for module in self.modules() for p in module.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=1e-2, betas=(0.9, 0.99), eps=1e-15,
                                          fused=ctx.device == "cuda")

    def modules(self):
        return [m for m in vars(self).values() if isinstance(m, nn.Module)]

    def to(self, device: str) -> None:
        for module in self.modules():
            module.to(device)

    def rand(self, *shape: int) -> Tensor:
        return torch.rand(*shape, device=self.device, generator=self.generator)

    def build(self) -> None:
        raise NotImplementedError

    def loss(self, prof) -> Tensor:
        raise NotImplementedError


def render_backends(choice: str, device: str) -> Dict[str, str]:
    """Ray-marching and compositing backends ("other" work): the fast GPU kernels available unless ``torch``."""
    if choice == "torch" or device != "cuda":
        return {"marching": "torch", "compositing": "torch"}
    nerfacc = importlib.util.find_spec("nerfacc") is not None
    compositing = "triton" if volume_rendering.triton_available() else "nerfacc" if nerfacc else "torch"
    return {"marching": "nerfacc" if nerfacc else "torch", "compositing": compositing}


def _composite(t0, t1, sigmas, colors, ray_indices, n_rays, backend, background):
    rgb, _, opacity, _ = volume_rendering.composite(t0, t1, sigmas, colors, ray_indices, n_rays, backend=backend)
    return rgb + (1.0 - opacity) * background, opacity


class NerfApp(App):
    """Instant-NGP-like NeRF on a Blender scene: occupancy-grid marching, density + colour MLPs, compositing.

    The occupancy grid is the visual hull of the loaded views (a stand-in for a trained grid); the view-direction
    spherical-harmonics encoding is timed as "encoding" too (tcnn's other input encoding), the colour MLP as "mlp".
    """

    def build(self) -> None:
        ctx, root = self.ctx, Path(self.ctx.blender_data)
        meta = json.loads((root / "transforms_train.json").read_text())
        frames = meta["frames"][: ctx.nerf_images]
        origins, directions, colors, alphas, poses = [], [], [], [], []
        for frame in frames:
            image = np.asarray(Image.open(root / (frame["file_path"] + ".png")).convert("RGBA"), np.float32) / 255
            height, width = image.shape[:2]
            focal = 0.5 * width / math.tan(0.5 * meta["camera_angle_x"])
            c2w = torch.tensor(frame["transform_matrix"], dtype=torch.float32)[:3]
            j, i = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
            cam = torch.stack([(i - width / 2) / focal, -(j - height / 2) / focal, -torch.ones_like(i)], -1)
            dirs = cam.reshape(-1, 3) @ c2w[:, :3].T
            directions.append(dirs / dirs.norm(dim=-1, keepdim=True))
            origins.append(c2w[:, 3].expand(dirs.shape[0], 3))
            rgba = torch.from_numpy(image).reshape(-1, 4)
            colors.append(rgba[:, :3] * rgba[:, 3:] + (1 - rgba[:, 3:]))  # white background
            alphas.append(torch.from_numpy(image[..., 3]))
            poses.append((c2w, focal))
        dev = self.device
        self.rays_o, self.rays_d = torch.cat(origins).to(dev), torch.cat(directions).to(dev)
        self.colors = torch.cat(colors).to(dev)
        self.aabb = torch.tensor([-1.5, -1.5, -1.5, 1.5, 1.5, 1.5], device=dev)
        self.binaries = self._visual_hull(alphas, poses, 32 if ctx.tiny else 128)
        self.step_size = float((self.aabb[3:] - self.aabb[:3]).norm()) / 1000
        self.backends = render_backends(ctx.render_backend, dev)
        self.density = GridField(self.spec, self.mode, dev, out_dim=16, hidden_layers=1)
        self.color_mlp = TinyMLP(15 + 16, 3, hidden_dim=64, hidden_layers=2)
        self.info.update(images=len(frames), rays_available=self.rays_o.shape[0], render_backends=self.backends,
                         occupancy_fraction=float(self.binaries.float().mean()), step_size=self.step_size)

    def _visual_hull(self, alphas, poses, resolution: int) -> Tensor:
        """Occupancy grid = cells whose centre projects onto the object's alpha in every view (dilated by one cell)."""
        lin = (torch.arange(resolution) + 0.5) / resolution * 3.0 - 1.5
        points = torch.stack(torch.meshgrid(lin, lin, lin, indexing="ij"), -1).reshape(-1, 3)
        inside = torch.ones(points.shape[0], dtype=torch.bool)
        for alpha, (c2w, focal) in zip(alphas, poses):
            cam = (points - c2w[:, 3]) @ c2w[:, :3]  # world -> camera: R^T (p - t)
            depth = (-cam[:, 2]).clamp(min=1e-6)
            col = (focal * cam[:, 0] / depth + alpha.shape[1] / 2).floor().long()
            row = (-focal * cam[:, 1] / depth + alpha.shape[0] / 2).floor().long()
            seen = (col >= 0) & (col < alpha.shape[1]) & (row >= 0) & (row < alpha.shape[0])
            hit = torch.zeros_like(seen)
            hit[seen] = alpha[row[seen], col[seen]] > 0.05
            inside &= hit | ~seen
        grid = inside.reshape(1, 1, resolution, resolution, resolution).float()
        grid = torch.nn.functional.max_pool3d(grid, 3, stride=1, padding=1)
        return (grid[0] > 0).to(self.device)

    def loss(self, prof) -> Tensor:
        n_rays = self.ctx.rays
        with prof.region("data"):
            pick = torch.randint(0, self.rays_o.shape[0], (n_rays,), device=self.device, generator=self.generator)
            rays_o, rays_d, target = self.rays_o[pick], self.rays_d[pick], self.colors[pick]
        with prof.region("marching"):
            near, far = torch.zeros(n_rays, device=self.device), torch.full((n_rays,), 1e10, device=self.device)
            ray_indices, t0, t1 = march_occupancy_grid(rays_o, rays_d, self.binaries, self.aabb[None], near, far,
                                                       self.step_size, backend=self.backends["marching"])
            positions = (rays_o[ray_indices] + rays_d[ray_indices] * ((t0 + t1) / 2)[:, None] - self.aabb[:3]) / 3.0
            positions = positions.clamp(0.0, 1.0)
        self.info["samples_last_iteration"] = int(ray_indices.shape[0])
        h = self.density(prof, positions)
        sigmas = torch.exp(h[:, 0].clamp(max=15.0))  # truncated exp
        sh = prof.run("encoding", sh_encoding, rays_d[ray_indices])
        rgb = torch.sigmoid(prof.run("mlp", self.color_mlp, torch.cat([h[:, 1:], sh], dim=-1)))
        with prof.region("compositing"):
            pred, _ = _composite(t0, t1, sigmas, rgb, ray_indices, n_rays, self.backends["compositing"], 1.0)
        return torch.nn.functional.smooth_l1_loss(pred, target)


def shape_sdf(p: Tensor) -> Tensor:
    """Signed distance to a union of a torus, a box and a sphere in [-1, 1]^3 (exact outside, bound inside)."""
    torus_xy = torch.stack([p[:, [0, 2]].norm(dim=-1) - 0.5, p[:, 1] + 0.2], -1)
    torus = torus_xy.norm(dim=-1) - 0.15
    q = (p - torch.tensor([0.25, 0.25, -0.1], device=p.device)).abs() - torch.tensor([0.2, 0.3, 0.2], device=p.device)
    box = q.clamp(min=0).norm(dim=-1) + q.amax(dim=-1).clamp(max=0)
    sphere = (p - torch.tensor([-0.35, 0.35, 0.3], device=p.device)).norm(dim=-1) - 0.25
    return torch.minimum(torch.minimum(torus, box), sphere)


class SdfApp(App):
    """Fit an SDF (instant-ngp's SDF mode): surface samples perturbed at two scales + uniform, relative L1 loss."""

    def build(self) -> None:
        n_pool = 1 << (12 if self.ctx.tiny else 20)
        if self.ctx.sdf_mesh:
            self.pool, self.pool_sdf = self._mesh_dataset(Path(self.ctx.sdf_mesh), n_pool)
        else:  # surface pool: uniform points projected onto the zero level set (Newton steps along the gradient)
            points = (self.rand(n_pool, 3) * 2 - 1) * 0.9
            for _ in range(6):
                with torch.enable_grad():
                    x = points.detach().requires_grad_()
                    sdf = shape_sdf(x)
                    (grad,) = torch.autograd.grad(sdf.sum(), x)
                points = (x - sdf[:, None] * grad / grad.norm(dim=-1, keepdim=True).clamp(min=1e-8)).detach()
            self.pool, self.pool_sdf = points, None
        self.field = GridField(self.spec, self.mode, self.device, out_dim=16, hidden_layers=2)
        self.info.update(source=str(self.ctx.sdf_mesh or "analytic torus+box+sphere"), pool=n_pool)

    def _mesh_dataset(self, path: Path, n_points: int):
        """OBJ file -> points near the surface with signed distances (nearest surface sample, sign from its normal)."""
        verts, faces = [], []
        for line in path.read_text().splitlines():
            parts = line.split()
            if parts and parts[0] == "v":
                verts.append([float(v) for v in parts[1:4]])
            elif parts and parts[0] == "f":
                idx = [int(v.split("/")[0]) - 1 for v in parts[1:]]
                faces += [[idx[0], idx[k], idx[k + 1]] for k in range(1, len(idx) - 1)]
        v = torch.tensor(verts, device=self.device)
        v = (v - (v.amax(0) + v.amin(0)) / 2) / ((v.amax(0) - v.amin(0)).max() / 2) * 0.9  # fit [-0.9, 0.9]^3
        tri = v[torch.tensor(faces, device=self.device)]
        normals = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        area = normals.norm(dim=-1)
        face = torch.multinomial(area, 1 << 15, replacement=True, generator=self.generator)
        uv = self.rand(face.shape[0], 2)
        uv = torch.where(uv.sum(-1, keepdim=True) > 1, 1 - uv, uv)
        surface = tri[face, 0] + uv[:, :1] * (tri[face, 1] - tri[face, 0]) + uv[:, 1:] * (tri[face, 2] - tri[face, 0])
        surface_normals = normals[face] / area[face, None].clamp(min=1e-12)
        pick = torch.randint(0, surface.shape[0], (n_points,), device=self.device, generator=self.generator)
        points = surface[pick] + torch.randn(n_points, 3, device=self.device, generator=self.generator) * 0.05
        points[: n_points // 4] = self.rand(n_points // 4, 3) * 2 - 1
        sdf = torch.empty(n_points, device=self.device)
        for start in range(0, n_points, 4096):
            chunk = points[start:start + 4096]
            dist, nearest = torch.cdist(chunk, surface).min(dim=-1)
            sign = torch.sign(((chunk - surface[nearest]) * surface_normals[nearest]).sum(-1))
            sdf[start:start + 4096] = dist * torch.where(sign == 0, torch.ones_like(sign), sign)
        return points, sdf

    def loss(self, prof) -> Tensor:
        n = self.ctx.points
        with prof.region("data"):
            pick = torch.randint(0, self.pool.shape[0], (n,), device=self.device, generator=self.generator)
            if self.pool_sdf is not None:
                points, target = self.pool[pick], self.pool_sdf[pick]
            else:
                scale = torch.where(torch.arange(n, device=self.device) % 2 == 0, 0.01, 0.1)[:, None]
                noise = torch.randn(n, 3, device=self.device, generator=self.generator)
                points = self.pool[pick] + noise * scale
                points[: n // 8] = self.rand(n // 8, 3) * 2 - 1
                points = points.clamp(-1, 1)
                target = shape_sdf(points)
        pred = self.field(prof, (points + 1) / 2)[:, 0]
        return ((pred - target).abs() / (target.abs() + 1e-2)).mean()


class ImageApp(App):
    """Gigapixel-image approximation (2D grid): random continuous pixel coordinates, bilinear targets, L2 loss."""

    n_dims = 2

    def build(self) -> None:
        path = Path(self.ctx.image) if self.ctx.image else default_image()
        image = np.asarray(Image.open(path).convert("RGB"), np.float32) / 255
        self.image = torch.from_numpy(image).permute(2, 0, 1)[None].to(self.device)  # [1, 3, H, W]
        self.field = GridField(self.spec, self.mode, self.device, out_dim=16, hidden_layers=2)
        self.info.update(image=str(path), resolution=list(image.shape[:2]))

    def loss(self, prof) -> Tensor:
        with prof.region("data"):
            coords = self.rand(self.ctx.points, 2)
            grid = (coords * 2 - 1)[None, None]  # grid_sample wants (x, y) in [-1, 1]
            target = torch.nn.functional.grid_sample(self.image, grid, align_corners=False)[0, :, 0].T
        pred = self.field(prof, coords)[:, :3]
        return ((pred - target) ** 2).mean()


def default_image() -> Path:
    """The largest JPG of the shared fox capture when present, else a test image."""
    candidates = sorted(FOX_DIR.rglob("*.jpg"), key=lambda p: p.stat().st_size) if FOX_DIR.is_dir() else []
    return candidates[-1] if candidates else REPO_ROOT / "tests" / "data" / "lego-100" / "train" / "r_0.png"


class VolumeApp(App):
    """Neural volume: fit a procedural coloured density cloud by rendering random rays through it (MSE on RGBA)."""

    def build(self) -> None:
        k = 8
        self.centers = self.rand(k, 3) * 0.6 + 0.2
        self.radii = self.rand(k) * 0.1 + 0.05
        self.albedo = self.rand(k, 3)
        self.field = GridField(self.spec, self.mode, self.device, out_dim=16, hidden_layers=1)
        self.box = torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0], device=self.device)
        self.compositing = render_backends(self.ctx.render_backend, self.device)["compositing"]
        self.info.update(blobs=k, samples_per_ray=self.ctx.volume_samples, compositing_backend=self.compositing)

    def volume(self, x: Tensor):
        """Procedural density (Gaussian blobs modulated by a sine texture) and albedo at ``x`` in [0, 1]^3."""
        w = torch.exp(-((x[:, None] - self.centers) ** 2).sum(-1) / (2 * self.radii**2))  # [n, k]
        texture = 0.75 + 0.25 * torch.sin(20 * x[:, 0]) * torch.sin(20 * x[:, 1]) * torch.sin(20 * x[:, 2])
        sigma = 40.0 * w.sum(-1) * texture
        albedo = (w @ self.albedo) / w.sum(-1, keepdim=True).clamp(min=1e-6)
        return sigma, albedo

    def loss(self, prof) -> Tensor:
        n_rays, n_samples = self.ctx.rays, self.ctx.volume_samples
        with prof.region("data"):
            direction = torch.randn(n_rays, 3, device=self.device, generator=self.generator)
            origins = 0.5 + 1.5 * direction / direction.norm(dim=-1, keepdim=True)
            rays_d = self.rand(n_rays, 3) * 0.8 + 0.1 - origins
            rays_d = rays_d / rays_d.norm(dim=-1, keepdim=True)
            t_near, t_far = ray_aabb_intersect(origins, rays_d, self.box)
            edges = (torch.arange(n_samples + 1, device=self.device) / n_samples)[None]
            t = t_near[:, None] + edges * (t_far - t_near)[:, None]
            t0, t1 = t[:, :-1].reshape(-1), t[:, 1:].reshape(-1)
            ray_indices = torch.arange(n_rays, device=self.device).repeat_interleave(n_samples)
            mids = (t0 + (t1 - t0) * self.rand(t0.shape[0]))[:, None]
            positions = (origins[ray_indices] + rays_d[ray_indices] * mids).clamp(0, 1)
            with torch.no_grad():
                sigma_gt, albedo_gt = self.volume(positions)
                target, target_opacity = _composite(t0, t1, sigma_gt, albedo_gt, ray_indices, n_rays,
                                                    self.compositing, 0.0)
        h = self.field(prof, positions)
        sigmas, rgb = torch.exp(h[:, 0].clamp(max=15.0)), torch.sigmoid(h[:, 1:4])
        with prof.region("compositing"):
            pred, opacity = _composite(t0, t1, sigmas, rgb, ray_indices, n_rays, self.compositing, 0.0)
        return ((pred - target) ** 2).mean() + ((opacity - target_opacity) ** 2).mean()


APP_CLASSES: Dict[str, type] = {"nerf": NerfApp, "sdf": SdfApp, "image": ImageApp, "volume": VolumeApp}


def make_app(name: str, encoding: str, ctx) -> App:
    return APP_CLASSES[name](encoding, ctx)
