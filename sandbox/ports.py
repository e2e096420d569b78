"""Free loopback ports for the sandbox's servers.

Servers written in Python bind port 0 and read back the port they got. Prometheus
and Alertmanager take their address on the command line, so for them the port is
picked here and released just before they bind it; a caller that loses the race
sees the server exit with "address already in use" and picks again.
"""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port
