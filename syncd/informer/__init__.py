"""List + watch: follow the CMDB's association events after a relation's list, repair drift,
relist on gaps.
"""
