"""syncd: keeps BlueKing CMDB instance associations in step with a topology source."""

__version__ = "0.1.0"
