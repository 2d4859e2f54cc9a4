"""One view of every field PVD distils between: features, pre-activation density and colour on the same samples.

The official networks share one layout by construction (``feature_sigma_color`` = the 1 + 15 outputs that feed the
density activation and the colour head, ``distill_mutual/network.py``), so no projection is needed there. Fields
of other sizes get a learnable linear map from the student's features to the teacher's
(:class:`FeatureProjector`), the nerfstudio mapping of the method.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from jaxtyping import Float
from nerfstudio.cameras.rays import RaySamples
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.field_components.activations import trunc_exp
from nerfstudio.fields.tensorf_field import TensoRFField
from nerfstudio.utils.math import components_from_spherical_harmonics
from torch import Tensor, nn

from ng_methods.ngpc.field import NGPCField

Clamp = Callable[[Tensor], Tensor]


@dataclass
class SampleQuery:
    """A field's distillation view of ``n`` packed samples."""

    features: Optional[Float[Tensor, "n f"]]
    """Intermediate features feeding the density/colour heads (None: the field has none, e.g. Plenoxels)."""
    density_logit: Float[Tensor, "n 1"]
    """Pre-activation density, clamped to PVD's range."""
    density: Float[Tensor, "n 1"]
    """Activated density used for rendering (``trunc_exp`` of the clamped logit, zero outside the scene box)."""
    rgb: Float[Tensor, "n 3"]
    """Per-sample colour in [0, 1]."""


class FieldAdapter:
    """Queries one field on packed ``RaySamples`` (shape ``[n]``) in PVD's terms."""

    feature_dim: Optional[int] = None

    def __init__(self, field: nn.Module) -> None:
        self.field = field

    def query(self, ray_samples: RaySamples, clamp: Clamp) -> SampleQuery:
        raise NotImplementedError

    def density_at(self, positions: Float[Tensor, "n 3"], clamp: Clamp) -> Float[Tensor, "n 1"]:
        """Activated (clamped-logit) density at world positions, for the occupancy grid."""
        raise NotImplementedError


class NGPCAdapter(FieldAdapter):
    """:class:`NGPCField` (and the MLP student on its heads): features = density-MLP outputs, channel 0 the logit.

    As the official ``forward``, the clamped logit also replaces channel 0 of the features the colour head reads.
    """

    def __init__(self, field: NGPCField) -> None:
        super().__init__(field)
        self.feature_dim = field.density_mlp.out_dim

    def query(self, ray_samples: RaySamples, clamp: Clamp) -> SampleQuery:
        field = self.field
        unit, inside = field.normalize_positions(ray_samples.frustums.get_positions())
        raw = field._density_network(unit.clamp(0.0, 1.0).reshape(-1, 3))
        logit = clamp(raw[:, :1])
        features = torch.cat([logit, raw[:, 1:]], dim=-1)
        sh = components_from_spherical_harmonics(field.config.sh_degree, ray_samples.frustums.directions)
        rgb = torch.sigmoid(field.color_mlp(torch.cat([sh.reshape(-1, sh.shape[-1]), features], dim=-1)))
        density = trunc_exp(logit) * inside.reshape(-1, 1).to(logit.dtype)
        return SampleQuery(features=features, density_logit=logit, density=density, rgb=rgb)

    def density_at(self, positions: Float[Tensor, "n 3"], clamp: Clamp) -> Float[Tensor, "n 1"]:
        unit, inside = self.field.normalize_positions(positions)
        logit = clamp(self.field._density_network(unit.clamp(0.0, 1.0).reshape(-1, 3))[:, :1])
        return trunc_exp(logit) * inside.reshape(-1, 1).to(logit.dtype)


class TensoRFAdapter(FieldAdapter):
    """nerfstudio's :class:`TensoRFField` read as the official ``vm`` network.

    Features = ``[density sum, basis(colour factors)]`` (both clamped as official); density = ``trunc_exp`` of the
    clamped sum (official ``vm``), not nerfstudio's ReLU.
    """

    def __init__(self, field: TensoRFField) -> None:
        super().__init__(field)
        self.feature_dim = 1 + field.B.out_features

    def query(self, ray_samples: RaySamples, clamp: Clamp) -> SampleQuery:
        field = self.field
        positions = SceneBox.get_normalized_positions(ray_samples.frustums.get_positions(), field.aabb) * 2 - 1
        logit = clamp(field.density_encoding(positions).sum(dim=-1, keepdim=True))
        color_features = clamp(field.B(field.color_encoding(positions)))
        directions = ray_samples.frustums.directions
        head_in = torch.cat([color_features, directions, field.feature_encoding(color_features),
                             field.direction_encoding(directions)], dim=-1)
        rgb = field.field_output_rgb(field.mlp_head(head_in))
        inside = ((positions >= -1) & (positions <= 1)).all(dim=-1, keepdim=True)
        density = trunc_exp(logit) * inside.to(logit.dtype)
        return SampleQuery(torch.cat([logit, color_features], dim=-1), logit, density, rgb)

    def density_at(self, positions: Float[Tensor, "n 3"], clamp: Clamp) -> Float[Tensor, "n 1"]:
        normalized = SceneBox.get_normalized_positions(positions, self.field.aabb) * 2 - 1
        logit = clamp(self.field.density_encoding(normalized).sum(dim=-1, keepdim=True))
        inside = ((normalized >= -1) & (normalized <= 1)).all(dim=-1, keepdim=True)
        return trunc_exp(logit) * inside.to(logit.dtype)

    def l1_density_factors(self) -> Tensor:
        """The official ``density_loss``: mean |factor| of each density plane and line, summed."""
        encoding = self.field.density_encoding
        return (encoding.plane_coef.abs().mean(dim=(1, 2, 3)).sum()
                + encoding.line_coef.abs().mean(dim=(1, 2, 3)).sum())


def adapter_for(field: nn.Module) -> Optional[FieldAdapter]:
    """The adapter of a field, or None when PVD cannot query it sample by sample."""
    if isinstance(field, NGPCField):
        return NGPCAdapter(field)
    if isinstance(field, TensoRFField):
        return TensoRFAdapter(field)
    return None


def teacher_adapter_or_warn(teacher_model: nn.Module) -> Optional[FieldAdapter]:
    """The teacher field's adapter; one warning and None (RGB-only distillation) if it cannot be queried."""
    adapter = adapter_for(getattr(teacher_model, "field", None))
    if adapter is None:
        warnings.warn(
            f"PVD: the teacher model {type(teacher_model).__name__} has no field PVD can query sample by sample "
            "(supported: NGPC hash/dense-grid fields, TensoRF); distilling rendered colours only (no feature, "
            "density or colour terms, no point-level active learning).", stacklevel=2)
    return adapter


class FeatureProjector(nn.Module):
    """Linear map from the student's features to the teacher's when their sizes differ (identity otherwise)."""

    def __init__(self, student_dim: int, teacher_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(student_dim, teacher_dim) if student_dim != teacher_dim else None

    def forward(self, features: Float[Tensor, "n fs"]) -> Float[Tensor, "n ft"]:
        return features if self.linear is None else self.linear(features)
