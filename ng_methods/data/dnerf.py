"""``ng-dnerf-data``: nerfstudio's D-NeRF dataparser plus input validation.

The format is the Blender one (:mod:`ng_methods.data.blender`) with one extra number per frame: ``time``, the
moment the frame was captured, normalised to [0, 1]. The outputs come from nerfstudio's
:class:`nerfstudio.data.dataparsers.dnerf_dataparser.DNeRF`: cameras carry ``times`` (``[N, 1]``), the parser says
``includes_time = True`` (so the viewer shows a time slider), the scene box is [-1.5, 1.5]^3.

What this adds, before delegating (every problem raises
:class:`~ng_methods.data.validation.DataValidationError` naming ``transforms_{split}.json``):

- all the Blender checks (missing/invalid JSON, ``frames``, ``camera_angle_x``, 4x4 rigid finite matrices, image
  files present, decodable and of one size);
- every frame has a ``time`` that is a finite number in [0, 1] (nerfstudio would raise a bare ``KeyError``);
- ``alpha_color`` is typed ``Optional`` so ``None`` (RGBA images passed through, composited by the model over its
  own background) can be given on the command line as well as in code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Type

from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
from nerfstudio.data.dataparsers.dnerf_dataparser import DNeRF, DNeRFDataParserConfig

from ng_methods.data.blender import validate_blender_split
from ng_methods.data.validation import DataValidationError, format_list

__all__ = ["NgDNeRFDataParserConfig", "NgDNeRFDataParser", "validate_dnerf_split"]


def validate_dnerf_split(data: Path, split: str) -> List[float]:
    """Validate ``<data>/transforms_{split}.json`` as a D-NeRF split and return the frame times.

    Raises:
        DataValidationError: naming the transforms file, the frame and what is wrong.
    """
    meta = validate_blender_split(Path(data), split)
    path = Path(data) / f"transforms_{split}.json"
    times: List[float] = []
    missing = [i for i, frame in enumerate(meta["frames"]) if "time" not in frame]
    if missing:
        names = [f"{i} ({meta['frames'][i]['file_path']})" for i in missing]
        raise DataValidationError(
            f"{len(missing)} of {len(meta['frames'])} frames in {path} have no 'time' (the capture time in [0, 1] "
            f"that a D-NeRF scene gives every frame): frame {format_list(names)}. For a static scene use "
            "ng-blender-data"
        )
    for i, frame in enumerate(meta["frames"]):
        value = frame["time"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise DataValidationError(
                f"'time' of frame {i} ({frame['file_path']}) in {path} must be a finite number, got {value!r}"
            )
        if not 0.0 <= value <= 1.0:
            raise DataValidationError(
                f"'time' of frame {i} ({frame['file_path']}) in {path} is {value}, outside [0, 1]; D-NeRF times "
                "are normalised to [0, 1] (divide frame indices by the number of frames minus one)"
            )
        times.append(float(value))
    return times


@dataclass
class NgDNeRFDataParserConfig(DNeRFDataParserConfig):
    """nerfstudio's D-NeRF dataparser config (same fields), validated at setup; ``alpha_color`` may be None."""

    _target: Type = field(default_factory=lambda: NgDNeRFDataParser)
    """target class to instantiate"""
    alpha_color: Optional[str] = "white"  # type: ignore[assignment]
    """Colour the RGBA images are composited over ("white", "black", ...); None keeps RGBA for the model."""


class NgDNeRFDataParser(DNeRF):
    """nerfstudio's ``DNeRF`` dataparser; validates ``transforms_{split}.json`` and its images, then delegates.

    (Not re-decorated with ``@dataclass``: that would replace ``DNeRF.__init__``.)
    """

    config: NgDNeRFDataParserConfig
    includes_time: bool = True

    def _generate_dataparser_outputs(self, split: str = "train") -> DataparserOutputs:  # type: ignore[override]
        validate_dnerf_split(self.data, split)
        return super()._generate_dataparser_outputs(split)
