"""Topology sources: where the desired relationship facts come from."""
