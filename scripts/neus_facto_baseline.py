"""nerfstudio 1.1.5's ``neus-facto`` as the baseline of ``scripts/benchmark_neus2.py``, runnable without
tinycudann: its recipe on our ``neus-data`` datamanager, our grid encoding standing in for ``tcnn.Encoding`` when
tinycudann is missing (built inside ``ng_methods.compat.lpips.nerfstudio_lpips_offline``, so its LPIPS downloads
nothing)."""

from __future__ import annotations

import contextlib
import copy
from typing import Dict, List
from unittest import mock

import torch


def neus_facto_config(tiny: bool):
    """nerfstudio 1.1.5's ``neus-facto`` recipe (configs/method_configs.py:544-588) with our NeuS datamanager (the
    same views, masks and splits as neus2; the caller sets the data, device and schedule); ``tiny``: CPU sizes."""
    from nerfstudio.configs.method_configs import method_configs

    from ng_methods.data.neus_dataset import NeuSDataManagerConfig

    config = copy.deepcopy(method_configs["neus-facto"])
    config.pipeline.datamanager = NeuSDataManagerConfig(train_num_rays_per_batch=2048, eval_num_rays_per_batch=2048)
    if tiny:
        model = config.pipeline.model
        model.sdf_field.num_levels, model.sdf_field.log2_hashmap_size, model.sdf_field.max_res = 4, 12, 64
        model.sdf_field.hidden_dim = model.sdf_field.hidden_dim_color = 32
        model.num_proposal_samples_per_ray, model.num_neus_samples_per_ray = (16, 8), 8
        config.pipeline.datamanager.train_num_rays_per_batch = 256
        config.pipeline.datamanager.camera_res_scale_factor = 0.5
        model.eval_num_rays_per_chunk = 2048
    return config


class _GridAsTcnnEncoding(torch.nn.Module):
    """``tcnn.Encoding(n_input_dims, encoding_config)`` for neus-facto's ``SDFField`` built on our grid encoding
    (tiny-cuda-nn's HashGrid function; Triton on CUDA, PyTorch on CPU; twice differentiable for the eikonal loss).
    Linear interpolation: our kernel has no ``Smoothstep``, which neus-facto asks for."""

    def __init__(self, n_input_dims: int, encoding_config: Dict) -> None:
        super().__init__()
        from ng_methods.encodings import GridEncoding
        from ng_methods.kernels.grid_encoding import GridSpec

        spec = GridSpec(n_levels=encoding_config["n_levels"], n_features_per_level=encoding_config[
            "n_features_per_level"], log2_hashmap_size=encoding_config["log2_hashmap_size"],
            base_resolution=encoding_config["base_resolution"], per_level_scale=encoding_config["per_level_scale"],
            n_dims=n_input_dims, grid_type="hash" if encoding_config["otype"] == "HashGrid" else "dense")
        self.grid = GridEncoding(spec)
        self.n_output_dims = spec.n_output_dims

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.grid(positions.float())


BASELINE_ENCODING_NOTE = ("tinycudann is not installed: nerfstudio 1.1.5's SDFField calls tcnn.Encoding directly "
                          "(fields/sdf_field.py:150, no torch fallback; its 'periodic' and 'tensorf_vm' options are "
                          "not implemented), so neus-facto ran with ng_methods' GridEncoding (the same HashGrid "
                          "function, same sizes, Triton on CUDA) with linear instead of smoothstep interpolation")


@contextlib.contextmanager
def neus_facto_encoding(notes: List[str]):
    """tcnn when installed; else our grid encoding stands in for ``tcnn.Encoding`` (and a note says so)."""
    from nerfstudio.fields import sdf_field
    from nerfstudio.utils.external import TCNN_EXISTS

    if TCNN_EXISTS:
        yield
        return
    notes.append(BASELINE_ENCODING_NOTE)
    with mock.patch.object(sdf_field, "tcnn", mock.Mock(Encoding=_GridAsTcnnEncoding)):
        yield


