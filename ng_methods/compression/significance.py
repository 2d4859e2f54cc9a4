"""Light4GS-style spatio-temporal significance and pruning for any ``NGSplatModel`` (static or dynamic).

The significance of Gaussian ``i`` is ``sum over training views (each at its own time) sum over pixels alpha_i T_i``:
how much it contributes to the training images. Light4GS computes it with a LightGaussian-style counting
rasteriser; here the rasteriser is unchanged: render with ``colors = ones [N, 1]`` that require grad, and the
gradient of the summed image with respect to colour ``i`` is exactly ``sum_p alpha_i(p) T_i(p)``. This works with
gsplat on CUDA and with the pure-PyTorch reference on CPU alike (:func:`ng_methods.kernels.splat.rasterize`).

The deformation is whatever ``model.gaussians_for_camera(camera)`` evaluates (e.g. Gaussian-Flow's DDDM at the
camera's time), so any subclass that keeps its per-Gaussian tensors in ``gauss_params`` can be scored and pruned.
Pruning goes through ``gsplat.strategy.ops.remove``, which slices the parameters, the optimizers' Adam moments and
the strategy's running state together.
"""

from __future__ import annotations

from typing import Dict, Literal, Sequence

import torch
from gsplat.strategy import ops
from jaxtyping import Bool, Float
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.models.splatfacto import get_viewmat
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor

from ng_methods.kernels.splat import rasterize
from ng_methods.splat.model import NGSplatModel


OpacityInput = Literal["activated", "logit"]
"""What the scoring render takes as opacity: the activated opacity in (0, 1) (LightGaussian's definition), or the
pre-activation logit as Light4GS's released ``count_render`` passes it (``opacities=opacity_final``,
``gaussian_renderer/__init__.py:240, 269`` @b7c7071): then ``alpha = min(0.999, logit * G)``, so every Gaussian with
opacity below 0.5 scores 0 and the others saturate sooner (its counting rasteriser clamps at 0.99, gsplat at 0.999)."""


def _scoring_opacities(opacities: Tensor, opacity_input: OpacityInput) -> Tensor:
    if opacity_input == "activated":
        return opacities
    if opacity_input != "logit":
        raise ValueError(f"opacity_input must be 'activated' or 'logit', got {opacity_input!r}")
    # the logit of the activated value, in float64 so only opacities that rounded to exactly 0 or 1 are clamped
    eps = torch.finfo(opacities.dtype).eps
    return torch.logit(opacities.double(), eps=eps / 2).to(opacities.dtype)


def view_significance(
    model: NGSplatModel, camera: Cameras, opacity_input: OpacityInput = "activated"
) -> Float[Tensor, "N"]:
    """``sum_p alpha_i T_i`` of every Gaussian in one camera (at the camera's time), via the ones-colour gradient."""
    camera = camera.to(model.device)
    with torch.no_grad():
        gaussians = model.gaussians_for_camera(camera, None)
    opacities = _scoring_opacities(gaussians.opacities, opacity_input)
    viewmat = get_viewmat(camera.camera_to_worlds)
    K = camera.get_intrinsics_matrices().to(model.device)
    width, height = int(camera.width.item()), int(camera.height.item())
    ones = torch.ones(gaussians.means.shape[0], 1, device=model.device, requires_grad=True)
    with torch.enable_grad():
        render, _, _ = rasterize(
            gaussians.means, gaussians.quats, gaussians.scales, opacities, ones, viewmat, K, width, height,
            sh_degree=None, covars=gaussians.covars, render_mode="RGB",
            rasterize_mode=model.config.rasterize_mode, backend=model.config.rasterizer_backend,
        )
        (grad,) = torch.autograd.grad(render.sum(), ones)
    if gaussians.ids is None:
        return grad[:, 0]
    # the model rendered a subset (e.g. 4d-rotor-gs culls Gaussians far from the camera's time): the rest score 0
    scores = torch.zeros(model.gauss_params["means"].shape[0], device=model.device, dtype=grad.dtype)
    scores[gaussians.ids] = grad[:, 0]
    return scores


def significance_scores(
    model: NGSplatModel, cameras: Cameras, opacity_input: OpacityInput = "activated"
) -> Float[Tensor, "N"]:
    """Light4GS significance: the per-view scores summed over all ``cameras`` (each rendered at its own time)."""
    scores = torch.zeros(model.gauss_params["means"].shape[0], device=model.device)
    for index in range(cameras.shape[0]):
        scores += view_significance(model, cameras[index : index + 1], opacity_input)
    return scores


def least_significant(scores: Float[Tensor, "N"], fraction: float) -> Bool[Tensor, "N"]:
    """A mask of the ``floor(fraction * N)`` lowest scores (ties broken by index, so exactly that many)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"prune fraction must be in [0, 1), got {fraction}")
    count = int(fraction * scores.shape[0])
    mask = torch.zeros_like(scores, dtype=torch.bool)
    mask[torch.argsort(scores, stable=True)[:count]] = True
    return mask


@torch.no_grad()
def prune_gaussians(
    model: NGSplatModel, optimizers: Dict[str, torch.optim.Optimizer], mask: Bool[Tensor, "N"]
) -> int:
    """Remove the masked Gaussians from ``model.gauss_params``, the optimizers and the strategy state; returns #removed.

    ``optimizers`` maps each ``gauss_params`` name to its optimizer (nerfstudio's ``Optimizers.optimizers``); pass
    an empty dict to prune a model that is not being trained.
    """
    removed = int(mask.sum())
    if removed == 0:
        return 0
    if optimizers:
        ops.remove(model.gauss_params, optimizers, model.strategy_state, mask)
    else:
        keep = ~mask
        for name, param in list(model.gauss_params.items()):
            model.gauss_params[name] = torch.nn.Parameter(param[keep])
        for key, value in model.strategy_state.items():
            if isinstance(value, Tensor):
                model.strategy_state[key] = value[keep]
    return removed


def prune_steps(fractions: Sequence[float], max_steps: int) -> list[int]:
    """Training steps for pruning rounds given as fractions of the run (Light4GS: 15k and 18k of its 30k D-NeRF run)."""
    return sorted({min(max(int(round(f * max_steps)), 0), max_steps - 1) for f in fractions})


def significance_pruning_callback(
    model: NGSplatModel,
    attributes: TrainingCallbackAttributes,
    at_fractions: Sequence[float],
    fraction: float,
    opacity_input: OpacityInput = "activated",
) -> TrainingCallback:
    """After-iteration callback pruning the ``fraction`` least significant Gaussians at each of ``at_fractions``.

    Scores are computed over the training cameras of the pipeline's datamanager; it runs after the densification
    strategy's own post-backward step of the same iteration.
    """
    if attributes.trainer is None:
        raise ValueError("significance pruning at fractions of the run needs the trainer (its max_num_iterations)")
    max_steps = attributes.trainer.config.max_num_iterations
    steps = set(prune_steps(at_fractions, max_steps))
    optimizers = attributes.optimizers

    def prune(step: int) -> None:
        if step not in steps:
            return
        cameras = attributes.pipeline.datamanager.train_dataset.cameras
        scores = significance_scores(model, cameras, opacity_input)
        before = scores.shape[0]
        removed = prune_gaussians(model, optimizers.optimizers, least_significant(scores, fraction))
        model.pruning_log.append((step, before, before - removed))
        CONSOLE.log(f"significance pruning at step {step}: {before} -> {before - removed} Gaussians")

    if not hasattr(model, "pruning_log"):
        model.pruning_log = []  # (step, #before, #after) per round, for tests and reports
    return TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], prune)
