"""The reconcile engine: each relation's stages (observe, pull, plan, apply, record) and the
known state they keep.
"""
