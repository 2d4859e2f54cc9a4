"""Compact file: exact round trip of what is stored losslessly, rendering within quantisation tolerance, .ply."""

import numpy as np
import pytest
import torch

from ng_methods.c3dgs.compact import compact_to_ply, encode_compact, load_compact, write_compact
from ng_methods.compression.codec import EncodedArray, read_container, write_container
from tests.c3dgs.helpers import front_camera, render_rgb, small_model

# Renders of the loaded model against the exported one, with the hash pruning off (fp16 centres and MLP, 8-bit
# opacity and hash table): measured max 0.007 / PSNR 66 dB on this scene.
MAX_PIXEL_ERROR = 0.02
MIN_PSNR_DB = 50.0


def read_ply(path):
    """Minimal binary little-endian float .ply reader: ``(property names, [count, properties] array)``."""
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode().splitlines()
    assert header[0] == "ply" and header[1] == "format binary_little_endian 1.0"
    count = int(next(line for line in header if line.startswith("element vertex")).split()[-1])
    names = [line.split()[-1] for line in header if line.startswith("property float")]
    values = np.frombuffer(data[end:], dtype="<f4").reshape(count, len(names))
    return names, values


@pytest.fixture
def exported(tmp_path):
    model = small_model(num_gaussians=400)
    with torch.no_grad():
        model.gauss_params["mask_logits"].data[:50] = -10.0  # masked: not stored
    model.start_rvq()
    path = tmp_path / "scene.ngc"
    size = write_compact(model, path, hash_prune_threshold=0.0)
    return model, path, size


def test_round_trip_is_exact_where_storage_is_lossless(exported):
    model, path, _ = exported
    arrays, meta = read_container(path)
    assert meta["format"] == "c3dgs-compact" and meta["num_gaussians"] == 350
    kept = slice(50, None)
    loaded = load_compact(path)
    assert loaded.num_points == 350
    torch.testing.assert_close(loaded.means, model.means[kept].half().float(), rtol=0, atol=0)
    assert torch.equal(arrays["scale_codebooks"].decode(), model.vq_scale.codebooks.detach())
    assert torch.equal(arrays["rotation_codebooks"].decode(), model.vq_rotation.codebooks.detach())
    with torch.no_grad():
        quats, scales, opacities = model.rendered_attributes()
        loaded_quats, loaded_scales, loaded_opacities = loaded.rendered_attributes()
    # scale and rotation: the R-VQ the model renders with, reproduced from indices + fp32 codebooks
    torch.testing.assert_close(loaded_scales, scales[kept].abs(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(loaded_quats, torch.nn.functional.normalize(quats[kept], dim=-1), rtol=1e-5, atol=1e-6)
    step = float(opacities[kept].max() - opacities[kept].min()) / 255
    assert (loaded_opacities - opacities[kept]).abs().max() <= step / 2 + 1e-6
    for index, layer in enumerate(model.color_field.mlp.layers):
        assert torch.equal(loaded.color_field.mlp.layers[index].weight, layer.weight.detach().half().float())


def test_loaded_model_renders_like_the_exported_one(exported):
    model, path, _ = exported
    camera = front_camera()
    reference, loaded = render_rgb(model, camera), render_rgb(load_compact(path), camera)
    error = (loaded - reference).abs()
    psnr = -10 * torch.log10(error.pow(2).mean())
    assert error.max() <= MAX_PIXEL_ERROR and psnr >= MIN_PSNR_DB, (float(error.max()), float(psnr))


def test_storage_size_matches_the_file_and_pruning_shrinks_it(exported, tmp_path):
    model, _, size = exported
    assert model.storage_bytes() == write_compact(model, tmp_path / "default.ngc")  # default pruning 0.1
    assert model.storage_bytes() < size
    assert model.storage_estimate_bytes() > 0.8 * size
    arrays, _ = encode_compact(model)
    table = arrays["hash_table"].decode()
    original = model.color_field.grid.table.detach()
    small = original.abs() < 0.1
    assert (table[small].abs() <= arrays["hash_table"].hi[0] / 255 + 1e-6).all()  # zeroed up to one level


def test_converter_writes_a_standard_3dgs_ply(exported, tmp_path):
    model, path, _ = exported
    ply = tmp_path / "scene.ply"
    assert compact_to_ply(path, ply) == 350
    names, values = read_ply(ply)
    expected = (["x", "y", "z", "nx", "ny", "nz"] + [f"f_dc_{i}" for i in range(3)] + [f"f_rest_{i}" for i in range(45)]
                + ["opacity"] + [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)])
    assert names == expected
    assert np.isfinite(values).all()
    np.testing.assert_allclose(values[:, :3], model.means[50:].detach().half().float().numpy(), rtol=0, atol=0)


def test_rejects_other_containers(tmp_path):
    other = tmp_path / "other.ngc"
    write_container(other, {"x": EncodedArray.raw(np.zeros(3, np.float32))}, meta={"format": "something-else"})
    with pytest.raises(ValueError, match="not a C3DGS compact file"):
        load_compact(other)
