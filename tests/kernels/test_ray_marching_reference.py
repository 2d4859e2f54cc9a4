"""Ray-marching reference: step rule, occupancy skipping, multi-level lookup."""

import torch

from ng_methods.kernels.ray_marching import march_occupancy_grid, occupancy_lookup

UNIT_BOX = torch.tensor([[-1.0, -1.0, -1.0, 1.0, 1.0, 1.0]])


def test_constant_steps_inside_box():
    occ = torch.ones(1, 8, 8, 8, dtype=torch.bool)
    rays_o = torch.tensor([[0.0, 0.0, -3.0], [5.0, 5.0, 5.0]])
    rays_d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])  # the second ray misses the box
    ri, t0, t1 = march_occupancy_grid(rays_o, rays_d, occ, UNIT_BOX, torch.zeros(2), torch.full((2,), 100.0), 0.25)
    assert torch.all(ri == 0)
    torch.testing.assert_close(t0, 2.0 + 0.25 * torch.arange(8.0))
    torch.testing.assert_close(t1 - t0, torch.full((8,), 0.25))


def test_empty_cells_are_skipped():
    occ = torch.zeros(1, 2, 2, 2, dtype=torch.bool)
    occ[0, :, :, 1] = True  # only z > 0 occupied
    ri, t0, t1 = march_occupancy_grid(
        torch.tensor([[0.1, 0.1, -3.0]]), torch.tensor([[0.0, 0.0, 1.0]]), occ, UNIT_BOX,
        torch.zeros(1), torch.full((1,), 100.0), 0.1,
    )
    mids = -3.0 + (t0 + t1) / 2
    assert len(ri) == 10 and torch.all(mids > 0)


def test_cone_angle_steps_grow_geometrically():
    occ = torch.ones(4, 4, 4, 4, dtype=torch.bool)
    boxes = torch.cat([UNIT_BOX * 2**level for level in range(4)])
    step, cone = 0.01, 1 / 64
    ri, t0, t1 = march_occupancy_grid(
        torch.zeros(1, 3), torch.tensor([[1.0, 0.0, 0.0]]), occ, boxes, torch.full((1,), 0.05),
        torch.full((1,), 1e3), step, cone,
    )
    dt = t1 - t0
    early = t0 < step / cone
    torch.testing.assert_close(dt[early][:-1], torch.full_like(dt[early][:-1], step))
    late = t0 > step / cone + step
    torch.testing.assert_close(dt[late][:-1], t0[late][:-1] * cone, rtol=1e-4, atol=1e-6)
    # Stops at the outermost box: the last midpoint is inside it, the interval is not clipped (as in nerfacc).
    assert float(t0[-1] + (t1[-1] - t0[-1]) * 0.5) < 8.0 < float(t1[-1])


def test_lookup_uses_finest_containing_level():
    binaries = torch.zeros(2, 2, 2, 2, dtype=torch.bool)
    binaries[1] = True  # coarse level occupied everywhere, fine level empty
    boxes = torch.cat([UNIT_BOX, UNIT_BOX * 2])
    points = torch.tensor([[0.5, 0.5, 0.5], [1.5, 0.0, 0.0], [3.0, 0.0, 0.0]])
    assert occupancy_lookup(points, binaries, boxes).tolist() == [False, True, False]
