"""NeRDF student (Wu et al., ICCV 2023): distils a trained nerfstudio model into a one-forward-per-ray network."""

from ng_methods.distill.nerdf.model import NeRDFModel, NeRDFModelConfig

__all__ = ["NeRDFModel", "NeRDFModelConfig"]
