"""Gaussian-splatting base shared by our splat methods: nerfstudio's ``SplatfactoModel`` made device-agnostic.

``NGSplatModel`` keeps Splatfacto's parameters, densification (gsplat ``DefaultStrategy``), losses and its
``ns-export gaussian-splat`` / viewer interfaces, and rasterises through :func:`ng_methods.kernels.splat.rasterize`
(gsplat on CUDA, the pure-PyTorch reference elsewhere). Methods customise it through small hooks
(:meth:`NGSplatModel.gaussians_for_camera`, :meth:`NGSplatModel.background_image`, ...) instead of copying
``get_outputs``.
"""
