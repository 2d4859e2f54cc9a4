"""Evaluation half of ``scripts/benchmark_methods.py``: reload a saved run, score its eval split as
``ns-eval`` does, time each full-image render, and measure the model's size."""

from __future__ import annotations

import argparse
import functools
import math
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
import yaml

from ng_methods.compat.lpips import nerfstudio_lpips_offline

# nerfstudio's models build LPIPS inside __init__; NaN scores (and no download) while AlexNet is not cached
offline_lpips = nerfstudio_lpips_offline


def synchronizer(device: str) -> Callable[[], None]:
    """``torch.cuda.synchronize`` on CUDA, else a no-op: timings must wait for queued kernels."""
    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def load_for_eval(config, split: str, device: str):
    """Rebuild the pipeline from the saved config.yml and checkpoint (as ns-eval's eval_setup, on ``device``)."""
    return load_saved_run(config.get_base_dir() / "config.yml", split, device, config.pipeline.datamanager._target)


def load_saved_run(config_path: Path, split: str, device: str, datamanager_target=None):
    """``(pipeline, checkpoint)`` of a saved run; the checkpoint is looked up next to its config.yml."""
    from nerfstudio.utils.eval_utils import eval_load_checkpoint

    saved = yaml.load(Path(config_path).read_text(), Loader=yaml.Loader)
    if datamanager_target is not None:
        saved.pipeline.datamanager._target = datamanager_target  # as eval_setup does
    saved.load_dir = Path(config_path).parent / saved.relative_model_dir
    with offline_lpips():
        pipeline = saved.pipeline.setup(device=device, test_mode=split)
    pipeline.eval()
    checkpoint, _ = eval_load_checkpoint(saved, pipeline)
    return pipeline, checkpoint


def render_timed(pipeline, camera, sync: Callable[[], None]):
    """``(outputs, seconds)`` of one full-image render, synchronised on both sides."""
    sync()
    start = time.perf_counter()
    outputs = pipeline.model.get_outputs_for_camera(camera)
    sync()
    return outputs, time.perf_counter() - start


def _mean_metric(per_image: List[Dict[str, float]], key: str) -> Optional[float]:
    if not all(key in metrics for metrics in per_image):  # our models omit LPIPS when it is unavailable
        return None
    mean = sum(float(metrics[key]) for metrics in per_image) / len(per_image)
    return mean if math.isfinite(mean) else None  # NaN: nerfstudio's LPIPS replaced offline


def gaussian_storage(model) -> Dict[str, object]:
    """Gaussian count and storage of a splat model: its own compact size when it has one (``storage_bytes()``),
    else the size of the standard 3DGS ``.ply`` ``ns-export gaussian-splat`` writes (float32 attributes)."""
    if not hasattr(model, "gauss_params"):
        return {}
    count = int(model.gauss_params["means"].shape[0])
    if hasattr(model, "storage_bytes"):
        return {"num_gaussians": count, "storage_mb": model.storage_bytes() / 2**20, "storage_kind": "compact"}
    with torch.no_grad():
        per_gaussian = 3 + 3 + model.shs_0[0].numel() + model.shs_rest[0].numel() + 1 + 3 + 4  # xyz, normals, ...
    return {"num_gaussians": count, "storage_mb": count * per_gaussian * 4 / 2**20, "storage_kind": "ply"}


def image_scores(model, outputs, batch, right_half: bool) -> Dict[str, float]:
    """The model's own eval metrics, or (``right_half``) the same metrics on the right half of the image for
    models without the half-image protocol, so a baseline is scored on the pixels splatfacto-wild is scored on."""
    from ng_methods.splatfacto_wild.model import SplatfactoWildModel

    if not right_half or isinstance(model, SplatfactoWildModel):
        return model.get_image_metrics_and_images(outputs, batch)[0]
    from ng_methods.splatfacto_wild.eval_protocol import right_half_metrics

    gt = model.composite_with_background(model.get_gt_img(batch["image"]), outputs["background"])  # splat models
    return right_half_metrics(outputs["rgb"], gt[..., :3], _offline_lpips_module())


@functools.lru_cache(maxsize=1)
def _offline_lpips_module():
    from ng_methods.compat.lpips import make_lpips

    return make_lpips()  # None (one warning) without cached AlexNet weights


def model_size(model, checkpoint: Path) -> Dict[str, object]:
    """Parameter (and buffer) bytes of the model, and the size of its checkpoint file (which adds optimizer state)."""
    tensors = list(model.parameters()) + list(model.buffers())
    return {"param_mb": sum(t.numel() * t.element_size() for t in tensors) / 2**20,
            "checkpoint_mb": Path(checkpoint).stat().st_size / 2**20}


def evaluate(config, args: argparse.Namespace) -> Dict[str, object]:
    """``evaluate_pipeline`` on a run this script just trained."""
    return evaluate_pipeline(*load_for_eval(config, args.eval_split, args.device), args)


def evaluate_pipeline(pipeline, checkpoint: Path, args: argparse.Namespace) -> Dict[str, object]:
    """Average image metrics over the eval split, as ``pipeline.get_average_eval_image_metrics`` computes them,
    timing each full-image render (the dataset's resolution) on the way; render FPS leaves out the first
    (warm-up) render."""
    sync = synchronizer(args.device)
    per_image, render_s = [], []
    with torch.no_grad():
        for camera, batch in pipeline.datamanager.fixed_indices_eval_dataloader:
            outputs, seconds = render_timed(pipeline, camera, sync)
            render_s.append(seconds)
            per_image.append(image_scores(pipeline.model, outputs, batch, args.right_half))
        if len(render_s) == 1:  # one image: time a second render of it
            render_s.append(render_timed(pipeline, camera, sync)[1])
    record = {key: _mean_metric(per_image, key) for key in ("psnr", "ssim", "lpips", "lpips_vgg")}
    record.update(render_fps=(len(render_s) - 1) / sum(render_s[1:]), render_images=len(render_s) - 1)
    record.update(eval_images=len(per_image), checkpoint=str(checkpoint))
    record.update(render_resolution=f"{int(camera.width.flatten()[0])}x{int(camera.height.flatten()[0])}")
    record.update(gaussian_storage(pipeline.model), **model_size(pipeline.model, checkpoint))
    del pipeline
    return record
