"""Builders shared by the method configs, so optimizer and trainer blocks are not copied between methods."""

from __future__ import annotations

from typing import Dict, Iterable

from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig


def adam_exponential_decay(
    lr: float, lr_final: float, max_steps: int, eps: float = 1e-15, weight_decay: float = 0.0
) -> Dict[str, object]:
    """One nerfstudio optimizer entry: Adam with an exponential learning-rate decay to ``lr_final``."""
    return {
        "optimizer": AdamOptimizerConfig(lr=lr, eps=eps, weight_decay=weight_decay),
        "scheduler": ExponentialDecaySchedulerConfig(lr_final=lr_final, max_steps=max_steps),
    }


def shared_schedule(groups: Iterable[str], **kwargs) -> Dict[str, Dict[str, object]]:
    """The same optimizer recipe for several parameter groups (each gets its own optimizer instance)."""
    return {group: adam_exponential_decay(**kwargs) for group in groups}


def splat_optimizers(max_steps: int, **groups: Dict[str, object]) -> Dict[str, Dict[str, object]]:
    """Splatfacto's per-Gaussian optimizer recipe (3DGS learning rates) plus ``groups`` (new or overriding).

    Means decay 1.6e-4 -> 1.6e-6; features 2.5e-3 (rest /20); opacities 5e-2; scales 5e-3; quats 1e-3; camera
    pose refinement 1e-4 -> 5e-7 (used only when the camera optimizer is on).
    """
    recipe: Dict[str, Dict[str, object]] = {
        "means": adam_exponential_decay(lr=1.6e-4, lr_final=1.6e-6, max_steps=max_steps),
        "features_dc": constant_adam(0.0025),
        "features_rest": constant_adam(0.0025 / 20),
        "opacities": constant_adam(0.05),
        "scales": constant_adam(0.005),
        "quats": constant_adam(0.001),
        "camera_opt": adam_exponential_decay(lr=1e-4, lr_final=5e-7, max_steps=max_steps),
    }
    recipe.update(groups)
    return recipe


def constant_adam(lr: float, eps: float = 1e-15, weight_decay: float = 0.0) -> Dict[str, object]:
    """One nerfstudio optimizer entry: Adam at a constant learning rate."""
    return {"optimizer": AdamOptimizerConfig(lr=lr, eps=eps, weight_decay=weight_decay), "scheduler": None}
