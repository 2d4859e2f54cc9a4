"""C3DGS's learnable volume mask: a binary keep/drop decision per Gaussian trained with a straight-through estimator.

Forward value ``M = 1[sigmoid(m) > threshold]``; gradient ``dM/dm = sigmoid'(m)`` (the estimator
``M = sg(1[sigmoid(m) > t] - sigmoid(m)) + sigmoid(m)``). The mask multiplies opacity and scale, so a masked
Gaussian neither occludes nor colours anything, and the mask loss ``lambda * mean(sigmoid(m))`` pushes towards
fewer Gaussians. Masked Gaussians are removed from the model at pruning time (see ``C3DGSModel``).
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

INITIAL_MASK_LOGIT = 1.0
"""The official code initialises every mask parameter to 1 (sigmoid = 0.73)."""


def straight_through_mask(mask_logits: Float[Tensor, "*n"], threshold: float) -> Float[Tensor, "*n"]:
    """Binary mask in the forward pass, the sigmoid's gradient in the backward pass.

    Example:
        >>> m = torch.tensor([-5.0, 0.0, 3.0], requires_grad=True)
        >>> straight_through_mask(m, 0.01)
        tensor([0., 1., 1.], grad_fn=<AddBackward0>)
    """
    soft = torch.sigmoid(mask_logits)
    hard = (soft > threshold).to(soft.dtype)
    return (hard - soft).detach() + soft


def kept_gaussians(mask_logits: Float[Tensor, "*n"], threshold: float) -> Bool[Tensor, "*n"]:
    """The Gaussians the mask keeps (``sigmoid(m) > threshold``); the others are removed at pruning time."""
    return torch.sigmoid(mask_logits) > threshold


def mask_loss(mask_logits: Float[Tensor, "*n"], weight: float) -> Float[Tensor, ""]:
    """``weight * mean(sigmoid(m))``: the pressure towards masking Gaussians out."""
    if mask_logits.numel() == 0:
        return mask_logits.sum()
    return weight * torch.sigmoid(mask_logits).mean()
