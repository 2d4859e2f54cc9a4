"""Compact storage shared by the compressed methods (C3DGS, Light4GS-style dynamic Gaussians).

``codec.py``: uniform quantisation and entropy-coded arrays in a single-file container.
"""
