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
    monkeypatch.setattr(lpips_compat, "_warned", set())

    def no_network(*args, **kwargs):
        raise AssertionError("attempted a download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    with pytest.warns(UserWarning, match="LPIPS .* is disabled") as caught:
        assert lpips_compat.make_lpips() is None
    assert {str(w.message).split(")")[0] for w in caught} == {"LPIPS (lpips", "LPIPS (lpips_vgg"}
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("error")
        assert lpips_compat.make_lpips() is None  # no second warning


def test_image_metrics_without_lpips():
    from ng_methods.metrics import image_metrics

    image = torch.rand(16, 16, 3)
    metrics = image_metrics(image, image, None)
    assert metrics["psnr"] > 60 and metrics["ssim"] == pytest.approx(1.0, abs=1e-4) and "lpips" not in metrics


def test_each_cached_backbone_is_reported_under_its_own_name(tmp_path, monkeypatch):
    """With only the VGG weights cached, metrics carry ``lpips_vgg`` and no ``lpips`` (built offline: the backbone
    is a stand-in module, nothing is loaded or downloaded)."""
    from ng_methods.metrics import image_metrics

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / lpips_compat.VGG16_WEIGHTS_FILE).write_bytes(b"")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(lpips_compat, "_warned", set())
    built = []

    class FakeLPIPS(torch.nn.Module):
        def __init__(self, net_type, normalize):
            super().__init__()
            built.append((net_type, normalize))

        def forward(self, pred, target):
            return (pred - target).abs().mean()

    import torchmetrics.image.lpip

    monkeypatch.setattr(torchmetrics.image.lpip, "LearnedPerceptualImagePatchSimilarity", FakeLPIPS)
    with pytest.warns(UserWarning, match=r"LPIPS \(lpips\) is disabled"):
        lpips = lpips_compat.make_lpips()
    assert built == [("vgg", True)]
    metrics = image_metrics(torch.zeros(8, 8, 3), torch.full((8, 8, 3), 0.25), lpips)
    assert "lpips" not in metrics and metrics["lpips_vgg"] == pytest.approx(0.25)
