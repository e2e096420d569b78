"""``python -m sandbox.kube_serve --port N``: the sandbox's Kubernetes API in a process of its own.

The drills serve the emulator from a thread of the suture process. Benchmarks
run it here instead, so that the emulator's request handling does not share the
worker's interpreter (and its GIL) and the figures measure suture.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from sandbox.kube import KubeEmulator
from sandbox.ports import LOOPBACK

READY = "kube-emulator listening on "
"""The line printed once the server accepts connections, followed by its URL."""


async def serve(host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for stop in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(stop, stopping.set)
    async with KubeEmulator(host, port) as kube:
        print(f"{READY}{kube.url}", flush=True)
        await stopping.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--port", type=int, default=0)
    arguments = parser.parse_args(argv)
    asyncio.run(serve(arguments.host, arguments.port))


if __name__ == "__main__":
    main()
