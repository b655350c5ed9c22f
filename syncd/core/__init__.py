"""The pure core: decisions from values (pairs, diff, batching, answers, outcomes, prune,
plan). No I/O; imports only the standard library and itself.
"""
