"""The NNI web UI's port: checked free before anything long runs, so a busy port costs seconds, not a
supernet training."""
from __future__ import annotations

import socket
import sys
from typing import Any

from supernet.core.config import arg
from supernet.core.errors import InputError


def port_arg() -> Any:
    """The one declaration of a ``--port`` (the search's web UI, and ``supernet.view``'s)."""
    return arg(8080, "NNI web UI port")


def host_arg() -> Any:
    """The one declaration of ``--host``: where the NNI web UI (and its REST API) listens."""
    return arg("127.0.0.1", "address the NNI web UI listens on; its REST API has no authentication, so anything "
                            "but loopback lets whoever reaches the port stop or change the experiment")


LOOPBACK = ("127.0.0.1", "localhost", "::1")
EVERYWHERE = ("0.0.0.0", "::")


def check_host(host: str) -> None:
    """Loopback, or every interface: NNI's own client reaches its manager on localhost, so a manager bound
    to one outside address only would not hear it."""
    if host not in LOOPBACK + EVERYWHERE:
        raise InputError(f"--host {host!r}: use 127.0.0.1 (this machine only, the default) or 0.0.0.0 (every "
                         "interface; NNI's own client reaches its manager on localhost)")


def url(host: str, port: int) -> str:
    return f"http://{'127.0.0.1' if host in EVERYWHERE else host}:{port}"


def warn_if_exposed(host: str, port: int) -> None:
    """One line on stderr when the web UI is reachable from elsewhere."""
    if host not in LOOPBACK:
        print(f"warning: the NNI web UI listens on {host}:{port}, and its REST API has no authentication: "
              "anyone who reaches it can stop or change the experiment", file=sys.stderr, flush=True)


def check_port_range(port: int) -> None:
    if not 1 <= port <= 65535:
        raise InputError(f"--port must be in [1, 65535], got {port}")


def check_port_free(port: int, host: str = "127.0.0.1") -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # as servers (NNI's manager among them) bind: a port whose last server closed a moment ago
        # keeps TIME_WAIT connections for a minute, and without this it would look "in use"
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            raise InputError(f"port {port} is already in use (another NNI experiment or web server?); "
                             f"pick another with --port") from None
