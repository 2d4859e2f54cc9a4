"""PVD-AL: Progressive Volume Distillation with Active Learning (Fang et al., AAAI'23 / arXiv 2304.04012).

A trained nerfstudio model (the teacher) is converted into another architecture (the student: MLP NeRF, hash or
dense grid, TensoRF VM) by matching, on the same ray samples, first the intermediate features, then the
pre-activation density and the colour, then the rendered colour; with hard poses, hard rays and high-weight
points emphasised (official code: megvii-research/AAAI2023-PVD, branch ``PVD-AL``).
"""
