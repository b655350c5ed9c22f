"""Small building blocks with no knowledge of syncd's domain: logging, task groups, bounded
HTTP bodies, secrets.
"""
