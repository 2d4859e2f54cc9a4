"""MobileR2L (Cao et al., CVPR 2023): a neural light field student distilled from a trained nerfstudio teacher.

- :mod:`.network`: the conv residual network with its super-resolution tail (``model/R2L.py``).
- :mod:`.rays`: low-resolution rays, 8 points per ray, NDC, positional embedding (``data/rays_utils.py``).
- :mod:`.model`: ``MobileR2LModel`` (one forward pass per image) and its config.
- :mod:`.datamanager`: ``MobileR2LDataManager``, whole teacher pseudo-images per step.
- :mod:`.schedule`: AdamW and the official warm-up + exponential-decay learning rate.
- :mod:`.onnx_export`, :mod:`.cli`: ``ng-export-onnx`` (onnx / onnxruntime are optional, imported lazily).

Import the submodules directly; this package imports nothing itself.
"""
