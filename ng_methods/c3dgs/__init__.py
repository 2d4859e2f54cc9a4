"""C3DGS: Compact 3D Gaussian Representation (Lee et al., CVPR 2024) on the ng-methods splat base.

* :mod:`.mask`: learnable volume mask with a straight-through estimator;
* :mod:`.color_field`: hash-grid + MLP colour field replacing per-Gaussian SH;
* :mod:`.rvq`: residual vector quantisation of scale and rotation;
* :mod:`.sh_bake`: least-squares baking of the colour field into degree-3 SH (for standard 3DGS exports);
* :mod:`.compact`: the compact file (quantised, entropy-coded), its loader and the ``.ply`` converter;
* :mod:`.model`: ``C3DGSModel`` / ``C3DGSModelConfig``; :mod:`.cli`: ``ng-c3dgs-export`` and ``ng-c3dgs-to-ply``.
"""
