"""The NNI web UI's port: checked free before anything long runs, so a busy port costs seconds, not a
supernet training."""
from __future__ import annotations

import socket
from typing import Any

from supernet.core.config import arg
from supernet.core.errors import InputError


def port_arg() -> Any:
    """The one declaration of a ``--port`` (the search's web UI, and ``supernet.view``'s)."""
    return arg(8080, "NNI web UI port")


def check_port_range(port: int) -> None:
    if not 1 <= port <= 65535:
        raise InputError(f"--port must be in [1, 65535], got {port}")


def check_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # as servers (NNI's manager among them) bind: a port whose last server closed a moment ago
        # keeps TIME_WAIT connections for a minute, and without this it would look "in use"
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise InputError(f"port {port} is already in use (another NNI experiment or web server?); "
                             f"pick another with --port") from None
