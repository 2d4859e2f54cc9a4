"""The C3DGS compact file: write it from a trained model, load it back as a model, convert it to a 3DGS ``.ply``.

Layout (an :mod:`ng_methods.compression.codec` container: every array DEFLATE-coded, i.e. LZ77 + Huffman, where
the official post-processing Huffman-codes opacity, hash grid and indices with ``dahuffman``):

=====================  ============================================  =========================================
array                  content                                       official storage
=====================  ============================================  =========================================
``means``              fp16 ``[N, 3]``                               fp16
``opacities``          activated opacity, 8-bit min-max ``[N, 1]``   fp16; 8-bit + Huffman with ``--comp``
``scale_indices``      uint8 ``[N, 6]`` R-VQ indices (6 bits used)   6-bit packed; Huffman with ``--comp``
``rotation_indices``   uint8 ``[N, 6]``                              same
``scale_codebooks``    fp32 ``[6, 64, 3]``                           fp32
``rotation_codebooks`` fp32 ``[6, 64, 4]``                           fp32
``hash_table``         ``|v| < 0.1`` zeroed, 8-bit min-max           fp16; pruned + 8-bit + Huffman (``--comp``)
``mlp_<i>``            fp16 weight of MLP layer ``i``                fp16
=====================  ============================================  =========================================

The JSON header (``meta``) holds the format name and version, the Gaussian count and what is needed to rebuild
the model (grid, MLP, R-VQ sizes, contraction bound, mask threshold, background, scene box). Only Gaussians the
mask keeps are stored. Loading rebuilds a :class:`C3DGSModel` whose attributes are the decoded (already
quantised) values, so it renders what the file encodes.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Dict, Tuple, Union

import numpy as np
import torch
from nerfstudio.data.scene_box import SceneBox
from torch.nn import Parameter

from ng_methods.c3dgs.mask import kept_gaussians
from ng_methods.c3dgs.model import C3DGSModel, C3DGSModelConfig
from ng_methods.c3dgs.rvq import ResidualVectorQuantizer
from ng_methods.compression.codec import EncodedArray, container_bytes, read_container

FORMAT = "c3dgs-compact"
VERSION = 1
# A mask logit whose sigmoid is exactly 1.0 in float32: loaded Gaussians are all kept, with mask value exactly 1.
LOADED_MASK_LOGIT = 20.0

_CONFIG_FIELDS = (
    "hash_log2_size", "hash_levels", "hash_features_per_level", "hash_base_resolution", "hash_per_level_scale",
    "contraction_bound", "mlp_width", "mlp_hidden_layers", "rvq_stages", "rvq_codebook_size", "mask_threshold",
    "background_color", "rasterize_mode", "sh_degree", "bake_directions",
)


def _index_dtype(codebook_size: int) -> torch.dtype:
    return torch.uint8 if codebook_size <= 256 else torch.int16


@torch.no_grad()
def encode_compact(model: C3DGSModel, hash_prune_threshold: float | None = None
                   ) -> Tuple[Dict[str, EncodedArray], dict]:
    """The compact arrays and header of ``model`` (see the module docstring); ``hash_prune_threshold`` overrides
    ``config.storage_hash_prune``."""
    cfg = model.config
    params = model.gauss_params
    keep = kept_gaussians(params["mask_logits"].squeeze(-1), cfg.mask_threshold)
    vq_scale, vq_rotation = model.quantizers_for_export()
    scales = torch.exp(params["scales"][keep])
    quats = torch.nn.functional.normalize(params["quats"][keep], dim=-1)
    opacities = torch.sigmoid(params["opacities"][keep])
    threshold = cfg.storage_hash_prune if hash_prune_threshold is None else hash_prune_threshold
    table = model.color_field.grid.table.detach().float()
    table = torch.where(table.abs() < threshold, torch.zeros_like(table), table)
    index_dtype = _index_dtype(cfg.rvq_codebook_size)

    arrays: Dict[str, EncodedArray] = {
        "means": EncodedArray.raw(params["means"][keep].half()),
        "opacities": EncodedArray.quantize(opacities, cfg.storage_opacity_bits, per_channel=False),
        "scale_indices": EncodedArray.raw(vq_scale.encode(scales).to(index_dtype)),
        "rotation_indices": EncodedArray.raw(vq_rotation.encode(quats).to(index_dtype)),
        "scale_codebooks": EncodedArray.raw(vq_scale.codebooks.float()),
        "rotation_codebooks": EncodedArray.raw(vq_rotation.codebooks.float()),
        "hash_table": EncodedArray.quantize(table, cfg.storage_hash_bits, per_channel=False),
    }
    for index, layer in enumerate(model.color_field.mlp.layers):
        arrays[f"mlp_{index}"] = EncodedArray.raw(layer.weight.half())
    meta = {
        "format": FORMAT, "version": VERSION, "num_gaussians": int(keep.sum()),
        "hash_prune_threshold": threshold,
        "config": {name: getattr(cfg, name) for name in _CONFIG_FIELDS},
        "scene_box": model.scene_box.aabb.tolist(),
    }
    return arrays, meta


def compact_bytes(model: C3DGSModel, hash_prune_threshold: float | None = None) -> bytes:
    """The compact file's bytes for ``model`` (what :func:`write_compact` writes)."""
    arrays, meta = encode_compact(model, hash_prune_threshold)
    return container_bytes(arrays, meta)


def write_compact(model: C3DGSModel, path: Union[str, Path], hash_prune_threshold: float | None = None) -> int:
    """Write ``model``'s compact file to ``path``; returns its size in bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(compact_bytes(model, hash_prune_threshold))
    return path.stat().st_size


@torch.no_grad()
def load_compact(path: Union[str, Path], device: Union[str, torch.device] = "cpu") -> C3DGSModel:
    """A :class:`C3DGSModel` (eval mode) holding the decoded contents of a compact file."""
    arrays, meta = read_container(path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a C3DGS compact file (format {meta.get('format')!r})")
    if meta.get("version") != VERSION:
        raise ValueError(f"{path}: unsupported C3DGS compact version {meta.get('version')}")
    count = int(meta["num_gaussians"])
    config = C3DGSModelConfig(**meta["config"], random_init=True, num_random=1,
                              rasterizer_backend="auto")
    model = config.setup(scene_box=SceneBox(aabb=torch.tensor(meta["scene_box"], dtype=torch.float32)),
                         num_train_data=1, seed_points=None)

    scale_codebooks = arrays["scale_codebooks"].decode().float()
    rotation_codebooks = arrays["rotation_codebooks"].decode().float()
    stages, size, _ = scale_codebooks.shape
    vq_scale, vq_rotation = ResidualVectorQuantizer(3, stages, size), ResidualVectorQuantizer(4, stages, size)
    vq_scale.codebooks.data.copy_(scale_codebooks)
    vq_rotation.codebooks.data.copy_(rotation_codebooks)
    scales = vq_scale.decode(arrays["scale_indices"].decode().long())
    quats = vq_rotation.decode(arrays["rotation_indices"].decode().long())
    opacities = arrays["opacities"].decode().float().reshape(count, 1)

    decoded = {
        "means": arrays["means"].decode().float().reshape(count, 3),
        # |s|: the covariance depends on s^2 only, and a sum of codes can come out slightly negative
        "scales": torch.log(scales.abs().clamp_min(1e-30)),
        "quats": quats,
        "opacities": torch.logit(opacities.clamp(1e-7, 1 - 1e-7)),
        "mask_logits": torch.full((count, 1), LOADED_MASK_LOGIT),
    }
    for name, value in decoded.items():
        model.gauss_params[name] = Parameter(value.contiguous())
    model.color_field.grid.table.data = arrays["hash_table"].decode().float().reshape(model.color_field.grid.table.shape)
    for index, layer in enumerate(model.color_field.mlp.layers):
        layer.weight.data = arrays[f"mlp_{index}"].decode().float()
    # The stored scale and rotation are already quantised: the loaded model renders them as they are.
    model.vq_scale.initialized.fill_(False)
    model.vq_rotation.initialized.fill_(False)
    return model.to(device).eval()


@torch.no_grad()
def standard_ply_attributes(model: C3DGSModel) -> "OrderedDict[str, np.ndarray]":
    """The vertex properties ``ns-export gaussian-splat`` writes (same names and order), baked from ``model``;
    masked and non-finite Gaussians are left out, as the exporter does."""
    attributes: "OrderedDict[str, np.ndarray]" = OrderedDict()
    means = model.means.detach().cpu().numpy()
    count = means.shape[0]
    for axis, name in enumerate("xyz"):
        attributes[name] = means[:, axis]
    for name in ("nx", "ny", "nz"):
        attributes[name] = np.zeros(count, dtype=np.float32)
    shs_0 = model.shs_0.cpu().numpy()
    for i in range(shs_0.shape[1]):
        attributes[f"f_dc_{i}"] = shs_0[:, i]
    shs_rest = model.shs_rest.transpose(1, 2).reshape(count, -1).cpu().numpy()  # channel-major, as Inria writes
    for i in range(shs_rest.shape[1]):
        attributes[f"f_rest_{i}"] = shs_rest[:, i]
    attributes["opacity"] = model.opacities.cpu().numpy()[:, 0]
    scales = model.scales.cpu().numpy()
    for i in range(3):
        attributes[f"scale_{i}"] = scales[:, i]
    quats = model.quats.cpu().numpy()
    for i in range(4):
        attributes[f"rot_{i}"] = quats[:, i]
    finite = np.ones(count, dtype=bool)
    for values in attributes.values():
        finite &= np.isfinite(values)
    return OrderedDict((name, values[finite].astype(np.float32)) for name, values in attributes.items())


def write_standard_ply(path: Union[str, Path], attributes: "OrderedDict[str, np.ndarray]") -> int:
    """Binary little-endian ``.ply`` with one float property per entry (nerfstudio's header); the vertex count."""
    count = len(next(iter(attributes.values())))
    vertices = np.empty(count, dtype=[(name, "<f4") for name in attributes])
    for name, values in attributes.items():
        vertices[name] = values
    header = ["ply", "format binary_little_endian 1.0", "comment Generated by ng-methods (C3DGS)",
              "comment Vertical Axis: z", f"element vertex {count}"]
    header += [f"property float {name}" for name in attributes] + ["end_header"]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\n".join(header) + "\n").encode() + vertices.tobytes())
    return count


def compact_to_ply(compact_path: Union[str, Path], ply_path: Union[str, Path]) -> int:
    """Convert a compact file into a standard 3DGS ``.ply`` (colour field baked into SH); the vertex count."""
    return write_standard_ply(ply_path, standard_ply_attributes(load_compact(compact_path)))
