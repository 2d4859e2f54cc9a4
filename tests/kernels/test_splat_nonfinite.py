"""The reference rasteriser on non-finite Gaussians: what ``rasterize``'s docstring promises (culled, invisible, or
NaN only in the pixels the Gaussian covers), never touching other pixels."""

from __future__ import annotations

import pytest
import torch

from ng_methods.kernels.splat import rasterize

N, WIDTH, HEIGHT = 40, 64, 48
BAD = 3


def scene():
    generator = torch.Generator().manual_seed(0)
    means = (torch.rand(N, 3, generator=generator) - 0.5) * 2
    means[:, 2] += 4
    quats = torch.randn(N, 4, generator=generator)
    scales = torch.rand(N, 3, generator=generator) * 0.2 + 0.05
    opacities = torch.rand(N, generator=generator) * 0.8
    colors = torch.rand(N, 3, generator=generator)
    return means, quats, scales, opacities, colors


def render(means, quats, scales, opacities, colors):
    leaves = [t.clone().requires_grad_() for t in (means, opacities, colors)]
    viewmats = torch.eye(4)[None]
    Ks = torch.tensor([[[50.0, 0.0, 32.0], [0.0, 50.0, 24.0], [0.0, 0.0, 1.0]]])
    image, _, meta = rasterize(leaves[0], quats, scales, leaves[1], leaves[2], viewmats, Ks, WIDTH, HEIGHT,
                               backend="torch")
    image.sum().backward()
    return image.detach(), meta["radii"][0], [leaf.grad for leaf in leaves]


@pytest.mark.parametrize("field, value", [("means", float("nan")), ("means", float("inf")),
                                          ("opacities", float("nan"))])
def test_bad_geometry_or_opacity_is_invisible(field, value):
    means, quats, scales, opacities, colors = scene()
    clean = render(means, quats, scales, opacities.index_fill(0, torch.tensor([BAD]), 0.0), colors)
    if field == "means":
        means[BAD, 2] = value
    else:
        opacities[BAD] = value
    image, radii, grads = render(means, quats, scales, opacities, colors)
    assert torch.equal(image, clean[0])
    others = torch.arange(N) != BAD
    for got, expected in zip(grads, clean[2]):
        torch.testing.assert_close(got[others], expected[others], rtol=1e-5, atol=1e-6)  # float32 sum order
    if field == "means":
        assert radii[BAD] == 0


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_bad_colour_reaches_only_its_pixels(value):
    means, quats, scales, opacities, colors = scene()
    clean_image, clean_radii, _ = render(means, quats, scales, opacities, colors)
    colors[BAD, 0] = value
    image, radii, _ = render(means, quats, scales, opacities, colors)
    broken = ~torch.isfinite(image).all(dim=-1)[0]
    assert broken.any() and torch.equal(radii, clean_radii)
    # Every non-finite pixel lies within the bad Gaussian's footprint (its screen radius around its projection) ...
    ys, xs = torch.nonzero(broken, as_tuple=True)
    centre = means[BAD, :2] / means[BAD, 2] * 50.0 + torch.tensor([32.0, 24.0])
    distance = torch.maximum((xs + 0.5 - centre[0]).abs(), (ys + 0.5 - centre[1]).abs())
    assert (distance <= radii[BAD] + 1).all()
    # ... and every other pixel is as without the bad colour (float32 sum order aside).
    torch.testing.assert_close(image[0][~broken], clean_image[0][~broken], rtol=1e-6, atol=1e-6)
