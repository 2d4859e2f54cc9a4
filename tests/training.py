"""Train our methods through the real nerfstudio trainer on CPU, and drive the installed CLIs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, List, Optional

import torch
from nerfstudio.engine.trainer import Trainer, TrainerConfig


def cli_env() -> dict:
    """Environment for ns-* subprocesses: no opt-out of torch's safe loading (our plugin must make it work)."""
    env = dict(os.environ)
    env.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def run_cli(args: List[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """Run an ns-* console script from this interpreter's environment."""
    script = Path(sys.executable).parent / args[0]
    return subprocess.run(
        [str(script), *args[1:]], capture_output=True, text=True, timeout=timeout, env=cli_env()
    )


def reduce_for_cpu(config: TrainerConfig, data: Path, output_dir: Path, steps: int) -> TrainerConfig:
    """Shrink a method's config to train a few dozen steps on CPU (the same code path, smaller sizes)."""
    config.machine.device_type = "cpu"
    config.max_num_iterations = steps
    config.steps_per_save = steps
    config.steps_per_eval_batch = 10**9
    config.steps_per_eval_image = 10**9
    config.steps_per_eval_all_images = 10**9
    config.save_only_latest_checkpoint = True
    config.vis = "tensorboard"
    config.viewer.quit_on_train_completion = True
    config.output_dir = output_dir
    config.pipeline.datamanager.data = data
    config.pipeline.datamanager.dataparser.data = data
    config.pipeline.datamanager.train_num_rays_per_batch = 1024
    if hasattr(config.pipeline, "target_num_samples"):
        config.pipeline.target_num_samples = 1 << 16
        config.pipeline.max_num_samples_per_ray = 64
    config.pipeline.datamanager.eval_num_rays_per_batch = 1024
    return config


def train(config: TrainerConfig, on_loss: Optional[Callable[[dict], None]] = None) -> Trainer:
    """Set up and run nerfstudio's Trainer; ``on_loss`` sees every training loss dict."""
    config.set_timestamp()
    config.save_config()
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    if on_loss is not None:
        model = trainer.pipeline.model
        original = model.get_loss_dict

        def recording_loss_dict(*args, **kwargs):
            loss_dict = original(*args, **kwargs)
            on_loss({k: float(v.detach()) for k, v in loss_dict.items()})
            return loss_dict

        model.get_loss_dict = recording_loss_dict
    trainer.train()
    return trainer


_EXPORTER_WITHOUT_OPEN3D = """
import sys, types
try:
    import open3d  # noqa: F401
except ImportError:  # open3d needs the system's libusb-1.0; the Gaussian-splat export path never touches it
    sys.modules["open3d"] = types.ModuleType("open3d")
from nerfstudio.scripts.exporter import entrypoint
sys.argv = ["ns-export", *sys.argv[1:]]
entrypoint()
"""


def run_ns_export(args: List[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """``ns-export <args>`` through nerfstudio's own exporter, tolerating an open3d that cannot load."""
    return subprocess.run(
        [sys.executable, "-c", _EXPORTER_WITHOUT_OPEN3D, *args], capture_output=True, text=True, timeout=timeout,
        env=cli_env(),
    )


def train_and_check(config: TrainerConfig, fresh_config: TrainerConfig, loss_key: str = "main_loss",
                    min_gain_db: float = 1.0, check_cli: bool = True,
                    on_loss: Optional[Callable[[dict], None]] = None, max_loss_ratio: float = 0.8):
    """Train; the loss falls, eval PSNR beats an untrained model, ns-eval and ns-render load the checkpoint."""
    torch.manual_seed(0)
    losses: List[float] = []

    def record(loss_dict):
        losses.append(loss_dict[loss_key])
        if on_loss is not None:
            on_loss(loss_dict)

    trainer = train(config, on_loss=record)
    assert len(losses) == config.max_num_iterations
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < max_loss_ratio * first, f"loss did not fall: {first:.4f} -> {last:.4f}"

    trained = trainer.pipeline.get_average_eval_image_metrics()["psnr"]
    torch.manual_seed(0)
    fresh_config.set_timestamp()
    fresh = fresh_config.setup(local_rank=0, world_size=1)
    fresh.setup()
    untrained = fresh.pipeline.get_average_eval_image_metrics()["psnr"]
    assert trained > untrained + min_gain_db, f"eval PSNR {untrained:.2f} -> {trained:.2f}"

    config_path = config.get_base_dir() / "config.yml"
    assert len(list(config.get_checkpoint_dir().glob("*.ckpt"))) == 1
    if check_cli:
        out = Path(config.output_dir)
        metrics_path = out / "eval.json"
        result = run_cli(["ns-eval", "--load-config", str(config_path), "--output-path", str(metrics_path)])
        assert result.returncode == 0, result.stderr[-3000:]
        eval_psnr = json.loads(metrics_path.read_text())["results"]["psnr"]
        assert eval_psnr > untrained, (eval_psnr, untrained)  # ns-eval scores the test split, training the val split

        video = out / "render.mp4"
        result = run_cli([
            "ns-render", "interpolate", "--load-config", str(config_path), "--output-path", str(video),
            "--interpolation-steps", "2", "--frame-rate", "4", "--downscale-factor", "2",
        ])
        assert result.returncode == 0, result.stderr[-3000:]
        assert video.stat().st_size > 1000
    return trainer, config_path
