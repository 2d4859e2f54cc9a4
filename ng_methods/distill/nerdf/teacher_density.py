"""The teacher's densities along the student's samples, for NeRDF's density constraint.

The official constraint (``nerdf_llff.py:448-457``) compares, per ray, the L2-normalised density profiles of
student and teacher: ``MSE(normalize(sigma_s), normalize(sigma_t).detach())``. Here the teacher is any trained
nerfstudio model; its density comes from ``teacher.model.field.get_density`` on world-space ``RaySamples`` at the
student's sample positions. A teacher without a queryable field (or whose field fails on these samples) gives one
warning and the student trains on the colour term alone.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional

import torch
import torch.nn.functional as F
from jaxtyping import Float
from nerfstudio.cameras.rays import Frustums, RaySamples
from torch import Tensor


def normalized_density_loss(
    student: Float[Tensor, "rays samples"], teacher: Float[Tensor, "rays samples"]
) -> Float[Tensor, ""]:
    """Mean squared difference of the per-ray L2-normalised density profiles (teacher detached)."""
    return F.mse_loss(F.normalize(student, dim=-1), F.normalize(teacher, dim=-1).detach())


class TeacherDensity:
    """Queries a frozen teacher's density field; a plain object so the teacher never enters the student's
    parameters or checkpoint."""

    def __init__(self) -> None:
        self._field: Optional[Any] = None

    @property
    def available(self) -> bool:
        """Whether a teacher field is attached and usable."""
        return self._field is not None

    def attach(self, teacher: Optional[Any]) -> None:
        """Use ``teacher.model.field``; warn once and stay detached when there is none."""
        field = getattr(getattr(teacher, "model", None), "field", None) if teacher is not None else None
        if field is None or not hasattr(field, "get_density"):
            what = "no teacher" if teacher is None else f"the teacher model {type(teacher.model).__name__}"
            warnings.warn(f"NeRDF density constraint disabled: {what} has no queryable density field "
                          "(model.field.get_density); training on the colour loss only.", stacklevel=2)
            self._field = None
            return
        self._field = field

    @torch.no_grad()
    def __call__(
        self, origins: Float[Tensor, "rays 3"], directions: Float[Tensor, "rays 3"],
        distances: Float[Tensor, "rays samples"],
    ) -> Optional[Float[Tensor, "rays samples"]]:
        """Teacher density at ``origins + distances * directions`` (unit directions); None once it failed."""
        if self._field is None:
            return None
        num_rays, num_samples = distances.shape
        shape = (num_rays, num_samples)
        frustums = Frustums(
            origins=origins[:, None].expand(*shape, 3), directions=directions[:, None].expand(*shape, 3),
            starts=distances[..., None], ends=distances[..., None], pixel_area=distances.new_ones(*shape, 1),
        )
        samples = RaySamples(frustums=frustums, camera_indices=torch.zeros(*shape, 1, dtype=torch.long,
                                                                          device=distances.device))
        try:
            density, _ = self._field.get_density(samples)
        except Exception as error:  # any teacher: a failing field must not stop the student's training
            warnings.warn(f"NeRDF density constraint disabled: the teacher field failed on the student's samples "
                          f"({type(error).__name__}: {error}); training on the colour loss only.", stacklevel=2)
            self._field = None
            return None
        return density.reshape(shape).to(distances)
