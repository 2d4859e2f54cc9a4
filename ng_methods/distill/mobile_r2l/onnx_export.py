"""Export a trained MobileR2L student to ONNX and check the export with onnxruntime.

What is exported (official ``export_onnx``, model/engine.py:460-583, ``save_onnx`` in utils.py:31-51): the student
**network** with a fixed input ``[1, 312, h, w]``: the embedded ray image of one ``(h * f) x (w * f)`` view, f = the
super-resolution factor. Ray generation and point sampling stay on the host: in NDC they depend on the scene's
average-camera frame, and the official export leaves them out for forward-facing scenes too (engine.py:511-515).
``include_embedder=True`` moves the positional embedding into the graph (input: the sampled points
``[1, 3 * n, h, w]``, point-major xyz), which the official code exports as a separate ``Embedder.onnx`` for
360-degree scenes (engine.py:525-548).

SnapML has no GELU: the official export rebuilds the network with ReLU in place of GELU, writes ONNX, and renames
every ``Relu`` node to SnapML's custom ``GeluSnap`` op (engine.py:476-502, lens/replace_gelu.py:79-107).
``snap_gelu=True`` writes that variant too (``<name>_SnapGELU.onnx``); it only runs where ``GeluSnap`` exists
(SnapML / Lens Studio), so onnxruntime checks the plain export only.

Exporter: torch's ``dynamo=True`` exporter (the default since torch 2.9; needs ``onnxscript``) when available,
else the TorchScript exporter (``dynamo=False``, deprecated but present in torch 2.11-2.15; needs only torch).
``onnx`` / ``onnxruntime`` / ``onnxscript`` are optional (``pip install ng-methods[onnx]``) and imported lazily.
"""

from __future__ import annotations

import copy
import importlib
import io
import warnings
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor, nn

from ng_methods.distill.mobile_r2l.network import MobileR2LNetwork, replace_activations
from ng_methods.distill.mobile_r2l.rays import embed_points

__all__ = ["ExportReport", "OnnxExportError", "export_network", "require", "snap_gelu_variant"]

Exporter = Literal["auto", "dynamo", "torchscript"]
DEFAULT_TOLERANCE = 1e-4
"""Largest allowed |onnxruntime - torch| on the [0, 1] RGB output (float32 kernels differ by ~1e-6)."""


class OnnxExportError(RuntimeError):
    """The export failed, or onnxruntime's output differs from PyTorch's by more than the tolerance."""


@dataclass
class ExportReport:
    """What :func:`export_network` wrote and how well onnxruntime reproduced PyTorch."""

    path: Path
    input_shape: tuple
    output_shape: tuple
    exporter: str
    max_abs_difference: Optional[float]
    snap_gelu_path: Optional[Path] = None


def require(module: str, purpose: str):
    """Import an optional dependency or raise one clear ImportError saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"{purpose} needs the '{module}' package, which is not installed: "
                          "pip install 'ng-methods[onnx]' (onnx, onnxruntime, onnxscript)") from error


class _EmbedThenRender(nn.Module):
    """Points ``[B, 3n, h, w]`` -> positional embedding -> network (the embedding inside the ONNX graph)."""

    def __init__(self, network: MobileR2LNetwork, frequencies: int):
        super().__init__()
        self.network, self.frequencies = network, frequencies

    def forward(self, points: Float[Tensor, "b d h w"]) -> Float[Tensor, "b 3 H W"]:
        embedded = embed_points(points.permute(0, 2, 3, 1), self.frequencies)
        return self.network(embedded.permute(0, 3, 1, 2))


def _pick_exporter(exporter: Exporter) -> str:
    if exporter != "auto":
        return exporter
    try:
        importlib.import_module("onnxscript")
        return "dynamo"
    except ImportError:
        return "torchscript"


def _export(module: nn.Module, example: Tensor, path: Path, exporter: str, opset: Optional[int]) -> None:
    kwargs = dict(input_names=["input"], output_names=["output"])
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        if exporter == "dynamo":
            require("onnxscript", "torch's dynamo ONNX exporter")
            torch.onnx.export(module, (example,), str(path), dynamo=True, opset_version=opset, external_data=False,
                              **kwargs)
        else:
            torch.onnx.export(module, (example,), str(path), dynamo=False, opset_version=opset or 17,
                              do_constant_folding=True, **kwargs)


def export_network(network: MobileR2LNetwork, example: Float[Tensor, "1 c h w"], output_path: Path, *,
                   frequencies: int = 6, include_embedder: bool = False, exporter: Exporter = "auto",
                   opset: Optional[int] = None, check: bool = True, tolerance: float = DEFAULT_TOLERANCE,
                   snap_gelu: bool = False) -> ExportReport:
    """Write ``network`` (eval mode, on CPU) as ONNX for inputs shaped like ``example`` and check it.

    ``example`` is the network input (embedded ray image), or with ``include_embedder`` the sampled points.
    With ``check``, onnxruntime runs the file on ``example`` and an :class:`OnnxExportError` is raised when its
    output differs from PyTorch's by more than ``tolerance`` (max abs difference, printed either way).
    """
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    module = copy.deepcopy(network).cpu().eval()
    if include_embedder:
        module = _EmbedThenRender(module, frequencies)
    example = example.detach().cpu().float()
    chosen = _pick_exporter(exporter)
    try:
        _export(module, example, output_path, chosen, opset)
    except ImportError:
        raise
    except Exception as error:  # noqa: BLE001 - the exporters raise many types
        raise OnnxExportError(f"torch.onnx.export ({chosen}) failed writing {output_path}: {error}") from error
    with torch.no_grad():
        expected = module(example)
    difference = max_abs_difference(output_path, example, expected) if check else None
    if difference is not None:
        print(f"onnxruntime vs torch on {output_path.name}: max |difference| = {difference:.3e} "
              f"(tolerance {tolerance:.1e})")
        if not difference <= tolerance:
            raise OnnxExportError(f"{output_path}: onnxruntime output differs from PyTorch by {difference:.3e} "
                                  f"> tolerance {tolerance:.1e}")
    report = ExportReport(output_path, tuple(example.shape), tuple(expected.shape), chosen, difference)
    if snap_gelu:
        report.snap_gelu_path = snap_gelu_variant(module, example, output_path, chosen, opset)
    return report


def max_abs_difference(path: Path, example: Tensor, expected: Tensor) -> float:
    """Run the ONNX file at ``path`` on ``example`` with onnxruntime (CPU) and compare with ``expected``."""
    onnxruntime = require("onnxruntime", "Checking the ONNX export")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    (actual,) = session.run(None, {name: example.numpy()})
    return float(np.max(np.abs(actual - expected.numpy())))


def snap_gelu_variant(module: nn.Module, example: Tensor, output_path: Path, exporter: str,
                      opset: Optional[int]) -> Path:
    """The official SnapML file: the same weights exported with ReLU, whose nodes become ``GeluSnap``."""
    onnx = require("onnx", "The SnapML GeluSnap export")
    relu_path = output_path.with_name(output_path.stem + "_relu.onnx")
    _export(replace_activations(copy.deepcopy(module), "relu"), example, relu_path, exporter, opset)
    model = onnx.load(str(relu_path))
    renamed = 0
    for node in model.graph.node:
        if node.op_type == "Relu":
            node.op_type = "GeluSnap"
            renamed += 1
    relu_path.unlink()
    if renamed == 0:
        raise OnnxExportError(f"No activation found to replace by GeluSnap in {relu_path}")
    snap_path = output_path.with_name(output_path.stem + "_SnapGELU.onnx")
    onnx.save(model, str(snap_path))
    return snap_path
