"""Free 127.0.0.1 ports and waits for TCP or HTTP readiness."""

from __future__ import annotations

import socket

# one implementation of free ports and HTTP readiness, shared with `movierec demo`
from movierec.process import HOST, free_port, http_ok

__all__ = ["HOST", "free_port", "http_ok", "port_open"]


def port_open(port: int, host: str = HOST) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False
