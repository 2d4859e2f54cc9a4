"""NeRDF student: basis, input encoding, network, NDC, density constraint, and a short distillation run through
nerfstudio's trainer from a forward-facing teacher (loss falls, PSNR against the teacher rises, checkpoint round
trip, ns-eval, ns-render)."""

from __future__ import annotations

import json
import math
import warnings
from types import SimpleNamespace

import pytest
import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import SceneBox

from ng_methods.distill.nerdf.basis import evaluate_basis, gaussian_mixture_density, trig_basis
from ng_methods.distill.nerdf.encoding import encode_direction, encode_ray_input, input_dim, spherical_harmonics
from ng_methods.distill.nerdf.model import NeRDFModelConfig
from ng_methods.distill.nerdf.ndc import average_camera_frame, ndc_depth_to_distance, ndc_rays, to_frame
from ng_methods.distill.nerdf.network import NeRDFNetwork
from ng_methods.distill.nerdf.rendering import composite, sample_depths
from ng_methods.distill.nerdf.teacher_density import normalized_density_loss


def test_basis_values_at_known_depths():
    t = torch.tensor([[0.0, 0.25, 0.5]], dtype=torch.float64)
    basis = trig_basis(t, 24)
    assert basis.shape == (1, 3, 24)
    for k in range(24):  # even k: cos(k pi t); odd k: sin((k + 1) pi t)
        expected = [math.cos(k * math.pi * x) if k % 2 == 0 else math.sin((k + 1) * math.pi * x)
                    for x in (0.0, 0.25, 0.5)]
        torch.testing.assert_close(basis[0, :, k], torch.tensor(expected, dtype=torch.float64))
    assert basis[0, 1, :4].tolist() == pytest.approx([1.0, 1.0, 0.0, 0.0], abs=1e-12)  # 1, sin 2pi/4, cos 2pi/4, ..


def test_evaluate_basis_sums_terms_per_channel():
    coefficients = torch.zeros(1, 24, 4)
    coefficients[0, 0, 0] = 2.0  # constant density 2
    coefficients[0, 1, 1] = 1.0  # red = sin(2 pi t)
    values = evaluate_basis(coefficients, torch.tensor([[0.25, 0.75]]))
    torch.testing.assert_close(values[0, :, 0], torch.tensor([2.0, 2.0]))
    torch.testing.assert_close(values[0, :, 1], torch.tensor([1.0, -1.0]))


def test_gaussian_mixture_reads_channels_0_to_2():
    coefficients = torch.zeros(1, 24, 12)
    coefficients[0, 0, 2] = 1.0  # one unit-weight Gaussian, mean sigmoid(0) = 0.5, deviation sigmoid(0) = 0.5
    density = gaussian_mixture_density(coefficients, torch.tensor([[0.5]]))
    expected = 1.0 / (math.sqrt(2 * math.pi) * 0.5 + 1e-6)
    assert float(density) == pytest.approx(expected, rel=1e-5)


def test_input_is_1135_numbers_in_the_official_layout():
    assert input_dim(16) == 1135
    points, origins = torch.rand(5, 16, 3), torch.rand(5, 3)
    directions = torch.nn.functional.normalize(torch.randn(5, 3), dim=-1)
    encoded = encode_ray_input(points, origins, directions)
    assert encoded.shape == (5, 1135)
    # point block: per coordinate 10 sines, 10 cosines (2^k, no pi), then the value
    torch.testing.assert_close(encoded[:, 0], torch.sin(points[:, 0, 0]))
    torch.testing.assert_close(encoded[:, 10], torch.cos(points[:, 0, 0]))
    torch.testing.assert_close(encoded[:, 20], points[:, 0, 0])
    torch.testing.assert_close(encoded[:, 1008:1011], origins)  # origin block starts with the raw origin
    torch.testing.assert_close(encoded[:, 1011:1014], torch.sin(origins))
    torch.testing.assert_close(encoded[:, 1071], torch.full((5,), 0.28209479177387814))  # SH band 0


def test_direction_encoding_has_the_official_entry_16_copy():
    directions = torch.nn.functional.normalize(torch.randn(100, 3, dtype=torch.float64), dim=-1)
    x, y, z = directions.unbind(-1)
    harmonics = spherical_harmonics(directions)
    torch.testing.assert_close(harmonics[:, 1], -0.48860251190291987 * y)
    torch.testing.assert_close(harmonics[:, 6], 0.94617469575755997 * z * z - 0.31539156525251999)
    torch.testing.assert_close(harmonics[:, 16], 2.5033429417967046 * x * y * (x * x - y * y))
    torch.testing.assert_close(harmonics[:, 63], 0.70716273252459627 * x * (
        -35 * x**2 * y**4 + 21 * x**4 * y**2 - x**6 + 7 * y**6))
    encoded = encode_direction(directions)
    assert encoded.shape == (100, 64)
    torch.testing.assert_close(encoded[:, 16], encoded[:, 15])
    torch.testing.assert_close(encoded[:, 17:], harmonics[:, 17:])


@pytest.mark.parametrize("depth,width,concat_layers", [(8, 384, [5]), (32, 16, [5, 9, 13, 17, 21, 25, 29])])
def test_network_shapes_and_skips(depth, width, concat_layers):
    network = NeRDFNetwork(1135, depth, width, 24, 12)
    assert len(network.layers) == depth
    assert [i for i, layer in enumerate(network.layers) if layer.in_features == width + 1135] == concat_layers
    assert network.layers[0].in_features == 1135 and network.output.out_features == 288
    assert network(torch.rand(3, 1135)).shape == (3, 24, 12)


def test_normalized_density_loss_hand_case():
    student = torch.tensor([[1.0, 0.0], [3.0, 4.0]], requires_grad=True)
    teacher = torch.tensor([[0.0, 5.0], [6.0, 8.0]])
    # row 0: (1, 0) vs (0, 1) -> squared differences 1 + 1; row 1: same direction -> 0; mean over 4 entries
    loss = normalized_density_loss(student, teacher)
    assert float(loss.detach()) == pytest.approx(0.5)
    loss.backward()
    assert torch.all(student.grad[1].abs() < 1e-7)


def test_ndc_hand_cases():
    origins = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0]])
    directions = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]])
    ndc_o, ndc_d = ndc_rays(origins, directions, torch.tensor([2.0, 2.0]))
    # shifted to z = -1; x_ndc = -(2 fx / W) x / z; z_ndc = 1 + 2 near / z; a parallel ray meets the axis at t = 1
    torch.testing.assert_close(ndc_o, torch.tensor([[0.0, 0.0, -1.0], [1.0, 0.0, -1.0]]))
    torch.testing.assert_close(ndc_d, torch.tensor([[0.0, 0.0, 2.0], [-1.0, 0.0, 2.0]]))
    # NDC depth 0.5 on the axis ray: z_ndc = 0 <=> z = -2, two units from the camera
    distance = ndc_depth_to_distance(torch.tensor([[0.0, 0.5]]), origins[:1], directions[:1])
    torch.testing.assert_close(distance, torch.tensor([[1.0, 2.0]]))


def test_average_camera_frame_and_frame_change():
    rotation = torch.linalg.matrix_exp(torch.tensor([[0.0, -0.3, 0.2], [0.3, 0.0, -0.1], [-0.2, 0.1, 0.0]]))
    centre = torch.tensor([1.0, 2.0, 3.0])
    poses = torch.stack([torch.cat([rotation, (centre + offset)[:, None]], 1)
                         for offset in torch.tensor([[0.1, 0, 0], [-0.1, 0, 0]])])
    frame = average_camera_frame(poses)
    torch.testing.assert_close(frame, torch.cat([rotation, centre[:, None]], 1), atol=1e-5, rtol=0)
    origins, directions = to_frame(frame, centre[None], rotation[:, 2][None])
    torch.testing.assert_close(origins, torch.zeros(1, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(directions, torch.tensor([[0.0, 0.0, 1.0]]), atol=1e-5, rtol=0)


def test_composite_hand_case():
    depths = torch.tensor([[0.0, 0.5, 1.0]])
    density = torch.tensor([[0.0, -3.0, 1e6]])  # empty, negative (ReLU -> empty), opaque
    rgb = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]])
    result = composite(density, rgb, depths, torch.ones(1, 1))
    torch.testing.assert_close(result.weights, torch.tensor([[0.0, 0.0, 1.0]]))
    torch.testing.assert_close(result.rgb, torch.tensor([[0.0, 0.0, 1.0]]))
    t = sample_depths(4, 8, stratified=True, device=torch.device("cpu"))
    assert torch.all(t[:, 1:] >= t[:, :-1]) and float(t.min()) >= 0.0 and float(t.max()) <= 1.0


def _tiny_model(**overrides) -> torch.nn.Module:
    config = NeRDFModelConfig(network_depth=8, network_width=16, num_samples_train=8, **overrides)
    return config.setup(scene_box=SceneBox(torch.tensor([[-1.0, -1, -1], [1, 1, 1]])), num_train_data=1)


def _forward_rays(count: int) -> RayBundle:
    directions = torch.nn.functional.normalize(torch.randn(count, 3) * 0.2 + torch.tensor([0.0, 0, -1]), dim=-1)
    return RayBundle(origins=torch.zeros(count, 3), directions=directions, pixel_area=torch.ones(count, 1))


class _ConstantField:
    def get_density(self, ray_samples):
        positions = ray_samples.frustums.get_positions()
        return positions[..., :1].abs() + 1.0, None


@pytest.mark.parametrize("parameterization,grad_channels", [("gaussian", {0, 1, 2}), ("dft", {0})])
def test_density_constraint_supervises_the_chosen_channels(parameterization, grad_channels):
    """Official quirk ("gaussian"): the constraint reads channels 0-2 as a Gaussian mixture although the rendered
    density is channel 0 through the Fourier basis (and channels 1-2 are colours)."""
    model = _tiny_model(sigma_constraint_parameterization=parameterization)
    model.teacher_density.attach(SimpleNamespace(model=SimpleNamespace(field=_ConstantField())))
    model.train()
    outputs = model(_forward_rays(6))
    assert outputs["teacher_sigma"].shape == (6, 8)
    loss = model.get_loss_dict(outputs, {"image": torch.rand(6, 3)})["sigma_loss"]
    output_layer = model.network.output
    (gradient,) = torch.autograd.grad(loss, output_layer.bias)
    touched = {int(c) for c in torch.nonzero(gradient.view(24, 12).abs().sum(0)).flatten()}
    assert touched == grad_channels


def test_teacher_without_field_degrades_with_one_warning():
    model = _tiny_model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.teacher_density.attach(SimpleNamespace(model=SimpleNamespace()))
    assert len([w for w in caught if "density constraint disabled" in str(w.message)]) == 1
    model.train()
    outputs = model(_forward_rays(4))
    assert "teacher_sigma" not in outputs
    assert set(model.get_loss_dict(outputs, {"image": torch.rand(4, 3)})) == {"rgb_loss"}


def test_scene_frame_from_llff_cameras_makes_training_rays_forward_facing(tmp_path):
    """On a real forward-facing capture, LLFF's average-camera frame puts the cameras near the origin looking down
    -z, so every training ray reaches the NDC near plane and its NDC origin lies inside the screen square."""
    from ng_methods.data.llff import LLFFDataParserConfig
    from tests.conftest import DATA_DIR

    parser = LLFFDataParserConfig(data=DATA_DIR / "llff-fern-tiny", cache_dir=tmp_path / "cache").setup()
    cameras = parser.get_dataparser_outputs("train").cameras
    model = _tiny_model()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # forward-facing: no warning about the NDC parameterisation
        model.set_scene_frame(cameras)
    spun = cameras.camera_to_worlds.clone()
    spun[0, :, :3] = -spun[0, :, :3]  # one camera looking backwards
    with pytest.warns(UserWarning, match="expects a forward-facing capture"):
        _tiny_model().set_scene_frame(Cameras(spun, cameras.fx, cameras.fy, cameras.cx, cameras.cy,
                                              cameras.width, cameras.height))
    rays = cameras.generate_rays(camera_indices=0).flatten()
    frame_origins, frame_directions = to_frame(model.scene_frame, rays.origins, rays.directions)
    assert float(frame_directions[:, 2].max()) < 0.0
    ndc_o, ndc_d = ndc_rays(frame_origins, frame_directions, model.ndc_scale)
    torch.testing.assert_close(ndc_o[:, 2], torch.full_like(ndc_o[:, 2], -1.0))
    assert float(ndc_o[:, :2].abs().max()) < 1.5
    torch.testing.assert_close(ndc_d[:, 2], torch.full_like(ndc_d[:, 2], 2.0), atol=0.5, rtol=0)


def test_bounded_preset_samples_between_near_and_far_on_white():
    """The ``nerdf-blender`` parameterisation: world-space samples in [2, 6], white background, no teacher needed."""
    from method_configs.nerdf import nerdf_trainer_config

    preset = nerdf_trainer_config("blender").pipeline.model
    assert (preset.network_depth, preset.network_width, preset.sigma_loss_weight) == (32, 512, 0.0)
    model = _tiny_model(ray_parameterization="near_far", background_color="white", raw_noise_std=0.0,
                        sigma_loss_weight=0.0)
    with torch.no_grad():
        model.network.output.bias.zero_()
        model.network.output.weight.zero_()  # zero density everywhere: the background shows through
    model.eval()
    bundle = _forward_rays(5)
    bundle.origins = bundle.origins + torch.tensor([0.0, 0.0, 4.0])
    outputs = model(bundle)
    torch.testing.assert_close(outputs["rgb"], torch.ones(5, 3))
    model.network.output.bias.data.view(24, 12)[0, 0] = 5.0  # constant density 5 along the ray
    depth = model(bundle)["depth"]
    assert torch.all((depth > 2.0) & (depth < 3.0))  # opaque right after the near plane at 2


TRAIN_STEPS = 30


def _small_nerdf(teacher_config, output_dir):
    """The registered ``nerdf`` recipe with a narrow network and few rays and samples (same code path)."""
    from method_configs.nerdf import nerdf_trainer_config
    from tests.conftest import DATA_DIR
    from tests.training import reduce_for_cpu

    config = reduce_for_cpu(nerdf_trainer_config("llff"), DATA_DIR / "llff-fern-tiny", output_dir, TRAIN_STEPS)
    datamanager = config.pipeline.datamanager
    datamanager.teacher_config = teacher_config
    datamanager.dataparser.downscale_factor = None  # the tiny capture only has images_32 (126 x 94)
    datamanager.dataparser.cache_dir = output_dir / "cache"
    datamanager.train_num_rays_per_batch = 128  # the teacher's CPU hash grid dominates the cost of a step
    model = config.pipeline.model
    model.network_width = 64
    model.num_samples_train = 16
    config.optimizers["nerdf"]["optimizer"].lr = 3e-3  # a narrow network for 30 steps instead of 384 wide for 600k
    return config


def _psnr(mse: float) -> float:
    return -10.0 * math.log10(mse)


@pytest.mark.slow
def test_distills_a_forward_facing_teacher(llff_teacher_config, tmp_path, ffmpeg_on_path):
    from ng_methods.compat.checkpoints import allow_nerfstudio_checkpoints
    from tests.training import run_cli, train

    torch.manual_seed(0)
    losses = []
    config = _small_nerdf(llff_teacher_config, tmp_path / "outputs")
    trainer = train(config, on_loss=losses.append)
    rgb_losses = [entry["rgb_loss"] for entry in losses]
    assert len(rgb_losses) == TRAIN_STEPS and all("sigma_loss" in entry for entry in losses)
    first, last = sum(rgb_losses[:5]) / 5, sum(rgb_losses[-5:]) / 5
    assert last < 0.7 * first, f"distillation loss did not fall: {first:.4f} -> {last:.4f}"
    assert _psnr(last) > _psnr(first) + 1.5  # PSNR of the student against the teacher

    model = trainer.pipeline.model
    assert not torch.equal(model.scene_frame, torch.eye(3, 4))  # taken from the training cameras

    # checkpoint round trip under torch's safe loading
    (checkpoint,) = config.get_checkpoint_dir().glob("*.ckpt")
    allow_nerfstudio_checkpoints()
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["pipeline"]
    assert not any("teacher" in key for key in state), "the teacher must not be saved with the student"
    reloaded = config.pipeline.model.setup(scene_box=model.scene_box, num_train_data=model.num_train_data)
    reloaded.load_state_dict({k[len("_model."):]: v for k, v in state.items() if k.startswith("_model.")})
    model.eval()
    reloaded.eval()
    rays = trainer.pipeline.datamanager.train_dataset.cameras[:1].generate_rays(camera_indices=0).flatten()[:300]
    torch.testing.assert_close(reloaded(rays)["rgb"], model(rays)["rgb"])

    config_path = config.get_base_dir() / "config.yml"
    metrics_path = tmp_path / "eval.json"
    result = run_cli(["ns-eval", "--load-config", str(config_path), "--output-path", str(metrics_path)])
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(metrics_path.read_text())["results"]
    assert math.isfinite(results["psnr"]) and results["fps"] > 0

    # ns-render's dataset command, in this process (a second CLI start-up would double the test's cost)
    from nerfstudio.scripts.render import DatasetRender
    renders = tmp_path / "renders"
    DatasetRender(load_config=config_path, output_path=renders, split="test", rendered_output_names=["rgb"]).main()
    assert len(list(renders.rglob("*.jpg")) + list(renders.rglob("*.png"))) >= 1
