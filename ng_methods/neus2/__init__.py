"""NeuS2 (Wang et al., ICCV 2023): a NeuS SDF on a multi-resolution hash grid with progressive levels and
occupancy-grid marching, following the official CUDA code (19reborn/NeuS2 @081b8191)."""
