"""Load a trained splat run from its ``config.yml`` (for the export and compression command-line tools)."""

from __future__ import annotations

from pathlib import Path
from typing import Tuple, Type, TypeVar

from nerfstudio.pipelines.base_pipeline import Pipeline

ModelT = TypeVar("ModelT")


def load_trained_model(config_path: Path, model_type: Type[ModelT]) -> Tuple[Pipeline, ModelT]:
    """``eval_setup`` in inference mode, then check the run's model is a ``model_type`` (exit naming the file)."""
    from nerfstudio.utils.eval_utils import eval_setup

    import ng_methods  # noqa: F401  (checkpoint loading on torch >= 2.6)

    _, pipeline, _, _ = eval_setup(config_path, test_mode="inference")
    model = pipeline.model
    if not isinstance(model, model_type):
        raise SystemExit(f"{config_path}: the run's model is {type(model).__name__}, not a {model_type.__name__}")
    return pipeline, model
