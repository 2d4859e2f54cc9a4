"""S3IM loss: checked against a direct, loop-based SSIM written independently here (numpy, float64)."""

from __future__ import annotations

import math
from dataclasses import fields

import numpy as np
import pytest
import torch

from ng_methods.losses import S3IM, S3IMConfig, gaussian_window, s3im_indices, s3im_loss, s3im_virtual_patch, ssim

# ----------------------------------------------------------------------------------------------------------------
# Independent reference: per-window weighted statistics with explicit loops.


def direct_window(kernel_size: int, sigma: float = 1.5) -> np.ndarray:
    """Reference Gaussian window: 1-D profile centred on kernel_size // 2, normalised, outer product."""
    offsets = np.arange(kernel_size, dtype=np.float64) - (kernel_size // 2)
    g = np.exp(-(offsets**2) / (2 * sigma**2))
    g /= g.sum()
    return g[:, None] * g[None, :]


def direct_ssim(a: np.ndarray, b: np.ndarray, kernel_size: int, stride: int) -> float:
    """SSIM of two [C, H, W] images: zero padding (k - 1) // 2, strided windows, weighted mean/var/cov per window."""
    pad = (kernel_size - 1) // 2
    w = direct_window(kernel_size)
    c1, c2 = 0.01**2, 0.03**2
    channels, height, width = a.shape
    ap = np.zeros((channels, height + 2 * pad, width + 2 * pad))
    bp = np.zeros_like(ap)
    ap[:, pad : pad + height, pad : pad + width] = a
    bp[:, pad : pad + height, pad : pad + width] = b
    values = []
    for c in range(channels):
        row = 0
        while row + kernel_size <= height + 2 * pad:
            col = 0
            while col + kernel_size <= width + 2 * pad:
                x = ap[c, row : row + kernel_size, col : col + kernel_size]
                y = bp[c, row : row + kernel_size, col : col + kernel_size]
                mx = float((w * x).sum())
                my = float((w * y).sum())
                vx = float((w * (x - mx) ** 2).sum())
                vy = float((w * (y - my) ** 2).sum())
                cov = float((w * (x - mx) * (y - my)).sum())
                values.append(((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
                col += stride
            row += stride
    return float(np.mean(values))


def direct_s3im(pred, target, index_lists, patch_height, patch_width, kernel_size, stride) -> float:
    """1 - direct SSIM on the reference virtual image built from explicit index lists (row-major fill)."""
    idx = np.concatenate([np.asarray(i) for i in index_lists])
    repeat = len(index_lists)
    p = np.asarray(pred, dtype=np.float64)[idx]  # [n R, C]
    t = np.asarray(target, dtype=np.float64)[idx]
    channels = p.shape[1]
    p_img = p.T.reshape(channels, patch_height, patch_width * repeat)
    t_img = t.T.reshape(channels, patch_height, patch_width * repeat)
    return 1.0 - direct_ssim(p_img, t_img, kernel_size, stride)


def _pair(n: int, seed: int, dtype=torch.float64, channels: int = 3):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(n, channels, generator=g, dtype=dtype)
    pred = (target + 0.15 * torch.randn(n, channels, generator=g, dtype=dtype)).clamp(0, 1)
    return pred, target


# ----------------------------------------------------------------------------------------------------------------


def test_window_matches_reference_convention():
    w = gaussian_window(4, dtype=torch.float64)
    np.testing.assert_allclose(w.numpy(), direct_window(4), rtol=0, atol=1e-15)
    assert float(w.sum()) == pytest.approx(1.0, abs=1e-12)
    # Even kernel: centre is k // 2 = 2, so the window is asymmetric (offsets -2..+1), peaked at index 2.
    profile = w.sum(dim=0)
    assert int(profile.argmax()) == 2
    assert not torch.allclose(profile, profile.flip(0))


def test_ssim_matches_direct_on_random_images():
    g = torch.Generator().manual_seed(3)
    a = torch.rand(1, 3, 12, 20, generator=g, dtype=torch.float64)
    b = (a + 0.2 * torch.randn(a.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    for kernel_size, stride in [(4, 4), (3, 1), (5, 2), (11, 1)]:
        ours = float(ssim(a, b, kernel_size=kernel_size, stride=stride))
        ref = direct_ssim(a[0].numpy(), b[0].numpy(), kernel_size, stride)
        assert ours == pytest.approx(ref, rel=0, abs=1e-12), (kernel_size, stride)


def test_repeat_one_equals_direct_ssim():
    pred, target = _pair(64 * 64, seed=0)
    loss = s3im_loss(pred, target, repeat_time=1)
    ref = direct_s3im(pred.numpy(), target.numpy(), [np.arange(4096)], 64, 64, 4, 4)
    assert float(loss) == pytest.approx(ref, rel=0, abs=1e-12)
    assert 0.0 < float(loss) < 2.0


def test_repeat_ten_with_generator_equals_direct_on_same_permutations():
    n, repeat = 64 * 64, 10
    pred, target = _pair(n, seed=1)
    loss = s3im_loss(pred, target, repeat_time=repeat, generator=torch.Generator().manual_seed(1234))

    # The documented contract: identity first, then repeat - 1 successive randperm(n, generator=g) calls.
    g = torch.Generator().manual_seed(1234)
    lists = [np.arange(n)] + [torch.randperm(n, generator=g).numpy() for _ in range(repeat - 1)]
    ref = direct_s3im(pred.numpy(), target.numpy(), lists, 64, 64, 4, 4)
    assert float(loss) == pytest.approx(ref, rel=0, abs=1e-12)

    # Same seed -> same value; the module with the same generator agrees with the functional form.
    again = s3im_loss(pred, target, repeat_time=repeat, generator=torch.Generator().manual_seed(1234))
    assert float(again) == float(loss)
    module = S3IM(repeat_time=repeat)
    assert float(module(pred, target, generator=torch.Generator().manual_seed(1234))) == pytest.approx(
        float(loss), abs=1e-12
    )
    # A different seed gives a different (stochastic) value.
    other = s3im_loss(pred, target, repeat_time=repeat, generator=torch.Generator().manual_seed(99))
    assert float(other) != float(loss)


def test_small_non_square_configuration_matches_direct():
    # 6x10 patch, kernel 3, stride 2, repeat 3: exercises a non-square patch and another padding/stride combination.
    n = 60
    pred, target = _pair(n, seed=5)
    loss = s3im_loss(
        pred, target, kernel_size=3, stride=2, repeat_time=3, patch_height=6, patch_width=10,
        generator=torch.Generator().manual_seed(7),
    )
    g = torch.Generator().manual_seed(7)
    lists = [np.arange(n)] + [torch.randperm(n, generator=g).numpy() for _ in range(2)]
    ref = direct_s3im(pred.numpy(), target.numpy(), lists, 6, 10, 3, 2)
    assert float(loss) == pytest.approx(ref, rel=0, abs=1e-12)


def test_first_block_is_identity_order():
    n, repeat = 64 * 64, 10
    idx = s3im_indices(n, repeat, generator=torch.Generator().manual_seed(0))
    assert idx.shape == (n * repeat,)
    assert torch.equal(idx[:n], torch.arange(n))
    for r in range(1, repeat):  # every other block is a permutation (and, here, not the identity)
        block = idx[r * n : (r + 1) * n]
        assert torch.equal(block.sort().values, torch.arange(n))
        assert not torch.equal(block, torch.arange(n))

    # Constructed inputs: colour channel c of ray i holds i + c * n, so the virtual image reveals which ray sits where.
    values = torch.arange(n, dtype=torch.float64)[:, None] + n * torch.arange(3, dtype=torch.float64)[None, :]
    patch = s3im_virtual_patch(values, idx, 64, 64)
    assert patch.shape == (1, 3, 64, 64 * repeat)
    for c in range(3):
        flat = patch[0, c].reshape(-1)
        assert torch.equal(flat[:n], torch.arange(n, dtype=torch.float64) + c * n)  # identity block, row-major
        assert torch.equal(flat, values[idx, c])


def test_first_block_unshuffled_through_the_loss():
    # With repeat_time=2 the loss equals the direct computation with arange(n) as the first block, and the
    # alternative (permutation first, identity second) gives a measurably different value, so order is observable.
    n = 8 * 8
    pred, target = _pair(n, seed=11)
    g = torch.Generator().manual_seed(5)
    loss = float(s3im_loss(pred, target, repeat_time=2, patch_height=8, patch_width=8, generator=g))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(5)).numpy()
    identity_first = direct_s3im(pred.numpy(), target.numpy(), [np.arange(n), perm], 8, 8, 4, 4)
    shuffled_first = direct_s3im(pred.numpy(), target.numpy(), [perm, np.arange(n)], 8, 8, 4, 4)
    assert loss == pytest.approx(identity_first, abs=1e-12)
    assert abs(identity_first - shuffled_first) > 1e-6


def test_zero_for_identical_inputs_positive_otherwise_and_bounded():
    n = 64 * 64
    pred, target = _pair(n, seed=2, dtype=torch.float32)
    assert float(s3im_loss(target, target.clone())) == pytest.approx(0.0, abs=1e-6)
    loss = float(s3im_loss(pred, target))
    assert 0.0 < loss <= 2.0
    # Anti-correlated colours push SSIM below 0, i.e. the loss above 1, but never above 2.
    anti = float(s3im_loss(1.0 - target, target))
    assert 1.0 < anti <= 2.0 + 1e-6
    # Constant images of very different values: SSIM near 0 (luminance term), loss near 1, within bounds.
    const = float(s3im_loss(torch.zeros(n, 3), torch.ones(n, 3)))
    assert 0.0 <= const <= 2.0


def test_gradients_flow_to_pred_only_where_windows_reach():
    n = 64 * 64
    pred, target = _pair(n, seed=4, dtype=torch.float32)
    pred.requires_grad_(True)
    loss = S3IM()(pred, target)
    loss.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()
    assert pred.grad.abs().sum() > 0

    # With repeat_time=1 the virtual image is the 64x64 patch itself; with kernel 4, stride 4, padding 1 the windows
    # start at -1, 3, ..., 59 and never reach row/column 63 -- those 127 rays get no gradient (reference behaviour).
    pred1 = pred.detach().clone().requires_grad_(True)
    s3im_loss(pred1, target, repeat_time=1).backward()
    grad = pred1.grad.abs().sum(dim=1).reshape(64, 64)
    assert (grad[63, :] == 0).all() and (grad[:, 63] == 0).all()
    assert (grad[:63, :63] > 0).all()


def test_wrong_batch_size_raises_clear_error():
    with pytest.raises(ValueError, match=r"64 \* 64 = 4096 rays.*got 4000.*patch_height=50, patch_width=80"):
        s3im_loss(torch.rand(4000, 3), torch.rand(4000, 3))
    with pytest.raises(ValueError, match="4096"):
        S3IM()(torch.rand(1024, 3), torch.rand(1024, 3))
    with pytest.raises(ValueError, match="same shape"):
        s3im_loss(torch.rand(4096, 3), torch.rand(4096, 4))
    with pytest.raises(ValueError, match="repeat_time"):
        S3IM(repeat_time=0)
    # Other sizes work when the patch is configured to match.
    loss = s3im_loss(torch.rand(1024, 3), torch.rand(1024, 3), patch_height=32, patch_width=32)
    assert loss.shape == ()


def test_gradcheck_float64_tiny():
    n = 8 * 8
    pred, target = _pair(n, seed=8)
    pred.requires_grad_(True)

    def fn(p):
        g = torch.Generator().manual_seed(21)  # fresh each call so every evaluation uses the same permutation
        return s3im_loss(p, target, kernel_size=4, stride=4, repeat_time=2, patch_height=8, patch_width=8, generator=g)

    assert torch.autograd.gradcheck(fn, (pred,), eps=1e-6, atol=1e-7)


def test_module_config_and_state_dict():
    cfg = S3IMConfig()
    assert cfg.weight == 0.0 and not cfg.enabled
    assert [f.name for f in fields(cfg)] == ["weight", "kernel_size", "stride", "repeat_time", "patch_height",
                                             "patch_width"]
    module = S3IMConfig(weight=1.0, repeat_time=3, patch_height=16, patch_width=16).setup()
    assert isinstance(module, S3IM)
    assert (module.kernel_size, module.stride, module.repeat_time, module.num_rays) == (4, 4, 3, 256)
    assert module.state_dict() == {}  # the cached window is a non-persistent buffer: checkpoints are unchanged
    assert "repeat_time=3" in repr(module)

    pred, target = _pair(256, seed=9, dtype=torch.float32)
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    a = module(pred, target, generator=gen())
    b = s3im_loss(pred, target, repeat_time=3, patch_height=16, patch_width=16, generator=gen())
    assert float(a) == pytest.approx(float(b), abs=1e-7)
    # float64 inputs get an exact float64 window rather than the cached float32 one.
    c = module(pred.double(), target.double(), generator=gen())
    assert c.dtype == torch.float64
    assert math.isclose(float(c), float(b), abs_tol=1e-5)


def test_autocast_runs_in_float32():
    pred, target = _pair(64 * 64, seed=12, dtype=torch.float32)
    ref = float(s3im_loss(pred, target, generator=torch.Generator().manual_seed(0)))
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        loss = s3im_loss(pred, target, generator=torch.Generator().manual_seed(0))
    assert loss.dtype == torch.float32
    assert float(loss) == pytest.approx(ref, abs=1e-6)
