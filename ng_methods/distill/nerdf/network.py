"""The NeRDF student network: one MLP forward per ray (official ``NewNeRF``, ``utils/model_lib.py:119-150``).

``depth`` linear layers of ``width`` with ReLU; every layer except the first and those right after an input
concatenation adds its input back (residual). After layer i for i in ``skips`` the raw input is concatenated to the
hidden state, so layer i + 1 takes ``width + input_dim`` numbers. The official skips are ``[4, 8, ..., 28]``
(``nerdf_llff.py:195``): for depth 8 only layer 4 concatenates; the Lego preset (depth 32) concatenates after
layers 4, 8, ..., 28. A final linear layer gives ``terms x channels`` numbers (24 x 12 = 288), read term-major.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
from jaxtyping import Float
from torch import Tensor, nn

OFFICIAL_SKIPS: Tuple[int, ...] = tuple(4 * i for i in range(1, 8))
"""``skips = [4 * i for i in range(8) if i != 0]``."""


class NeRDFNetwork(nn.Module):
    """Residual MLP with input concatenation (``model_gs_type = res_cat``).

    Args:
        input_dim: size of the per-ray input (1135 for 16 points).
        depth: linear layers before the output layer (8 for LLFF, 32 for the Lego config).
        width: hidden width (384 for LLFF, 512 for the Lego config).
        num_terms: basis terms (24).
        num_channels: channels per term (12; the dft mode reads 0-3).
        skips: layers after which the input is concatenated.
    """

    def __init__(self, input_dim: int, depth: int, width: int, num_terms: int, num_channels: int,
                 skips: Sequence[int] = OFFICIAL_SKIPS) -> None:
        super().__init__()
        self.input_dim, self.num_terms, self.num_channels = input_dim, num_terms, num_channels
        self.skips = tuple(s for s in skips if s < depth - 1)
        self.plain_layers = {0, *(s + 1 for s in self.skips)}
        sizes = [input_dim] + [width + input_dim if i in self.plain_layers - {0} else width for i in range(1, depth)]
        self.layers = nn.ModuleList(nn.Linear(size, width) for size in sizes)
        self.output = nn.Linear(width, num_terms * num_channels)

    def forward(self, inputs: Float[Tensor, "rays input_dim"]) -> Float[Tensor, "rays terms channels"]:
        """Basis coefficients per ray."""
        hidden = inputs
        for index, layer in enumerate(self.layers):
            hidden = layer(hidden) if index in self.plain_layers else layer(hidden) + hidden
            hidden = torch.relu(hidden)
            if index in self.skips:
                hidden = torch.cat([inputs, hidden], dim=-1)
        return self.output(hidden).view(inputs.shape[0], self.num_terms, self.num_channels)
