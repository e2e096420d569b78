"""``python -m sandbox.moto_serve --port N``: moto in server mode, in a process of its own.

moto keeps its whole AWS state in module globals, so two servers in one process
share one estate: two drill stacks in one test session would each see the other's
instances. Every :class:`~sandbox.aws.MotoSandbox` therefore runs its server here,
with the IAM policy simulation the sandbox adds to moto.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from moto.server import ThreadedMotoServer

from sandbox.aws import serve_policy_simulation
from sandbox.ports import LOOPBACK


def serve(host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    stopping = threading.Event()
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, lambda *_: stopping.set())
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    serve_policy_simulation()
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    try:
        stopping.wait()
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--port", type=int, required=True)
    arguments = parser.parse_args(argv)
    serve(arguments.host, arguments.port)


if __name__ == "__main__":
    main()
