"""Splatfacto-W (Xu, Kerr, Kanazawa 2024, arXiv 2407.12306): Gaussian splatting for unconstrained photo collections.

``splatfacto-wild`` in nerfstudio (not ``splatfacto-w``, the name nerfstudio lists for the official external
package). Modules: :mod:`.appearance` (embedding + colour MLP -> SH), :mod:`.background` (SH sky model),
:mod:`.robust_mask` (transient mask, alpha loss), :mod:`.strategy` (densification), :mod:`.eval_protocol`
(half-image evaluation), :mod:`.datamanager` (COLMAP seed points, the official left-half protocol), :mod:`.model`
(the nerfstudio model and config).
"""

from ng_methods.splatfacto_wild.model import SplatfactoWildModel, SplatfactoWildModelConfig

__all__ = ["SplatfactoWildModel", "SplatfactoWildModelConfig"]
