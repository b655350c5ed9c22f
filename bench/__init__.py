"""syncd benchmarks: ``python -m bench`` runs every scenario against the simulator."""
