"""Data layer: dataparsers for the scene formats our methods train on, and the input validation they share.

This package deliberately imports nothing at package level. Dataparser entry points
(``ng_methods.data.specs``) are loaded by nerfstudio while ``base_datamanager`` is still being imported, so every
module reachable from ``specs`` must only import dataparser-level nerfstudio code (never datamanagers, pipelines or
models), or nerfstudio fails with a circular import.

Modules:

- :mod:`ng_methods.data.validation`: ``DataValidationError`` and the checks (JSON, image files, poses, intrinsics)
  that turn bad input into one clear error at startup.
- :mod:`ng_methods.data.blender`: ``ng-blender-data``, nerfstudio's Blender parser plus validation.
- :mod:`ng_methods.data.llff`: ``llff-data``, ``poses_bounds.npy`` scenes (LLFF forward-facing captures, and
  photo collections in the same format, with optional masks).
- :mod:`ng_methods.data.phototourism`: ``ng-phototourism-data``, Phototourism scenes with NeRF-W's ``.tsv`` split
  (Splatfacto-W's official data), COLMAP points as seed points.
- :mod:`ng_methods.data.specs`: the ``DataParserSpecification`` objects registered as entry points.
"""
