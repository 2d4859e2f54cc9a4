"""``C3DGSModel``: Compact 3D Gaussian Representation (Lee et al., CVPR 2024) on the ng-methods splat base.

Per Gaussian: centre, log-scale, quaternion, opacity logit and a mask logit (no colour). Rendering (official code):

* mask ``M`` (straight-through, :mod:`.mask`) multiplies the activated opacity and the activated scale;
* colour: the hash-grid + MLP colour field (:mod:`.color_field`) evaluated per Gaussian and view, used as SH DC;
* during the final ``rvq_fraction`` of training (1000 of 30000 steps), the activated scale and the normalised
  quaternion are replaced by their residual vector quantisation (:mod:`.rvq`; k-means at the first such step).

Densification is the original 3DGS rule (:class:`ng_methods.splat.strategy_3dgs.ThreeDGSStrategy`, thresholds
relative to the 3DGS camera extent, which also scales the centres' learning rate, as the official code). Training
adds ``mask_loss`` and removes masked Gaussians at every refinement, every ``mask_prune_every`` steps after
densification stops, and after the last step (where the storage and the Gaussian count are logged). The R-VQ
codebooks follow the official in-place update (:mod:`.rvq`), not the optimizer.

For ``ns-export gaussian-splat``, ``opacities``/``scales``/``quats`` return the attributes as rendered (mask and
R-VQ applied; masked Gaussians get -inf, which the exporter drops) and ``shs_0``/``shs_rest`` the colour field
baked into degree-``sh_degree`` SH by least squares (:mod:`.sh_bake`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Dict, List, Literal, Optional, Tuple, Type

import torch
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes
from nerfstudio.utils import writer
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor
from torch.nn import Parameter

from ng_methods.c3dgs.color_field import ColorField, c3dgs_grid_spec
from ng_methods.c3dgs.mask import INITIAL_MASK_LOGIT, kept_gaussians, mask_loss, straight_through_mask
from ng_methods.c3dgs.rvq import ResidualVectorQuantizer
from ng_methods.c3dgs.sh_bake import bake_color_field
from ng_methods.kernels.grid_encoding import Backend as GridBackend
from ng_methods.splat.extent import camera_extent, scale_learning_rate
from ng_methods.splat.model import GaussiansToRender, NGSplatModel, NGSplatModelConfig
from ng_methods.splat.sh import SH2RGB
from ng_methods.splat.strategy_3dgs import ThreeDGSStrategy


@dataclass
class C3DGSModelConfig(NGSplatModelConfig):
    """Splatfacto's fields (3DGS densification) plus C3DGS's mask, colour field, R-VQ and storage settings.

    Defaults are the official code's real-scene values (recipe cards in ``docs/c3dgs.md``). Synthetic scenes in the
    official code use ``mask_weight=4e-3``, ``hash_log2_size=16``, 100k random initial points and a learning rate of
    1e-3 for the mask and the colour network, which never decays (see ``c3dgs-synthetic``).
    """

    _target: Type = field(default_factory=lambda: C3DGSModel)
    sh_degree: int = 3
    """Only for export: the SH degree ``ns-export gaussian-splat`` bakes the colour field into (nerfstudio's exporter
    reads ``config.sh_degree``). Rendering always uses the colour field as an SH DC term (degree 0)."""
    cull_alpha_thresh: float = 0.005
    """Opacity below which refinement prunes a Gaussian (3DGS / C3DGS: 0.005; Splatfacto: 0.1)."""
    densify_grad_thresh: float = 2e-4
    """Mean screen-space gradient norm (NDC units) above which a Gaussian grows (3DGS: 2e-4; Splatfacto: 8e-4,
    absgrad)."""
    use_absgrad: bool = False
    """3DGS accumulates the plain gradient (Splatfacto: absgrad)."""
    cull_scale_thresh: float = 0.1
    """After the first opacity reset, prune Gaussians larger than this x the scene extent (3DGS: 0.1; Splatfacto:
    0.5)."""
    stop_screen_size_at: int = 0
    """Screen-size split/prune until this step; 0 = never (INRIA's 20 px prune never fires, see ``strategy_3dgs``)."""
    pause_refine_after_reset: int = 0
    """Steps without refinement after an opacity reset (3DGS: 0; Splatfacto: one pass over the images + 100)."""
    num_downscales: int = 0
    """Train at 1/2^d resolution at first (3DGS / C3DGS: full resolution from the first step; Splatfacto: 2)."""
    background_color: Literal["random", "black", "white"] = "black"
    """Fixed background of the official code (black: ``--white_background`` is not set; Splatfacto: random)."""
    scene_extent_from_cameras: bool = True
    """Scale the 3D densification thresholds by the 3DGS camera extent (1.1 x the largest camera distance from
    the cameras' centroid), as the official code; False uses 1 (Splatfacto)."""
    means_lr_times_extent: bool = True
    """Multiply the centres' learning rate (whole schedule) by the camera extent, as 3DGS's ``spatial_lr_scale``."""
    identity_init_rotation: bool = True
    """Initial rotations are the identity, as 3DGS (Splatfacto: uniformly random)."""
    mask_threshold: float = 0.01
    """A Gaussian is masked (and later removed) when ``sigmoid(mask logit) <= mask_threshold``."""
    mask_weight: float = 5e-4
    """lambda_m of the mask loss ``lambda_m * mean(sigmoid(m))``. The official code uses 5e-4 on real scenes and 4e-3
    on synthetic ones; its README says 0.01."""
    mask_prune_every: int = 1000
    """After densification stops, remove masked Gaussians every this many steps (and once more at the end)."""
    hash_log2_size: int = 19
    """log2 of the colour hash table size per level (2^19 real scenes, 2^16 synthetic)."""
    hash_levels: int = 16
    """Levels of the colour hash grid."""
    hash_features_per_level: int = 2
    """Features per hash-grid level."""
    hash_base_resolution: int = 16
    """Coarsest hash-grid resolution."""
    hash_per_level_scale: float = 1.447
    """Growth factor between hash-grid levels (exactly 1.447 as in the official code)."""
    grid_backend: GridBackend = "auto"
    """Hash-grid kernel: "auto" (Triton on CUDA when available, else PyTorch), "torch", "triton" or "tcnn"."""
    contraction_bound: float = 1.0
    """Half-size of the box mapped linearly before the unisphere contraction (the official code uses [-1, 1]^3)."""
    mlp_width: int = 64
    """Hidden width of the colour MLP."""
    mlp_hidden_layers: int = 2
    """Hidden layers of the colour MLP (41 -> 64 -> 64 -> 3)."""
    rvq_stages: int = 6
    """Residual quantisation stages for scale and for rotation."""
    rvq_codebook_size: int = 64
    """Codes per stage (6 bits per index)."""
    rvq_fraction: float = 1000 / 30000
    """R-VQ is active for the final ``round(rvq_fraction * total steps)`` steps (at least 1): 1000 of 30000."""
    rvq_kmeans_iters: int = 1
    """Lloyd iterations of the k-means codebook initialisation (the official code: 1)."""
    rvq_codebook_lr: float = 1e-4
    """Learning rate of the in-place Adam step each codebook takes per training render (the official 1e-4)."""
    num_steps: Optional[int] = None
    """Total training steps (for the R-VQ window and the final prune); None takes the trainer's
    ``max_num_iterations``."""
    bake_directions: int = 64
    """Directions per Gaussian for the least-squares SH baking used by ``ns-export gaussian-splat``."""
    storage_hash_prune: float = 0.1
    """Compact storage: hash-table values with ``|v|`` below this are stored as zero (the official post-processing)."""
    storage_hash_bits: int = 8
    """Compact storage: bits of the min-max quantised hash table."""
    storage_opacity_bits: int = 8
    """Compact storage: bits of the min-max quantised opacity."""


class C3DGSModel(NGSplatModel):
    """C3DGS; see the module docstring."""

    config: C3DGSModelConfig

    # ------------------------------------------------------------------------------------------------ setup
    def populate_modules(self) -> None:
        super().populate_modules()
        cfg = self.config
        spec = c3dgs_grid_spec(cfg.hash_log2_size, cfg.hash_levels, cfg.hash_features_per_level,
                               cfg.hash_base_resolution, cfg.hash_per_level_scale)
        self.color_field = ColorField(spec, cfg.mlp_width, cfg.mlp_hidden_layers, cfg.contraction_bound,
                                      cfg.grid_backend)
        self.vq_scale = ResidualVectorQuantizer(3, cfg.rvq_stages, cfg.rvq_codebook_size, cfg.rvq_codebook_lr)
        self.vq_rotation = ResidualVectorQuantizer(4, cfg.rvq_stages, cfg.rvq_codebook_size, cfg.rvq_codebook_lr)
        # the extent the centres' learning rate has been multiplied by (restored by a checkpoint: no double scaling)
        self.register_buffer("means_lr_extent", torch.ones(()))
        self.total_steps: Optional[int] = cfg.num_steps
        self.final_storage_bytes: Optional[int] = None
        self._baked_sh: Optional[Tuple[tuple, Tensor]] = None

    def initial_gaussians(self) -> Dict[str, Parameter]:
        """Splatfacto's initial geometry and opacity, no colour, and mask logits of 1 (the official value)."""
        params = super().initial_gaussians()
        params.pop("features_dc")
        params.pop("features_rest")
        params["mask_logits"] = Parameter(torch.full((params["means"].shape[0], 1), INITIAL_MASK_LOGIT))
        if self.config.identity_init_rotation:
            params["quats"] = Parameter(torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(params["means"].shape[0], 1))
        return params

    def make_strategy(self) -> ThreeDGSStrategy:  # type: ignore[override]
        """The original 3DGS densification, from Splatfacto's field names (C3DGS defaults: 3DGS values)."""
        cfg = self.config
        return ThreeDGSStrategy(
            prune_opa=cfg.cull_alpha_thresh, grow_grad2d=cfg.densify_grad_thresh, grow_scale3d=cfg.densify_size_thresh,
            grow_scale2d=cfg.split_screen_size, prune_scale3d=cfg.cull_scale_thresh,
            prune_scale2d=cfg.cull_screen_size, refine_scale2d_stop_iter=cfg.stop_screen_size_at,
            refine_start_iter=cfg.warmup_length, refine_stop_iter=cfg.stop_split_at,
            reset_every=cfg.reset_alpha_every * cfg.refine_every, refine_every=cfg.refine_every,
            pause_refine_after_reset=cfg.pause_refine_after_reset, absgrad=cfg.use_absgrad, verbose=False,
        )

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        groups = super().get_param_groups()
        groups["color_field"] = list(self.color_field.parameters())
        return groups

    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> List[TrainingCallback]:
        trainer = training_callback_attributes.trainer
        if self.total_steps is None and trainer is not None:
            self.total_steps = trainer.config.max_num_iterations
        self.apply_scene_extent(training_callback_attributes)
        return super().get_training_callbacks(training_callback_attributes)

    def apply_scene_extent(self, attributes: TrainingCallbackAttributes) -> None:
        """3DGS's camera extent: the strategy's ``scene_scale`` and a factor on the centres' learning rate."""
        pipeline = attributes.pipeline
        dataset = getattr(getattr(pipeline, "datamanager", None), "train_dataset", None)
        if dataset is None:
            return
        extent = camera_extent(dataset.cameras.camera_to_worlds)
        if self.config.scene_extent_from_cameras:
            self.strategy_state["scene_scale"] = extent
        target = extent if self.config.means_lr_times_extent else 1.0
        optimizers = attributes.optimizers
        if optimizers is not None and "means" in optimizers.optimizers:
            scale_learning_rate(optimizers.optimizers["means"], optimizers.schedulers.get("means"),
                                target / float(self.means_lr_extent))
            self.means_lr_extent.fill_(target)
        CONSOLE.log(f"C3DGS: camera extent {extent:.4f} (densification scale, centres' lr x {target:.4f})")

    def load_state_dict(self, state_dict, **kwargs):  # type: ignore[override]
        state_dict.setdefault("means_lr_extent", torch.ones(()))  # checkpoints from before the extent scaling
        return super().load_state_dict(state_dict, **kwargs)

    # ------------------------------------------------------------------------------------------------ R-VQ
    @property
    def rvq_start_step(self) -> Optional[int]:
        """First step trained with R-VQ (None while the total step count is unknown)."""
        if self.total_steps is None:
            return None
        return self.total_steps - max(1, round(self.config.rvq_fraction * self.total_steps))

    @property
    def rvq_enabled(self) -> bool:
        """Whether scale and rotation are rendered through their quantisers (from the R-VQ start on)."""
        return bool(self.vq_scale.initialized) and bool(self.vq_rotation.initialized)

    def _activated_geometry(self) -> Tuple[Float[Tensor, "N 3"], Float[Tensor, "N 4"]]:
        scales = torch.exp(self.gauss_params["scales"])
        quats = torch.nn.functional.normalize(self.gauss_params["quats"], dim=-1)
        return scales, quats

    @torch.no_grad()
    def start_rvq(self) -> None:
        """Fit both quantisers by k-means to the current activated scales and normalised rotations."""
        scales, quats = self._activated_geometry()
        self.vq_scale.initialize(scales, self.config.rvq_kmeans_iters)
        self.vq_rotation.initialize(quats, self.config.rvq_kmeans_iters)

    def quantizers_for_export(self) -> Tuple[ResidualVectorQuantizer, ResidualVectorQuantizer]:
        """The trained quantisers, or k-means-fitted copies when training never reached the R-VQ phase."""
        if self.rvq_enabled:
            return self.vq_scale, self.vq_rotation
        vq_scale, vq_rotation = copy.deepcopy(self.vq_scale), copy.deepcopy(self.vq_rotation)
        scales, quats = self._activated_geometry()
        vq_scale.initialize(scales.detach(), self.config.rvq_kmeans_iters)
        vq_rotation.initialize(quats.detach(), self.config.rvq_kmeans_iters)
        return vq_scale, vq_rotation

    # ------------------------------------------------------------------------------------------------ render
    def rendered_attributes(
        self, crop_ids: Optional[Tensor] = None
    ) -> Tuple[Float[Tensor, "N 4"], Float[Tensor, "N 3"], Float[Tensor, "N"]]:
        """``(quats, linear scales, opacities)`` as rasterised: R-VQ (when enabled), then the mask."""
        params = self.gauss_params
        scales, quats = self._activated_geometry()
        mask_logits, opacity_logits = params["mask_logits"], params["opacities"]
        if crop_ids is not None:
            scales, quats, mask_logits, opacity_logits = (
                scales[crop_ids], quats[crop_ids], mask_logits[crop_ids], opacity_logits[crop_ids])
        if self.rvq_enabled:  # official in-place codebook step in every training render
            update = self.training and torch.is_grad_enabled()
            scales, _ = self.vq_scale(scales, update=update)
            quats, _ = self.vq_rotation(quats, update=update)
        mask = straight_through_mask(mask_logits.squeeze(-1), self.config.mask_threshold)
        return quats, scales * mask[:, None], torch.sigmoid(opacity_logits).squeeze(-1) * mask

    def gaussians_for_camera(self, camera: Cameras, crop_ids: Optional[Tensor]) -> GaussiansToRender:
        start = self.rvq_start_step
        if self.training and start is not None and self.step >= start and not self.rvq_enabled:
            self.start_rvq()
        quats, scales, opacities = self.rendered_attributes(crop_ids)
        means = self.gauss_params["means"] if crop_ids is None else self.gauss_params["means"][crop_ids]
        camera_center = camera.camera_to_worlds.reshape(-1, 3, 4)[0, :3, 3].to(means)
        sh_dc = self.color_field(means, camera_center)
        return GaussiansToRender(means=means, quats=quats, scales=scales, opacities=opacities,
                                 colors=sh_dc[:, None, :], sh_degree=0)

    # ------------------------------------------------------------------------------------------------ training
    def step_post_backward(self, step: int) -> None:
        """gsplat's densification, then C3DGS's removal of masked Gaussians (and the end-of-training report)."""
        super().step_post_backward(step)
        strategy = self.strategy
        refined = (strategy.refine_start_iter < step < strategy.refine_stop_iter
                   and step % strategy.refine_every == 0
                   and step % strategy.reset_every >= strategy.pause_refine_after_reset)
        periodic = step >= strategy.refine_stop_iter and step % self.config.mask_prune_every == 0
        last = self.total_steps is not None and step == self.total_steps - 1
        if refined or periodic or last:
            self.remove_masked_gaussians()
        if last:
            self.report_storage(step)

    @torch.no_grad()
    def remove_masked_gaussians(self) -> int:
        """Remove every Gaussian whose mask is off (parameters, optimizer moments and strategy state); the count."""
        drop = ~kept_gaussians(self.gauss_params["mask_logits"].squeeze(-1), self.config.mask_threshold)
        count = int(drop.sum())
        if count == 0:
            return 0
        optimizers = getattr(self, "optimizers", {})
        if all(name in optimizers for name in self.gauss_params):
            from gsplat.strategy.ops import remove

            remove(self.gauss_params, optimizers, self.strategy_state, drop)
        else:  # outside the trainer (no optimizers yet): slice parameters and running state directly
            for name, param in list(self.gauss_params.items()):
                self.gauss_params[name] = Parameter(param[~drop], requires_grad=param.requires_grad)
            for key, value in self.strategy_state.items():
                if isinstance(value, Tensor) and value.shape[:1] == drop.shape:
                    self.strategy_state[key] = value[~drop]
        return count

    def report_storage(self, step: int) -> None:
        """Log the compact file size and the Gaussian count (console and the training writers)."""
        self.final_storage_bytes = self.storage_bytes()
        CONSOLE.log(f"C3DGS: {self.num_points} Gaussians, compact storage {self.final_storage_bytes / 1e6:.3f} MB")
        writer.put_scalar("c3dgs/storage_mb", self.final_storage_bytes / 1e6, step)
        writer.put_scalar("c3dgs/num_gaussians", self.num_points, step)

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        loss_dict = super().get_loss_dict(outputs, batch, metrics_dict)
        if self.training:
            loss_dict["mask_loss"] = mask_loss(self.gauss_params["mask_logits"], self.config.mask_weight)
        return loss_dict

    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        metrics = super().get_metrics_dict(outputs, batch)
        metrics["num_gaussians"] = self.num_points
        metrics["storage_mb"] = self.storage_estimate_bytes() / 1e6
        return metrics

    # ------------------------------------------------------------------------------------------------ storage
    def storage_bytes(self) -> int:
        """Exact size in bytes of the compact file for the current model (encoded in memory, nothing written)."""
        from ng_methods.c3dgs.compact import compact_bytes

        return len(compact_bytes(self))

    def storage_estimate_bytes(self) -> int:
        """Fixed-length size of the compact attributes, before entropy coding (cheap; an upper bound up to the
        small header): fp16 centres, ``storage_opacity_bits`` opacity, R-VQ indices of both attributes, fp32
        codebooks, ``storage_hash_bits`` hash table, fp16 MLP."""
        cfg = self.config
        n = int(self.gauss_params["mask_logits"].gt(torch.logit(torch.tensor(cfg.mask_threshold))).sum())
        index_bits = 2 * cfg.rvq_stages * max(1, (cfg.rvq_codebook_size - 1).bit_length())
        per_gaussian_bits = 3 * 16 + cfg.storage_opacity_bits + index_bits
        codebooks = cfg.rvq_stages * cfg.rvq_codebook_size * (3 + 4) * 4
        table = self.color_field.grid.table
        mlp_params = sum(p.numel() for p in self.color_field.mlp.parameters())
        return (n * per_gaussian_bits + table.numel() * cfg.storage_hash_bits + 7) // 8 + codebooks + 2 * mlp_params

    # ------------------------------------------------------------------------------------------------ export
    def _baked_colors(self) -> Tensor:
        means = self.gauss_params["means"]
        table = self.color_field.grid.table
        key = (means.shape[0], means.data_ptr(), means._version, table._version,
               tuple(p._version for p in self.color_field.mlp.parameters()))
        if self._baked_sh is None or self._baked_sh[0] != key:
            baked = bake_color_field(self.color_field, means.detach(), self.config.sh_degree,
                                     self.config.bake_directions)
            self._baked_sh = (key, baked)
        return self._baked_sh[1]

    @property
    def shs_0(self) -> Tensor:
        """Baked SH DC coefficients ``[N, 3]`` (what ``ns-export gaussian-splat`` writes as ``f_dc_*``)."""
        return self._baked_colors()[:, 0, :]

    @property
    def shs_rest(self) -> Tensor:
        """Baked higher-order SH coefficients ``[N, (sh_degree+1)^2 - 1, 3]``."""
        return self._baked_colors()[:, 1:, :]

    @property
    def features_dc(self) -> Tensor:
        return self.shs_0

    @property
    def features_rest(self) -> Tensor:
        return self.shs_rest

    @property
    def colors(self) -> Tensor:
        """View-independent part of the baked colour ``[N, 3]`` in [0, 1]."""
        return torch.clamp(SH2RGB(self.shs_0), 0.0, 1.0)

    @property
    def opacities(self) -> Tensor:
        """Opacity logits as rendered ``[N, 1]`` (masked Gaussians: -inf, dropped by nerfstudio's exporter)."""
        with torch.no_grad():
            return torch.logit(self.rendered_attributes()[2])[:, None]

    @property
    def scales(self) -> Tensor:
        """Log-scales as rendered ``[N, 3]`` (after R-VQ and the mask; masked Gaussians: -inf)."""
        with torch.no_grad():
            return torch.log(self.rendered_attributes()[1].abs())

    @property
    def quats(self) -> Tensor:
        """Rotations as rendered ``[N, 4]`` (after R-VQ; gsplat normalises them)."""
        with torch.no_grad():
            return self.rendered_attributes()[0]
