"""The MobileR2L student network: a 1x1-convolution residual light field with a super-resolution tail.

Follows ``model/R2L.py`` of snap-research/MobileR2L @4f8929e (``R2L``, ``ResnetBlock``) with the released defaults of
``main.py`` (``netdepth=60``, ``netwidth=256``, ``num_sr_blocks=3``, ``num_conv_layers=2``,
``sr_kernel=(64, 64, 16)``, ``activation_fn='gelu'``):

- head: ``Conv1x1(in -> 256)`` + activation (R2L.py:119-121);
- body: ``(D - 2) // 2`` residual blocks (29 for D = 60), each ``Conv1x1, BN, act, Conv1x1, BN`` with an identity
  skip (R2L.py:53-88), plus a global skip around the whole body (R2L.py:156);
- tail: ``num_sr_blocks - 1`` = 2 stages of ``ConvTranspose(k4, s2, p1)`` + 2 residual blocks at 64/64 channels
  (R2L.py:133-136), then a final ``ConvTranspose`` to 16 channels (``k3 s3 p0`` for Colmap/LLFF: x12 in total;
  ``k4 s2 p1`` for Blender: x8; R2L.py:140-147), 2 residual blocks, ``Conv1x1(16 -> 3)`` and a sigmoid
  (R2L.py:148-149).

The network is a pure image-to-image function (no nerfstudio import), so it exports to ONNX as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Tuple

from jaxtyping import Float
from torch import Tensor, nn

__all__ = ["ActivationName", "MobileR2LNetwork", "NetworkSpec", "ResidualBlock", "SR_FACTORS", "embedding_channels"]

ActivationName = Literal["gelu", "relu"]
# Final transposed convolution (kernel, stride, padding) per scene kind: R2L.py:140-145.
_FINAL_UPSAMPLER = {"forward_facing": (3, 3, 0), "sphere": (4, 2, 1)}
# Total super-resolution factor per scene kind: 2 * 2 * 3 (LLFF) or 2 * 2 * 2 (Blender).
SR_FACTORS = {"forward_facing": 12, "sphere": 8}


def embedding_channels(samples_per_ray: int, frequencies: int) -> int:
    """Input channels: 3 coordinates x ``samples_per_ray`` points x (sin, cos per frequency + the raw value).

    engine.py:79 (``3 * n_sample_per_ray * embed_dim``) with rays_utils.py:119 (``embed_dim = 2L + 1``):
    8 points and 6 frequencies give 3 * 8 * 13 = 312.
    """
    return 3 * samples_per_ray * (2 * frequencies + 1)


def make_activation(name: ActivationName) -> nn.Module:
    """R2L.py:94-103 (``get_activation``); GELU is the exact (erf) one, as ``nn.GELU()``."""
    if name == "gelu":
        return nn.GELU()
    if name == "relu":
        return nn.ReLU()
    raise ValueError(f"Unknown activation {name!r}; expected 'gelu' or 'relu'")


class ResidualBlock(nn.Module):
    """``x + BN(Conv1x1(act(BN(Conv1x1(x)))))`` (R2L.py:53-88; BatchNorm momentum 0.1, biases on)."""

    def __init__(self, channels: int, activation: ActivationName):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=1),
            nn.BatchNorm2d(channels, momentum=0.1),
            make_activation(activation),
            nn.Conv2d(channels, channels, kernel_size=1),
            nn.BatchNorm2d(channels, momentum=0.1),
        )

    def forward(self, x: Float[Tensor, "b c h w"]) -> Float[Tensor, "b c h w"]:
        return x + self.conv_block(x)


@dataclass(frozen=True)
class NetworkSpec:
    """Hyper-parameters of the student network (official defaults: main.py:70-78)."""

    input_channels: int = 312
    depth: int = 60
    width: int = 256
    sr_channels: Tuple[int, int, int] = (64, 64, 16)
    convs_per_sr_stage: int = 2
    scene_kind: Literal["forward_facing", "sphere"] = "forward_facing"
    activation: ActivationName = "gelu"

    @property
    def body_blocks(self) -> int:
        """``(D - 2) // 2`` residual blocks in the body (R2L.py:123): 29 for D = 60."""
        return (self.depth - 2) // 2

    @property
    def sr_factor(self) -> int:
        """Output size / input size: 12 for forward-facing scenes, 8 for 360-degree (Blender) scenes."""
        return SR_FACTORS[self.scene_kind]


class MobileR2LNetwork(nn.Module):
    """Embedded ray image ``[B, C_in, h, w]`` -> RGB image ``[B, 3, h * f, w * f]`` in [0, 1], f = ``spec.sr_factor``.

    Example:
        >>> net = MobileR2LNetwork(NetworkSpec(depth=6, scene_kind="sphere"))
        >>> net(torch.rand(2, 312, 5, 4)).shape
        torch.Size([2, 3, 40, 32])
    """

    def __init__(self, spec: NetworkSpec):
        super().__init__()
        if spec.depth < 2 or spec.depth % 2:
            raise ValueError(f"depth must be an even number >= 2 (2 layers per residual block), got {spec.depth}")
        self.spec = spec
        act = spec.activation
        self.head = nn.Sequential(nn.Conv2d(spec.input_channels, spec.width, 1), make_activation(act))
        self.body = nn.Sequential(*[ResidualBlock(spec.width, act) for _ in range(spec.body_blocks)])
        self.tail = nn.Sequential(*self._tail_layers())

    def _tail_layers(self) -> list:
        spec, act = self.spec, self.spec.activation
        first, second, last = spec.sr_channels
        layers: list = []
        for index, channels in enumerate((first, second)):  # R2L.py:133-136 (in_dim: W, then kernels[i])
            in_channels = spec.width if index == 0 else channels
            layers.append(nn.ConvTranspose2d(in_channels, channels, 4, stride=2, padding=1))
            layers.extend(ResidualBlock(channels, act) for _ in range(spec.convs_per_sr_stage))
        kernel, stride, padding = _FINAL_UPSAMPLER[spec.scene_kind]
        layers.append(nn.ConvTranspose2d(second, last, kernel, stride=stride, padding=padding))
        layers.extend(ResidualBlock(last, act) for _ in range(spec.convs_per_sr_stage))
        layers.extend([nn.Conv2d(last, 3, 1), nn.Sigmoid()])
        return layers

    def forward(self, embedded: Float[Tensor, "b c h w"]) -> Float[Tensor, "b 3 H W"]:
        """``embedded``: ``[B, input_channels, h, w]``; returns ``[B, 3, h * sr_factor, w * sr_factor]``."""
        x = self.head(embedded)
        x = self.body(x) + x  # global skip (R2L.py:156)
        return self.tail(x)


def replace_activations(network: nn.Module, activation: ActivationName) -> nn.Module:
    """Swap every GELU/ReLU module of ``network`` (in place) for ``activation``; weights are untouched.

    The official export re-builds the network with ReLU in place of GELU before writing ONNX, then renames the
    ``Relu`` nodes to SnapML's ``GeluSnap`` (engine.py:476-502, lens/replace_gelu.py:92-94).
    """
    for name, child in network.named_children():
        if isinstance(child, (nn.GELU, nn.ReLU)):
            setattr(network, name, make_activation(activation))
        else:
            replace_activations(child, activation)
    return network


def count_residual_blocks(module: nn.Module) -> int:
    """Number of :class:`ResidualBlock` modules under ``module``."""
    return sum(isinstance(m, ResidualBlock) for m in module.modules())

