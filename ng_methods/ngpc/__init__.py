"""NGPC NeRFs: Instant-NGP-style radiance fields on the three encodings profiled by Mubarik et al. (ISCA 2023)."""
