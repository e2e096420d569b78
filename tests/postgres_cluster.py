"""A throwaway PostgreSQL cluster from Debian's packages, for the store's tests and a drill.

``make postgres`` (a dependency of ``make test``) installs Debian's ``postgresql``;
its server binaries live in ``/usr/lib/postgresql/<version>/bin``, not on PATH.
The cluster is created with ``initdb`` in a temporary folder and started with
``pg_ctl`` on a free loopback port, trusting local connections. PostgreSQL refuses
to run as root, so as root the cluster belongs to the ``postgres`` user and its
commands run through ``runuser``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from workers.devserver import free_port

DEBIAN_SERVERS = Path("/usr/lib/postgresql")
USER = "suture"


def debian_server_binaries(root: Path = DEBIAN_SERVERS) -> Path | None:
    """The ``bin`` folder of the newest PostgreSQL Debian installed, or None."""
    versions = [path.parent for path in root.glob("*/bin/initdb") if path.parent.parent.name.isdigit()]
    return max(versions, key=lambda path: int(path.parent.name)) if versions else None


class PostgresCluster:
    """``with PostgresCluster(bin_dir) as cluster: url = cluster.database("suture")``."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="suture-postgres-"))
        self.data = self.root / "data"
        self._as_owner: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            self._as_owner = ["runuser", "-u", "postgres", "--"]

    def __enter__(self) -> PostgresCluster:
        try:
            self._run("initdb", "-D", str(self.data), "-U", USER, "-A", "trust", "-E", "UTF8", "--no-sync")
            options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
            log = str(self.root / "server.log")
            self._run("pg_ctl", "-D", str(self.data), "-l", log, "-o", options, "-w", "-t", "60", "start")
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def database(self, name: str) -> str:
        """A SQLAlchemy URL of database ``name``, created when it does not exist yet."""
        import psycopg

        with psycopg.connect(self._url("postgres", driver=False), autocommit=True) as connection:
            exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if exists is None:
                connection.execute(f'CREATE DATABASE "{name}"')
        return self._url(name)

    def _url(self, database: str, driver: bool = True) -> str:
        scheme = "postgresql+psycopg" if driver else "postgresql"
        return f"{scheme}://{USER}@127.0.0.1:{self.port}/{database}"

    def _run(self, program: str, *args: str) -> None:
        command = [*self._as_owner, str(self.bin_dir / program), *args]
        finished = subprocess.run(command, capture_output=True, text=True, cwd=self.root, check=False)
        if finished.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{program} failed ({finished.returncode}): {finished.stderr.strip()}\n{tail}")
