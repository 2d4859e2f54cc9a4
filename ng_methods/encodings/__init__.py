"""Trainable input encodings as ``nn.Module`` s (no nerfstudio dependency)."""

from ng_methods.encodings.grid import GridEncoding

__all__ = ["GridEncoding"]
