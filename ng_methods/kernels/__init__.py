"""Kernels: each op has a pure-PyTorch ``reference.py`` (the spec and the CPU path) and a fast GPU backend.

Kernels never import nerfstudio, so kernel tests and benchmarks only need torch (and Triton on a GPU).
"""
