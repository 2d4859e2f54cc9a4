"""``NGSplatModel``: nerfstudio's Splatfacto on any device, with hooks for our splat methods.

What changes against ``nerfstudio.models.splatfacto.SplatfactoModel`` (1.1.5):

* no hard-coded CUDA device: initial parameters and intrinsics follow the model's device;
* rasterisation goes through :func:`ng_methods.kernels.splat.rasterize` (gsplat on CUDA, the pure-PyTorch
  reference on CPU, both feeding gsplat's ``DefaultStrategy`` the same ``info`` including ``absgrad``);
* LPIPS is only built from cached weights (never downloaded); metrics via :func:`ng_methods.metrics.image_metrics`;
* checkpoints load into the existing ``Parameter`` objects, so a resumed run keeps optimising the same tensors
  the optimizers hold (Splatfacto replaces them, which silently freezes resumed training);
* every per-Gaussian tensor in ``gauss_params`` is a parameter group, so subclasses only add entries;
* while gradients are disabled the attribute properties return detached tensors (``ns-export`` calls ``.numpy()``).

Hooks for subclasses: :meth:`initial_gaussians`, :meth:`gaussians_for_camera`, :meth:`background_image`,
:meth:`make_strategy`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Type, Union

import torch
from gsplat.strategy import DefaultStrategy
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.model_components.lib_bilagrid import BilateralGrid, color_correct
from nerfstudio.models.splatfacto import SplatfactoModel, SplatfactoModelConfig, get_viewmat
from nerfstudio.utils.colors import get_color
from pytorch_msssim import SSIM
from torch import Tensor
from torch.nn import Parameter
from torchmetrics.image import PeakSignalNoiseRatio

from ng_methods.compat.lpips import make_lpips
from ng_methods.kernels.splat import Backend, rasterize
from ng_methods.metrics import image_metrics
from ng_methods.splat.init import initial_gaussian_params

# Viser's default background; what Splatfacto shows when training on random backgrounds.
VIEWER_BACKGROUND = (0.1490, 0.1647, 0.2157)


@dataclass
class GaussiansToRender:
    """What one rasterisation call needs; ``scales`` are linear and ``opacities`` activated ``[N]``."""

    means: Float[Tensor, "N 3"]
    quats: Optional[Float[Tensor, "N 4"]]
    scales: Optional[Float[Tensor, "N 3"]]
    opacities: Float[Tensor, "N"]
    colors: Tensor
    """``[N, K, 3]`` SH coefficients when ``sh_degree`` is set, else ``[N, 3]`` colours."""
    sh_degree: Optional[int]
    covars: Optional[Float[Tensor, "N 3 3"]] = None
    """World covariances; when set, ``quats``/``scales`` are ignored (used by the 4D methods)."""
    ids: Optional[Tensor] = None
    """Indices into ``gauss_params`` of these Gaussians when they are a subset (crop, temporal culling)."""


@dataclass
class NGSplatModelConfig(SplatfactoModelConfig):
    """Splatfacto's configuration (same fields and defaults) plus the rasteriser backend."""

    _target: Type = field(default_factory=lambda: NGSplatModel)
    rasterizer_backend: Backend = "auto"
    """Rasteriser: "gsplat" (CUDA), "torch" (pure-PyTorch reference, any device), "auto" (gsplat on CUDA)."""


class NGSplatModel(SplatfactoModel):
    """Splatfacto on any device; see the module docstring for what differs."""

    config: NGSplatModelConfig

    # ------------------------------------------------------------------------------------------------ setup
    def populate_modules(self) -> None:
        self.gauss_params = torch.nn.ParameterDict(self.initial_gaussians())
        self.camera_optimizer = self.config.camera_optimizer.setup(num_cameras=self.num_train_data, device="cpu")
        self.psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.ssim = SSIM(data_range=1.0, size_average=True, channel=3)
        self.lpips = make_lpips()
        self.step = 0
        self.crop_box = None
        if self.config.background_color == "random":
            self.background_color = torch.tensor(VIEWER_BACKGROUND)
        else:
            self.background_color = get_color(self.config.background_color)
        if self.config.use_bilateral_grid:
            self.bil_grids = BilateralGrid(
                num=self.num_train_data,
                grid_X=self.config.grid_shape[0],
                grid_Y=self.config.grid_shape[1],
                grid_W=self.config.grid_shape[2],
            )
        self.strategy = self.make_strategy()
        self.strategy_state = self.strategy.initialize_state(scene_scale=1.0)

    def initial_gaussians(self) -> Dict[str, Parameter]:
        """The per-Gaussian parameters (all become optimizer groups of the same name)."""
        return initial_gaussian_params(
            self.seed_points,
            sh_degree=self.config.sh_degree,
            num_random=self.config.num_random,
            random_scale=self.config.random_scale,
            random_init=self.config.random_init,
        )

    def make_strategy(self) -> DefaultStrategy:
        """Splatfacto's densification schedule as a gsplat ``DefaultStrategy``."""
        cfg = self.config
        return DefaultStrategy(
            prune_opa=cfg.cull_alpha_thresh,
            grow_grad2d=cfg.densify_grad_thresh,
            grow_scale3d=cfg.densify_size_thresh,
            grow_scale2d=cfg.split_screen_size,
            prune_scale3d=cfg.cull_scale_thresh,
            prune_scale2d=cfg.cull_screen_size,
            refine_scale2d_stop_iter=cfg.stop_screen_size_at,
            refine_start_iter=cfg.warmup_length,
            refine_stop_iter=cfg.stop_split_at,
            reset_every=cfg.reset_alpha_every * cfg.refine_every,
            refine_every=cfg.refine_every,
            pause_refine_after_reset=self.num_train_data + cfg.refine_every,
            absgrad=cfg.use_absgrad,
            revised_opacity=False,
            verbose=False,
        )

    def step_post_backward(self, step: int) -> None:
        """The densification strategy's step, without gsplat's opacity reset at step 0.

        ``DefaultStrategy`` resets opacities whenever ``step % reset_every == 0``, step 0 included, while 3DGS
        first resets at ``reset_every``. With a reset value (``2 * prune_opa``) below the initial opacity 0.1
        (every method whose cull threshold is under 0.05) the step-0 reset makes the initialisation nearly invisible.
        """
        assert step == self.step
        if step == 0 and isinstance(self.strategy, DefaultStrategy) and self.strategy.refine_stop_iter > 0:
            self.strategy._update_state(self.gauss_params, self.strategy_state, self.info, packed=False)
            return
        super().step_post_backward(step)

    def get_gaussian_param_groups(self) -> Dict[str, List[Parameter]]:
        return {name: [param] for name, param in self.gauss_params.items()}

    # ------------------------------------------------------------------------------------------------ state
    def _gauss(self, name: str) -> Tensor:
        param = self.gauss_params[name]
        return param if torch.is_grad_enabled() else param.detach()

    @property
    def means(self) -> Tensor:
        return self._gauss("means")

    @property
    def scales(self) -> Tensor:
        return self._gauss("scales")

    @property
    def quats(self) -> Tensor:
        return self._gauss("quats")

    @property
    def features_dc(self) -> Tensor:
        return self._gauss("features_dc")

    @property
    def features_rest(self) -> Tensor:
        return self._gauss("features_rest")

    @property
    def opacities(self) -> Tensor:
        return self._gauss("opacities")

    def update_to_step(self, step: int) -> None:
        self.step = step

    def load_state_dict(self, state_dict, **kwargs):  # type: ignore[override]
        """Resize the per-Gaussian parameters in place to the checkpoint's count, then load."""
        if "means" in state_dict:  # very old Splatfacto checkpoints stored the parameters at the top level
            for name in list(self.gauss_params.keys()):
                if name in state_dict:
                    state_dict[f"gauss_params.{name}"] = state_dict.pop(name)
        for name, param in self.gauss_params.items():
            key = f"gauss_params.{name}"
            if key in state_dict and state_dict[key].shape != param.shape:
                param.data = torch.zeros(state_dict[key].shape, dtype=param.dtype, device=param.device)
        return torch.nn.Module.load_state_dict(self, state_dict, **kwargs)

    # ------------------------------------------------------------------------------------------------ render
    def sh_degree_to_use(self) -> int:
        return min(self.step // self.config.sh_degree_interval, self.config.sh_degree)

    def gaussians_for_camera(self, camera: Cameras, crop_ids: Optional[Tensor]) -> GaussiansToRender:
        """The Gaussians to rasterise for ``camera`` (Splatfacto: SH colours, degree grows during training)."""
        params = {name: p if crop_ids is None else p[crop_ids] for name, p in self.gauss_params.items()}
        gaussians = self.gaussians_from_params(params)
        if crop_ids is not None:
            gaussians.ids = torch.where(crop_ids)[0]
        return gaussians

    def gaussians_from_params(
        self, params: Dict[str, Tensor], colors: Optional[Tensor] = None, sh_degree: Optional[int] = None
    ) -> GaussiansToRender:
        """Activate Splatfacto-layout attributes (log scales, opacity logits) for rendering, with Splatfacto's SH
        (or sigmoid) colours unless a method passes its own ``colors`` and ``sh_degree``."""
        if colors is None:
            colors = torch.cat([params["features_dc"][:, None, :], params["features_rest"]], dim=1)
            if self.config.sh_degree > 0:
                sh_degree = self.sh_degree_to_use()
            else:
                colors, sh_degree = torch.sigmoid(colors[:, 0, :]), None
        return GaussiansToRender(
            means=params["means"],
            quats=params["quats"],
            scales=torch.exp(params["scales"]),
            opacities=torch.sigmoid(params["opacities"]).squeeze(-1),
            colors=colors,
            sh_degree=sh_degree,
        )

    def background_image(
        self, camera: Cameras, background: Float[Tensor, "3"], height: int, width: int
    ) -> Float[Tensor, "*hw 3"]:
        """What shows through transparent pixels: a colour ``[3]`` here, or an image ``[H, W, 3]`` (Splatfacto-W)."""
        return background

    def get_outputs(self, camera: Cameras) -> Dict[str, Union[Tensor, List]]:
        """Render one camera: ``rgb [H,W,3]``, ``depth [H,W,1]`` (in eval, or when asked), ``accumulation [H,W,1]``
        and ``background``."""
        if not isinstance(camera, Cameras):
            raise TypeError(f"{type(self).__name__}.get_outputs needs a Cameras object, got {type(camera).__name__}")
        if self.training:
            assert camera.shape[0] == 1, "Only one camera at a time"
            camera_to_world = self.camera_optimizer.apply_to_camera(camera)
        else:
            camera_to_world = camera.camera_to_worlds

        crop_ids = None
        if self.crop_box is not None and not self.training:
            crop_ids = self.crop_box.within(self.gauss_params["means"]).squeeze()
            if crop_ids.sum() == 0:
                return self.get_empty_outputs(
                    int(camera.width.item()), int(camera.height.item()), self.background_color.to(self.device)
                )

        scale = self._get_downscale_factor()
        camera.rescale_output_resolution(1 / scale)
        viewmat = get_viewmat(camera_to_world)
        K = camera.get_intrinsics_matrices().to(self.device)
        W, H = int(camera.width.item()), int(camera.height.item())
        self.last_size = (H, W)
        camera.rescale_output_resolution(scale)

        render_mode = "RGB+ED" if (self.config.output_depth_during_training or not self.training) else "RGB"
        gaussians = self.gaussians_for_camera(camera, crop_ids)
        render, alpha, self.info = rasterize(
            gaussians.means, gaussians.quats, gaussians.scales, gaussians.opacities, gaussians.colors,
            viewmat, K, W, H,
            sh_degree=gaussians.sh_degree, covars=gaussians.covars, render_mode=render_mode,
            absgrad=self.strategy.absgrad, rasterize_mode=self.config.rasterize_mode,
            backend=self.config.rasterizer_backend,
        )
        if self.training:
            self.strategy.step_pre_backward(
                self.gauss_params, self.optimizers, self.strategy_state, self.step, self.info
            )

        background = self.background_image(camera, self._get_background_color(), H, W)
        rgb = torch.clamp(render[..., :3] + (1 - alpha) * background, 0.0, 1.0)
        if self.config.use_bilateral_grid and self.training and camera.metadata and "cam_idx" in camera.metadata:
            rgb = self._apply_bilateral_grid(rgb, camera.metadata["cam_idx"], H, W)

        depth = None
        if render_mode == "RGB+ED":
            depth = render[..., 3:4]
            depth = torch.where(alpha > 0, depth, depth.detach().max()).squeeze(0)
        if background.dim() == 1 and not self.training:
            background = background.expand(H, W, 3)
        return {"rgb": rgb.squeeze(0), "depth": depth, "accumulation": alpha.squeeze(0), "background": background}

    # ------------------------------------------------------------------------------------------------ metrics
    def get_image_metrics_and_images(
        self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]
    ) -> tuple[Dict[str, float], Dict[str, Tensor]]:
        gt_rgb = self.composite_with_background(self.get_gt_img(batch["image"]), outputs["background"])
        predicted = outputs["rgb"]
        metrics = image_metrics(predicted, gt_rgb, self.lpips)
        if self.config.color_corrected_metrics:
            corrected = color_correct(predicted, gt_rgb)
            metrics.update({f"cc_{k}": v for k, v in image_metrics(corrected, gt_rgb, self.lpips).items()})
        return metrics, {"img": torch.cat([gt_rgb, predicted], dim=1)}

