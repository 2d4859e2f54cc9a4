"""Meshes out of SDF models and geometry evaluation (issue 11, parts 4 and 5).

* :mod:`.protocol`: the duck-typed interface a model needs (``sdf``, ``surface_colors``).
* :mod:`.marching_cubes`: blocked SDF evaluation on a lattice + scikit-image marching cubes.
* :mod:`.mesh_io`: vertex colours, the map to world coordinates (``scale_mat``), binary ``.ply`` read/write.
* :mod:`.culling`: mask-based culling as in the DTU evaluation of NeuS / 2DGS (``cull_scan``).
* :mod:`.geometry_metrics`: mask IoU, normal consistency, DTU-protocol Chamfer distance.
* :mod:`.cli`: ``ng-extract-mesh`` and ``ng-eval-geometry``.

Nothing here imports nerfstudio at import time except :mod:`.cli` and :mod:`.loading` (the run loaders).
"""
