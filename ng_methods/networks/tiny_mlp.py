"""Bias-free ReLU MLPs with tiny-cuda-nn's ``FullyFusedMLP`` structure (the spec for the fused kernels)."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn


class TinyMLP(nn.Module):
    """``in_dim -> [hidden_dim] * hidden_layers -> out_dim`` with ReLU between layers and no biases.

    tiny-cuda-nn's fully fused MLP has no bias terms; keeping the same structure means a checkpoint's weights mean
    the same thing on every backend. The output layer has no activation.

    Example:
        >>> mlp = TinyMLP(32, 16, hidden_dim=64, hidden_layers=1)
        >>> mlp(torch.zeros(5, 32)).shape
        torch.Size([5, 16])
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 64, hidden_layers: int = 1) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * hidden_layers + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(dims[:-1], dims[1:]))
        for layer in self.layers:
            # He-uniform keeps ReLU activations from shrinking layer to layer without biases.
            nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")

    @property
    def in_dim(self) -> int:
        return self.layers[0].in_features

    @property
    def out_dim(self) -> int:
        return self.layers[-1].out_features

    def forward(self, x: Float[Tensor, "*batch in_dim"]) -> Float[Tensor, "*batch out_dim"]:
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index < len(self.layers) - 1:
                x = torch.relu(x)
        return x
