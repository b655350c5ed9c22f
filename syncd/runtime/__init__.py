"""The long-running process: the daemon, its ops server, health, metrics, systemd notify,
pushes and webhooks.
"""
