"""Peer of our strided SSIM (``ng_methods.losses.ssim``), values and gradients, float64 and float32.

pytorch_msssim (installed with nerfstudio, the SSIM our splat model trains with) on the configuration where both
define the same function: stride 1, no padding, odd Gaussian window (sigma 1.5), data range 1, K = (0.01, 0.03).
Ours is not pytorch_msssim elsewhere (zero padding, strides, even windows: the S3IM code's variants, which is not a
package and so has no copy here; ``tests/losses/test_s3im.py`` checks those by hand).
"""

from __future__ import annotations

import importlib.metadata

import pytest
import torch

from ng_methods.losses.ssim import gaussian_window, ssim

MSSSIM_VERSION = importlib.metadata.version("pytorch-msssim")
PEER_MSSSIM = f"pytorch_msssim=={MSSSIM_VERSION}"

TOL = {torch.float64: dict(rtol=1e-12, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-6)}


def images(dtype: torch.dtype, shape=(2, 3, 37, 45)):
    """Two related images in [0, 1] (a smooth pattern, noise, and a noisy copy), sides not multiples of the
    strides so some borders are never covered."""
    gen = torch.Generator().manual_seed(0)
    b, c, h, w = shape
    yy, xx = torch.meshgrid(torch.linspace(0, 3, h), torch.linspace(0, 4, w), indexing="ij")
    base = 0.5 + 0.3 * torch.sin(xx + 2 * yy)[None, None] + 0.1 * torch.rand(shape, generator=gen)
    other = base + 0.08 * torch.randn(shape, generator=gen)
    return base.clamp(0, 1).to(dtype).requires_grad_(), other.clamp(0, 1).to(dtype).requires_grad_()


def value_and_grads(fn, a, b):
    a, b = a.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
    out = fn(a, b)
    grad_a, grad_b = torch.autograd.grad(out.sum(), (a, b))
    return out.detach(), grad_a, grad_b


def assert_all_close(ours, theirs, **tol):
    for name, x, y in zip(("value", "grad img1", "grad img2"), ours, theirs):
        torch.testing.assert_close(x, y, **tol, msg=lambda m, name=name: f"{name}: {m}")


# ------------------------------------------------------------------------------------------------ pytorch_msssim
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("win_size", [11, 7], ids=lambda k: f"{PEER_MSSSIM}-win{k}")
def test_matches_pytorch_msssim_on_the_shared_configuration(dtype, win_size):
    """Peer: pytorch_msssim 1.0.0 (version in the test id) ``ssim(X, Y, data_range=1, win_size, win_sigma=1.5,
    K=(0.01, 0.03))`` against ours with ``stride=1, padding=0``: per-channel valid-window SSIM, mean over all."""
    from pytorch_msssim import ssim as msssim

    a, b = images(dtype)
    profile = gaussian_window(win_size, dtype=torch.float64).sum(dim=0)  # the 1-D profile our window is built from

    def peer(x, y, win=None):
        return msssim(x, y, data_range=1.0, win_size=win_size, win_sigma=1.5, win=win, K=(0.01, 0.03))

    def ours(x, y, window=None):
        return ssim(x, y, kernel_size=win_size, stride=1, padding=0, window=window)

    if dtype == torch.float64:  # same float64 window on both sides (pytorch_msssim builds its own in float32)
        win = profile.reshape(1, 1, 1, -1).repeat(3, 1, 1, 1)
        theirs = value_and_grads(lambda x, y: peer(x, y, win), a, b)
        mine = value_and_grads(lambda x, y: ours(x, y, torch.outer(profile, profile)), a, b)
        assert_all_close(mine, theirs, **TOL[dtype])
    # Each with its own window: float32 tolerances in both dtypes (pytorch_msssim's window is float32).
    assert_all_close(value_and_grads(ours, a, b), value_and_grads(peer, a, b), **TOL[torch.float32])
