"""Tests of the data layer (ng_methods.data)."""
