"""Talking to BlueKing CMDB through the legacy ESB or the API gateway."""
