"""Configuration: the settings model, how the file is loaded, and the start-up checks pydantic
cannot do.
"""
