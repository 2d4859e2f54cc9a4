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


def splatfacto_wild_optimizers(max_steps: int) -> Dict[str, Dict[str, object]]:
    """Splatfacto-W's optimizer recipe (official ``splatfactow_config.py``).

    The decays run over fixed horizons as upstream (30k steps for means, MLPs and camera poses, 40k for the
    Gaussian features and image embeddings) and then hold their final rate; ``max_steps`` only bounds them when a
    run is shorter. Higher-order SH heads get 1/20 of their body's learning rate.
    """
    short, long = min(30000, max_steps), min(40000, max_steps)
    recipe = splat_optimizers(
        max_steps,
        means=adam_exponential_decay(lr=1.6e-5, lr_final=1.6e-7, max_steps=short),
        appearance_features=adam_exponential_decay(lr=0.02, lr_final=1e-3, max_steps=long),
        opacities=constant_adam(0.03),
        camera_opt=adam_exponential_decay(lr=1e-3, lr_final=5e-5, max_steps=short),
        appearance_embed=adam_exponential_decay(lr=0.02, lr_final=3e-4, max_steps=long),
        appearance_model_encoder=adam_exponential_decay(lr=2e-3, lr_final=1e-4, max_steps=short),
        appearance_model_base=adam_exponential_decay(lr=2e-3, lr_final=1e-4, max_steps=short),
        appearance_model_rest=adam_exponential_decay(lr=2e-3 / 20, lr_final=1e-4 / 20, max_steps=short),
        field_background_encoder=adam_exponential_decay(lr=2e-3, lr_final=1e-4, max_steps=short),
        field_background_base=adam_exponential_decay(lr=2e-3, lr_final=2e-4, max_steps=short),
        field_background_rest=adam_exponential_decay(lr=2e-3 / 20, lr_final=2e-4 / 20, max_steps=short),
    )
    for unused in ("features_dc", "features_rest"):  # colours come from the appearance MLP
        recipe.pop(unused)
    return recipe
