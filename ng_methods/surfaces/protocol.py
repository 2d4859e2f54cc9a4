"""The interface a model needs for mesh extraction: an SDF and (optionally) surface colours.

Models are duck-typed: anything with these methods works (``NeuS2Model`` in ``ng_methods/neus2``); nothing here
imports a model class.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from jaxtyping import Float
from torch import Tensor


@runtime_checkable
class SdfModel(Protocol):
    """A model whose geometry is a signed distance field (negative inside), in scene coordinates."""

    def sdf(self, positions: Float[Tensor, "n 3"]) -> Float[Tensor, "n 1"]:
        """Signed distance at ``positions`` (scene coordinates); negative inside the surface."""
        ...


@runtime_checkable
class ColoredSdfModel(SdfModel, Protocol):
    """An SDF model that can also colour its surface."""

    def surface_colors(self, positions: Float[Tensor, "n 3"]) -> Float[Tensor, "n 3"]:
        """RGB in [0, 1] of the surface at ``positions`` (scene coordinates)."""
        ...
