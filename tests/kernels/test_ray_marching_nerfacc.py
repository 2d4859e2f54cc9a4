"""The CPU marcher returns nerfacc's samples exactly.

Peer: nerfacc 0.5.2 ``traverse_grids`` (``nerfacc/cuda/csrc/grid.cu`` @d84cdf3afd7dcfc42150e0f0506db58a5ce62812, the
v0.5.2 tag, identical to the sources installed with nerfacc 0.5.2), through the scalar float32 transcription in
``tests/kernels/nerfacc_transcription.py``: same sample count per ray and bit-identical ``t_starts``/``t_ends``.
"""

from types import SimpleNamespace

import nerfacc.grid
import pytest
import torch
from nerfstudio.cameras.rays import RayBundle

from ng_methods.kernels.ray_marching import march_occupancy_grid, reference
from ng_methods.ngpc.sampler import OccupancySampler, OccupancySamplerConfig
from tests.kernels.nerfacc_transcription import traverse_ray

UNIT_BOX = torch.tensor([[-1.0, -1.0, -1.0, 1.0, 1.0, 1.0]])
FULL = torch.ones(1, 8, 8, 8, dtype=torch.bool)


def _march_one(o, near, far, step=0.5):
    _, t0, t1 = march_occupancy_grid(torch.tensor([o]), torch.tensor([[0.0, 0.0, 1.0]]), FULL, UNIT_BOX,
                                     torch.tensor([near]), torch.tensor([far]), step)
    return list(zip(t0.tolist(), t1.tolist()))


def test_steps_start_at_near_not_at_the_box_entry():
    # Box entry 2.03: nerfacc keeps the step grid of near = 0 (midpoint 2.25 is the first inside).
    samples = _march_one([0.0, 0.0, -3.03], 0.0, 100.0)
    assert samples == [(2.0, 2.5), (2.5, 3.0), (3.0, 3.5), (3.5, 4.0)]


def test_last_interval_is_not_clipped_to_far():
    # The last step has its midpoint 3.25 before far = 3.3 and keeps its full length.
    assert _march_one([0.0, 0.0, -3.03], 2.0, 3.3) == [(2.0, 2.5), (2.5, 3.0), (3.0, 3.5)]


def _grid(levels, res, occupancy, seed, offset=0.0):
    g = torch.Generator().manual_seed(seed)
    base = torch.tensor([-1.0, -0.8, -1.2, 1.1, 0.9, 1.0]) + offset
    aabbs = torch.stack([base * 2**level for level in range(levels)])
    return torch.rand(levels, *res, generator=g) < occupancy, aabbs


def _rays(n, spread, near_max, seed, lattice):
    """Rays from a cube of side ``spread`` towards points of the finest box."""
    g = torch.Generator().manual_seed(seed)
    if lattice:  # origins, targets and planes on the cell lattice: midpoints and faces coincide exactly
        o = torch.randint(-12, 13, (n, 3), generator=g).float() / 4
        target = torch.randint(-4, 5, (n, 3), generator=g).float() / 4
        near = torch.randint(0, int(near_max * 4) + 1, (n,), generator=g).float() / 4
        far = torch.randint(4, 30, (n,), generator=g).float() / 4
    else:
        o = (torch.rand(n, 3, generator=g) - 0.5) * spread
        target = torch.rand(n, 3, generator=g) * 2 - 1
        near = torch.rand(n, generator=g) * near_max
        far = 1.0 + torch.rand(n, generator=g) * spread
    d = target - o
    d[(d == 0).all(dim=1)] = torch.tensor([1.0, 0.0, 0.0])
    far = torch.where(torch.rand(n, generator=g) < 0.4, torch.full((n,), 1e10), far)
    return o, torch.nn.functional.normalize(d, dim=-1), near, far


def _assert_matches_transcription(o, d, binaries, aabbs, near, far, step, cone, simulate=None):
    if simulate is None:
        ri, t0, t1 = march_occupancy_grid(o, d, binaries, aabbs, near, far, step, cone)
    else:
        ri, t0, t1 = reference._march(o, d, binaries, aabbs, near, far, step, cone, simulate)
    assert torch.all(ri[1:] >= ri[:-1])
    for r in range(o.shape[0]):
        peer = traverse_ray(o[r].tolist(), d[r].tolist(), binaries.numpy(), aabbs.tolist(), float(near[r]),
                            float(far[r]), step, cone)
        ours = list(zip(t0[ri == r].tolist(), t1[ri == r].tolist()))
        assert ours == [(float(a), float(b)) for a, b in peer], f"ray {r}"


GRIDS = {
    "1 level, dense": dict(levels=1, res=(16, 16, 16), occupancy=0.9, seed=0),
    "3 levels, offset boxes": dict(levels=3, res=(8, 6, 10), occupancy=0.4, seed=1, offset=0.25),
    "4 levels, sparse": dict(levels=4, res=(24, 24, 24), occupancy=0.15, seed=2),
}


@pytest.mark.parametrize("grid", GRIDS.values(), ids=GRIDS.keys())
@pytest.mark.parametrize("cone_angle", [0.0, 1 / 64])
@pytest.mark.parametrize("lattice", [False, True], ids=["random rays", "lattice rays"])
def test_matches_grid_cu_transcription(grid, cone_angle, lattice):
    binaries, aabbs = _grid(**grid)
    o, d, near, far = _rays(40, 2.5 * 2 ** grid["levels"], 2.0, seed=10 + grid["seed"], lattice=lattice)
    step = 0.125 if lattice else 0.0173
    _assert_matches_transcription(o, d, binaries, aabbs, near, far, step, cone_angle)


def test_camera_inside_the_grid_with_instant_ngp_settings():
    binaries, aabbs = _grid(levels=4, res=(32, 32, 32), occupancy=0.3, seed=3)
    o, d, _, _ = _rays(40, 1.5, 0.0, seed=4, lattice=False)
    near, far = torch.full((40,), 0.05), torch.full((40,), 1e3)
    for cone in (0.0, 1 / 256):
        _assert_matches_transcription(o, d, binaries, aabbs, near, far, 2 * 3**0.5 / 1000, cone)


def test_constant_step_fast_path_equals_the_per_ray_simulation():
    binaries, aabbs = _grid(levels=2, res=(16, 12, 10), occupancy=0.5, seed=5)
    for lattice in (False, True):
        o, d, near, far = _rays(200, 8.0, 2.0, seed=6, lattice=lattice)
        fast = reference._march(o, d, binaries, aabbs, near, far, 0.05, 0.0, False)
        simulated = reference._march(o, d, binaries, aabbs, near, far, 0.05, 0.0, True)
        for a, b in zip(fast, simulated):
            assert torch.equal(a, b)


def test_ray_in_a_box_face_plane_stops_with_the_cells():
    # d.x == 0 with o.x on the box face: grid.cu's slab test gives 0 * inf = NaN and an infinite box exit; the
    # marching still stops where the DDA leaves the grid, not at far = 1e10.
    binaries, aabbs = _grid(levels=2, res=(8, 8, 8), occupancy=0.6, seed=7, offset=0.0)
    o = torch.tensor([[aabbs[0, 0].item(), 0.1, -3.0], [aabbs[1, 3].item(), -0.3, 2.5]])
    d = torch.nn.functional.normalize(torch.tensor([[0.0, 0.2, 1.0], [0.0, 0.0, -1.0]]), dim=-1)
    for far in (1e10, float("inf")):
        for cone in (0.0, 0.01):
            _assert_matches_transcription(o, d, binaries, aabbs, torch.zeros(2), torch.full((2,), far), 0.01, cone)


BAD = {
    "nan origin": ([float("nan"), 0.0, -3.0], [0.0, 0.0, 1.0], 0.0, 10.0),
    "inf direction": ([0.0, 0.0, -3.0], [0.0, float("inf"), 1.0], 0.0, 10.0),
    "zero direction": ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], 0.0, 10.0),
    "nan near": ([0.0, 0.0, -3.0], [0.0, 0.0, 1.0], float("nan"), 10.0),
    "-inf near": ([0.0, 0.0, -3.0], [0.0, 0.0, 1.0], float("-inf"), 10.0),
    "nan far": ([0.0, 0.0, -3.0], [0.0, 0.0, 1.0], 0.0, float("nan")),
}


@pytest.mark.parametrize("cone_angle", [0.0, 0.05])
@pytest.mark.parametrize("bad", BAD.values(), ids=BAD.keys())
def test_a_bad_ray_produces_no_samples_and_leaves_the_others_alone(bad, cone_angle):
    binaries, aabbs = _grid(levels=2, res=(8, 8, 8), occupancy=0.5, seed=8)
    o, d, near, far = _rays(6, 4.0, 1.0, seed=9, lattice=False)
    alone = march_occupancy_grid(o, d, binaries, aabbs, near, far, 0.05, cone_angle)
    o, d = torch.cat([o[:3], torch.tensor([bad[0]]), o[3:]]), torch.cat([d[:3], torch.tensor([bad[1]]), d[3:]])
    near = torch.cat([near[:3], torch.tensor([bad[2]]), near[3:]])
    far = torch.cat([far[:3], torch.tensor([bad[3]]), far[3:]])
    ri, t0, t1 = march_occupancy_grid(o, d, binaries, aabbs, near, far, 0.05, cone_angle)
    assert not torch.any(ri == 3)
    assert torch.equal(ri - (ri > 3).long(), alone[0]) and torch.equal(t0, alone[1]) and torch.equal(t1, alone[2])


def test_infinite_far_is_allowed():
    assert _march_one([0.0, 0.0, -3.03], 0.0, float("inf")) == _march_one([0.0, 0.0, -3.03], 0.0, 100.0)


def test_nerfacc_backend_gets_the_bad_rays_masked(monkeypatch):
    seen = {}

    def fake_traverse_grids(rays_o, rays_d, binaries, aabbs, near_planes, far_planes, step_size, cone_angle):
        seen["near"] = near_planes
        empty = torch.zeros(0)
        return SimpleNamespace(vals=empty, is_left=empty.bool(), is_right=empty.bool()), SimpleNamespace(
            ray_indices=empty.long())

    monkeypatch.setattr(nerfacc.grid, "traverse_grids", fake_traverse_grids)
    o = torch.tensor([[0.0, 0.0, -3.0], [float("nan"), 0.0, -3.0], [0.0, 0.0, -3.0]])
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    march_occupancy_grid(o, d, FULL, UNIT_BOX, torch.full((3,), 0.5), torch.full((3,), 9.0), 0.1, backend="nerfacc")
    assert seen["near"].tolist() == [0.5, float("inf"), float("inf")]


def test_training_near_plane_jitter_moves_the_samples():
    config = OccupancySamplerConfig(grid_resolution=16, render_step_size=0.05, alpha_thre=0.0, early_stop_eps=0.0)
    sampler = OccupancySampler(config, torch.tensor([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0]))
    sampler.estimator.binaries.fill_(True)
    g = torch.Generator().manual_seed(10)
    bundle = RayBundle(origins=(torch.rand(16, 3, generator=g) - 0.5) * 0.2 + torch.tensor([0.0, 0.0, -3.0]),
                       directions=torch.nn.functional.normalize(torch.tensor([0.0, 0.0, 1.0]) + 0.1 * torch.randn(
                           16, 3, generator=g), dim=-1), pixel_area=torch.ones(16, 1))

    def starts(seed):
        torch.manual_seed(seed)
        samples, ray_indices = sampler(bundle, density_fn=None)
        return samples.frustums.starts[:, 0], ray_indices

    def first_per_ray(values, ray_indices):
        return values[torch.cat([torch.ones(1, dtype=torch.bool), ray_indices[1:] != ray_indices[:-1]])]

    sampler.eval()
    (plain, ri), (again, _) = starts(0), starts(1)
    assert torch.equal(plain, again)  # no jitter outside training
    assert len(set(first_per_ray(plain, ri).tolist())) < 8  # all rays on near's step grid, not at their box entry
    sampler.train()
    (jittered, ri), (other, _) = starts(0), starts(1)
    assert not torch.equal(jittered[: len(other)], other[: len(jittered)])
    assert len(set(first_per_ray(jittered, ri).tolist())) == 16  # one jittered step grid per ray


@pytest.mark.skipif(not torch.cuda.is_available(), reason="nerfacc's traverse_grids is CUDA only")
@pytest.mark.parametrize("cone_angle", [0.0, 1 / 256], ids=["constant-step", "cone"])
def test_reference_matches_nerfacc_on_a_gpu(cone_angle):
    """Peer: nerfacc 0.5.2's compiled ``traverse_grids`` itself. A midpoint within an ulp of a cell face may be
    placed differently by nvcc's FMA contraction (see ``_traversal``), so per ray the sample counts may differ by
    such a step; everything else must be identical."""
    binaries, aabbs = _grid(levels=2, res=(32, 32, 32), occupancy=0.4, seed=11)
    o, d, near, far = _rays(512, 6.0, 1.0, seed=12, lattice=False)
    ours = march_occupancy_grid(o, d, binaries, aabbs, near, far, 0.01, cone_angle, backend="torch")
    cuda = [t.cuda() for t in (o, d, binaries, aabbs, near, far)]
    theirs = [t.cpu() for t in march_occupancy_grid(*cuda, 0.01, cone_angle, backend="nerfacc")]
    counts = [torch.bincount(result[0], minlength=len(o)) for result in (ours, theirs)]
    same_rays = counts[0] == counts[1]
    assert same_rays.float().mean() >= 0.99, f"{int((~same_rays).sum())} of {len(o)} rays differ"
    keep = [same_rays[result[0]] for result in (ours, theirs)]
    for ours_t, theirs_t in zip(ours[1:], theirs[1:]):
        torch.testing.assert_close(ours_t[keep[0]], theirs_t[keep[1]], rtol=0, atol=0)
