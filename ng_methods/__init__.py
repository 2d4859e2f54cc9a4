"""ng-methods: neural-graphics methods as nerfstudio plugins.

Importing this package is cheap and never needs CUDA, Triton or tinycudann. It installs one compatibility
shim that nerfstudio 1.1.5 needs on torch >= 2.6 (see :mod:`ng_methods.compat.checkpoints`).
"""

from ng_methods.compat.checkpoints import allow_nerfstudio_checkpoints

__version__ = "0.1.0"

allow_nerfstudio_checkpoints()
