"""Mask culling with synthetic nerfstudio cameras: vertices inside the (dilated) masks stay, the rest go."""

import numpy as np
import torch

from ng_methods.surfaces.culling import (
    cull_mesh,
    dilate_mask,
    dtu_dilation_radius,
    project_to_pixels,
    vertices_inside_masks,
)

SIZE, FOCAL = 64, 50.0
INTRINSICS = torch.tensor([[FOCAL, FOCAL, SIZE / 2, SIZE / 2]] * 2, dtype=torch.float64)
# Camera 0 at +z looking at the origin (nerfstudio/OpenGL: looks down its -z); camera 1 at +x looking at the origin.
POSES = torch.tensor(
    [
        [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 3.0]],
        [[0, 0, 1, 3.0], [0, 1, 0, 0], [-1, 0, 0, 0]],
    ],
    dtype=torch.float64,
)


def disk_mask(radius: float) -> np.ndarray:
    rows, columns = np.mgrid[:SIZE, :SIZE] + 0.5
    return ((rows - SIZE / 2) ** 2 + (columns - SIZE / 2) ** 2 <= radius**2).astype(np.uint8) * 255


def test_projection_convention():
    pixels, depth = project_to_pixels(torch.tensor([[0.0, 0.0, 0.0], [0.3, 0.3, 0.0]], dtype=torch.float64),
                                      POSES[0], INTRINSICS[0])
    torch.testing.assert_close(depth, torch.tensor([3.0, 3.0], dtype=torch.float64))
    torch.testing.assert_close(pixels[0], torch.tensor([32.0, 32.0], dtype=torch.float64))
    assert pixels[1, 0] > 32 and pixels[1, 1] < 32  # +x is right, +y is up (smaller row)


def test_inside_masks_kept_outside_dropped():
    vertices = torch.tensor(
        [
            [0.0, 0.0, 0.0],  # centre of both masks
            [0.5, 0.0, 0.0],  # 8.3 px off-centre in camera 0, centre in camera 1
            [1.0, 0.0, 0.0],  # 16.7 px off-centre in camera 0: outside its mask
            [0.0, 1.5, 0.0],  # 25 px off-centre in both cameras: outside both masks, dilated or not
            [2.5, 0.0, 0.0],  # outside camera 0's image (does not vote), centre of camera 1's mask
        ],
        dtype=torch.float64,
    )
    masks = [disk_mask(10), disk_mask(10)]
    keep = vertices_inside_masks(vertices, POSES, INTRINSICS, masks, dilation_radius=0)
    assert keep.tolist() == [True, True, False, False, True]
    dilated = vertices_inside_masks(vertices, POSES, INTRINSICS, masks, dilation_radius=8)
    assert dilated.tolist() == [True, True, True, False, True]


def test_behind_the_camera_does_not_vote():
    vertices = torch.tensor([[0.0, 0.0, 5.0]], dtype=torch.float64)  # behind camera 0
    empty = np.zeros((SIZE, SIZE), dtype=np.uint8)
    keep = vertices_inside_masks(vertices, POSES[:1], INTRINSICS[:1], [empty], dilation_radius=0)
    assert keep.tolist() == [True]


def test_mask_channels_and_dilation():
    mask = np.zeros((9, 9, 3), dtype=np.uint8)
    mask[4, 4, 0] = 1  # the official rule: any non-zero value of the first channel is foreground
    assert dilate_mask(mask, 0).sum() == 1
    assert dilate_mask(mask, 2).sum() == 13  # disk(2)
    assert dtu_dilation_radius(1600) == 24 and dtu_dilation_radius(400) == 6 and dtu_dilation_radius(10) == 1


def test_cull_mesh_drops_faces_of_culled_vertices_and_reindexes():
    vertices = np.arange(15, dtype=np.float64).reshape(5, 3)
    faces = np.array([[0, 1, 2], [1, 2, 3], [2, 3, 4], [0, 2, 4]])
    keep = np.array([True, False, True, True, True])
    kept_vertices, kept_faces = cull_mesh(vertices, faces, keep)
    np.testing.assert_array_equal(kept_vertices, vertices[[0, 2, 3, 4]])
    np.testing.assert_array_equal(kept_faces, [[1, 2, 3], [0, 1, 3]])
