"""NeuS2 field: the geometric init's sphere, second-order gradients into the grid, and the model's queries."""

import math

import torch
from nerfstudio.data.scene_box import SceneBox

from ng_methods.neus2.field import NeuS2Field, NeuS2FieldConfig
from ng_methods.neus2.levels import ProgressiveLevelsConfig
from ng_methods.neus2.model import NeuS2ModelConfig

SMALL = dict(n_levels=4, log2_hashmap_size=10, top_resolution=64.0)


def _directions(n):
    return torch.nn.functional.normalize(torch.randn(n, 3), dim=-1)


def test_geometric_init_is_a_sphere_of_radius_about_0_1_around_the_box_centre():
    torch.manual_seed(0)
    field = NeuS2Field(NeuS2FieldConfig(**SMALL), ProgressiveLevelsConfig())
    with torch.no_grad():
        centre = field.sdf_network(torch.full((1, 3), 0.5))[0]
        assert math.isclose(float(centre), -0.1, abs_tol=1e-3)  # only the bias at the centre
        directions = _directions(2000)
        by_radius = [field.sdf_network(0.5 + r * directions)[0].mean() for r in (0.05, 0.1, 0.2, 0.4)]
    assert by_radius == sorted(by_radius)  # grows outwards like a distance
    assert float(by_radius[0]) < 0.0 < float(by_radius[2])
    # E[w2 . relu(W1 x)] = |x| for NeuS's init: mean slope ~1 (the sample of 64 neurons gives a few % spread).
    assert abs(float(by_radius[3] - by_radius[2]) / 0.2 - 1.0) < 0.25


def test_gradient_shape_and_the_eikonal_loss_reaches_the_grid_table():
    torch.manual_seed(0)
    field = NeuS2Field(NeuS2FieldConfig(**SMALL, geometric_init=False), ProgressiveLevelsConfig(enabled=False))
    with torch.no_grad():
        field.encoding.table.uniform_(-0.1, 0.1)
    points = torch.rand(128, 3)
    sdf, features, gradient = field.sdf_and_gradient(points, create_graph=True)
    assert sdf.shape == (128, 1) and features.shape == (128, 16) and gradient.shape == (128, 3)
    torch.testing.assert_close(gradient, torch.autograd.functional.jacobian(
        lambda x: field.sdf_network(x)[0].sum(), points), rtol=1e-4, atol=1e-6)
    eikonal = ((gradient.norm(dim=-1) - 1.0) ** 2).mean()  # no sdf term: only the second-order path
    eikonal.backward()
    assert field.encoding.table.grad.abs().sum() > 0
    assert field.sdf_mlp.layers[0].weight.grad.abs().sum() > 0


def test_model_sdf_and_surface_colours_in_scene_units():
    torch.manual_seed(0)
    config = NeuS2ModelConfig()
    config.field = NeuS2FieldConfig(**SMALL)
    config.sampler.grid_resolution = 16
    box = SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    model = config.setup(scene_box=box, num_train_data=1)
    positions = torch.cat([torch.zeros(1, 3), 0.6 * _directions(99)])
    sdf = model.sdf(positions)
    assert sdf.shape == (100, 1)
    assert math.isclose(float(sdf[0]), -0.2, abs_tol=2e-3)  # -0.1 in the unit cube = -0.2 in a 2-wide box
    assert (sdf[1:] > 0).all()
    colors = model.surface_colors(positions)
    assert colors.shape == (100, 3) and (colors >= 0).all() and (colors <= 1).all()
    assert model.sdf(torch.zeros(0, 3)).shape == (0, 1)


def test_ema_is_tcnns_debiased_average_and_serves_queries():
    torch.manual_seed(0)
    config = NeuS2ModelConfig()
    config.field = NeuS2FieldConfig(**SMALL)
    config.sampler.grid_resolution = 16
    box = SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    model = config.setup(scene_box=box, num_train_data=1)
    assert model.field_ema is not None and not any(p.requires_grad for p in model.field_ema.parameters())
    with torch.no_grad():
        model.field.variance.fill_(0.5)
    model.update_ema(0)  # the first update: the EMA equals the weights
    assert float(model.field_ema.variance) == 0.5
    with torch.no_grad():
        model.field.variance.fill_(0.7)
    model.update_ema(1)
    decay = 0.95
    expected = (decay * (1 - decay) * 0.5 + (1 - decay) * 0.7) / (1 - decay**2)
    assert math.isclose(float(model.field_ema.variance), expected, rel_tol=1e-6)
    assert model.inference_field() is model.field_ema
    with torch.no_grad():
        model.field.sdf_mlp.layers[-1].weight.mul_(3.0)  # raw weights change, the EMA (and queries) do not
    assert math.isclose(float(model.sdf(torch.zeros(1, 3))), -0.2, abs_tol=2e-3)
