"""Splatfacto-W colour model: per-image appearance embedding + per-Gaussian features -> MLP -> SH coefficients.

Following the official code (KevinXu02/splatfacto-w, ``SplatfactoWField``): the input is
``[embedding (48) || feature (72)]``, a body of two 256-wide ReLU layers and two linear heads, ``base`` (the DC
coefficient, 3 values) and ``rest`` (the higher-order coefficients, zero-initialised so that training starts
view-independent). The heads are separate modules because the official recipe gives ``rest`` 1/20 of the
learning rate.
"""

from __future__ import annotations

from typing import Optional

import torch
from jaxtyping import Float
from torch import Tensor, nn

from ng_methods.splat.sh import num_sh_bases


class SHHeadMLP(nn.Module):
    """A ReLU MLP body with a DC head and a zero-initialised higher-order head, producing SH coefficients."""

    def __init__(self, in_dim: int, hidden_dim: int, num_layers: int, sh_degree: int):
        super().__init__()
        layers = []
        for i in range(num_layers):
            layers += [nn.Linear(in_dim if i == 0 else hidden_dim, hidden_dim), nn.ReLU()]
        self.encoder = nn.Sequential(*layers)
        self.num_coeffs = num_sh_bases(sh_degree)
        self.sh_base_head = nn.Linear(hidden_dim, 3)
        self.sh_rest_head = nn.Linear(hidden_dim, (self.num_coeffs - 1) * 3)
        # Zero-initialised higher orders: the initial colour does not depend on the viewing direction.
        nn.init.zeros_(self.sh_rest_head.weight)
        nn.init.zeros_(self.sh_rest_head.bias)

    def forward(self, x: Float[Tensor, "*batch in_dim"]) -> Float[Tensor, "*batch K 3"]:
        hidden = self.encoder(x)
        base = self.sh_base_head(hidden)
        rest = self.sh_rest_head(hidden)
        return torch.cat([base, rest], dim=-1).view(*x.shape[:-1], self.num_coeffs, 3)


class AppearanceColorModel(nn.Module):
    """Colour of every Gaussian for one appearance embedding, as SH coefficients ``[N, (sh_degree+1)^2, 3]``."""

    def __init__(self, embed_dim: int, feature_dim: int, hidden_dim: int = 256, num_layers: int = 2,
                 sh_degree: int = 3):
        super().__init__()
        self.mlp = SHHeadMLP(embed_dim + feature_dim, hidden_dim, num_layers, sh_degree)

    def forward(
        self, embedding: Float[Tensor, "E"], features: Float[Tensor, "N F"]
    ) -> Float[Tensor, "N K 3"]:
        repeated = embedding[None, :].expand(features.shape[0], -1)
        return self.mlp(torch.cat([repeated, features], dim=-1))


def blend_embeddings(
    embeddings: Float[Tensor, "M E"], index_a: int, index_b: Optional[int], weight_b: float
) -> Float[Tensor, "E"]:
    """Linear interpolation ``(1 - w) * e_a + w * e_b``; index -1 (or any negative) means the mean embedding.

    ``index_b=None`` (or ``weight_b=0``) returns ``e_a``. Used by the viewer controls and the default rendering
    embedding of cameras that are not training images.
    """

    def pick(index: int) -> Tensor:
        if index < 0:
            return embeddings.mean(dim=0)
        if index >= embeddings.shape[0]:
            raise IndexError(f"appearance index {index} out of range for {embeddings.shape[0]} training images")
        return embeddings[index]

    first = pick(index_a)
    if index_b is None or weight_b == 0.0:
        return first
    return torch.lerp(first, pick(index_b), float(weight_b))
