"""Why the daemon cannot start serving, apart from the server that raises it.

The command line catches it for every daemon, so it lives where importing it does not
pull in aiohttp's server side (which only a daemon with an ops server or a webhook needs).
"""


class OpsUnavailable(OSError):
    """The ops address is taken (or refused): exit 75, systemd tries again later."""
