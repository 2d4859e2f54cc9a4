"""Gaussian-Flow (Lin et al., CVPR 2024): per-Gaussian polynomial + Fourier trajectories (``gaussian-flow``).

``dddm.py``: the Dual-Domain Deformation Model and the time mapping; ``model.py``: ``GaussianFlowModel``;
``losses.py``: the optional temporal-smoothness and KNN-rigidity regularisers (off in the released configs).
"""
