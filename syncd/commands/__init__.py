"""Command-line jobs beside the daemon: ``syncd demo`` and the ``syncd plan`` view."""
