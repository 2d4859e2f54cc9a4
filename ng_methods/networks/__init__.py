"""Small neural networks shared by the methods."""

from ng_methods.networks.tiny_mlp import TinyMLP

__all__ = ["TinyMLP"]
