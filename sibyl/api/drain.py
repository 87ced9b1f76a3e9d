"""The end of a drain: close the gRPC port's connections at the TCP level before the server stops.

grpc.aio's only way to send GOAWAY is server.stop(), and from that moment gRPC core drops every call it has
received but not handed to Python yet, and every call that arrives before the client has read the GOAWAY: the
client gets CANCELLED, which no client retries (grpc/grpc#41785). So the drain (server.SibylServer.stop) first
waits until no call is in flight, then shuts the port's listening socket down (no client reconnects here) and
every connection of it (a TCP FIN, through the socket's file descriptor; gRPC still owns and closes it), then
stops the server, which now has no connection to drop a call on. A call a client sends as its connection ends
can only see the connection end: UNAVAILABLE, which a client retries on another address
(docs/deploy.md#graceful-shutdown). gRPC core logs one line about it, "Closing acceptor. Failed accept4: Invalid
argument": its listener saw the socket shut down.

The sockets are found through /proc/self/fd (Linux) or /dev/fd; where neither lists them, nothing is closed here
and server.stop() sends its GOAWAY as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
from pathlib import Path

log = logging.getLogger(__name__)
FD_DIRS = (Path("/proc/self/fd"), Path("/dev/fd"))


def _open_fds() -> list[int]:
    for directory in FD_DIRS:
        with contextlib.suppress(OSError):
            return sorted(int(name) for name in os.listdir(directory) if name.isdigit())
    return []


def port_sockets(port: int) -> tuple[list[int], list[int]]:
    """(listening, connected) file descriptors of this process's TCP sockets on local port `port`."""
    listening: list[int] = []
    connected: list[int] = []
    for fd in _open_fds():
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            sock = socket.socket(fileno=fd)
        except OSError:  # closed meanwhile, or not a socket Python can wrap
            continue
        try:
            if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
                continue
            if sock.getsockname()[1] != port:
                continue
            (listening if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) else connected).append(fd)
        except OSError:
            continue
        finally:
            sock.detach()  # the descriptor stays gRPC's: never closed here
    return listening, connected


def close_port(port: int) -> tuple[int, int]:
    """Shut down (FIN both ways) the listening sockets of `port`, so that no client reconnects here, then every
    accepted connection. Returns (listening sockets, connections) shut down."""
    listening, connected = port_sockets(port)
    return _shutdown(listening, port, True), _shutdown(connected, port, False)


def _shutdown(fds: list[int], port: int, listening: bool) -> int:
    done = 0
    for fd in fds:
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            continue
        try:
            # Still the socket port_sockets saw (a closed descriptor's number is reused at once)?
            accepting = bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
            if sock.getsockname()[1] == port and accepting == listening:
                sock.shutdown(socket.SHUT_RDWR)
                done += 1
        except OSError:  # the peer left meanwhile
            pass
        finally:
            sock.detach()
    return done
