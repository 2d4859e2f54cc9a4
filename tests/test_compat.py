"""Offline and torch-version safety: checkpoints load with torch's safe loader, LPIPS never downloads."""

import numpy as np
import pytest
import torch

import ng_methods  # noqa: F401  (installs the checkpoint allow-list)
from ng_methods.compat import lpips as lpips_compat


def test_nerfstudio_style_checkpoint_loads_with_weights_only(tmp_path):
    # nerfstudio 1.1.5 stores numpy scalars in scheduler state; torch >= 2.6 rejects them unless allow-listed.
    checkpoint = {
        "step": 10,
        "pipeline": {"w": torch.ones(2)},
        "schedulers": {"fields": {"base_lrs": [np.float64(0.01)], "last_epoch": np.int64(3)}},
    }
    path = tmp_path / "step-000000010.ckpt"
    torch.save(checkpoint, path)
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    assert loaded["schedulers"]["fields"]["base_lrs"][0] == pytest.approx(0.01)


def test_lpips_is_omitted_with_one_warning_when_weights_are_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(lpips_compat, "_warned", False)

    def no_network(*args, **kwargs):
        raise AssertionError("attempted a download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    with pytest.warns(UserWarning, match="LPIPS is disabled"):
        assert lpips_compat.make_lpips() is None
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("error")
        assert lpips_compat.make_lpips() is None  # no second warning


def test_image_metrics_without_lpips():
    from ng_methods.metrics import image_metrics

    image = torch.rand(16, 16, 3)
    metrics = image_metrics(image, image, None)
    assert metrics["psnr"] > 60 and metrics["ssim"] == pytest.approx(1.0, abs=1e-4) and "lpips" not in metrics
