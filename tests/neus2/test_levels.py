"""NeuS2's progressive level schedule (NeuS2_TCNN grid.h ``set_training_step``, DTU config values)."""

import torch

from ng_methods.neus2.field import NeuS2Field, NeuS2FieldConfig
from ng_methods.neus2.levels import ProgressiveLevelsConfig, active_levels, level_feature_mask, valid_level

DTU = ProgressiveLevelsConfig()


def test_valid_level_follows_the_official_formula():
    # ceil(0.2 * 14 + 0.02 * max(0, step - 200)), capped at 14; step 0 runs with every level.
    assert valid_level(0, 14, DTU) == 14
    assert [valid_level(s, 14, DTU) for s in (1, 100, 200, 210)] == [3, 3, 3, 3]
    assert valid_level(211, 14, DTU) == 4
    assert valid_level(660, 14, DTU) == 12
    assert valid_level(661, 14, DTU) == 13
    assert valid_level(710, 14, DTU) == 13 and valid_level(711, 14, DTU) == 14
    assert valid_level(15000, 14, DTU) == 14


def test_levels_up_to_valid_level_are_active():
    # The kernel masks `level > valid_level`: 4 active levels at the start, all 14 from step 661.
    assert active_levels(1, 14, DTU) == 4
    assert active_levels(660, 14, DTU) == 13
    assert active_levels(661, 14, DTU) == 14
    counts = [active_levels(s, 14, DTU) for s in range(1, 1000)]
    assert counts == sorted(counts)
    assert active_levels(1, 14, ProgressiveLevelsConfig(enabled=False)) == 14


def test_feature_mask_is_level_major():
    mask = level_feature_mask(1, 14, 2, DTU)
    assert mask.shape == (28,)
    assert mask[:8].eq(1).all() and mask[8:].eq(0).all()


def test_masked_levels_give_zero_features_and_zero_gradients():
    torch.manual_seed(0)
    # No geometric init: its zero encoding weights would give every level a zero gradient at the first step.
    config = NeuS2FieldConfig(n_levels=6, log2_hashmap_size=10, top_resolution=64.0, geometric_init=False)
    field = NeuS2Field(config,
                       ProgressiveLevelsConfig(base_valid_level_scale=0.2, base_training_step=200))
    field.set_step(1)  # ceil(0.2 * 6) = 2: levels 0..2 active
    spec = field.encoding.spec
    offsets = spec.level_offsets()
    with torch.no_grad():
        field.encoding.table.uniform_(-1.0, 1.0)  # masked levels would matter if they leaked
    points = torch.rand(256, 3)
    encoded = field.encoding(points) * field.level_mask
    assert encoded[:, 6:].eq(0).all() and encoded[:, :6].ne(0).any()
    sdf, _, gradient = field.sdf_and_gradient(points, create_graph=True)
    (sdf.sum() + ((gradient.norm(dim=-1) - 1.0) ** 2).mean()).backward()
    grad = field.encoding.table.grad
    assert grad[offsets[3]:].eq(0).all(), "masked levels received gradients"
    assert grad[: offsets[3]].ne(0).any()
