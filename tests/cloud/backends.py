"""Real PostgreSQL and S3-compatible servers on loopback for the storage backend tests."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from lsic.testing import free_port


def _pg_bindir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


class PostgresServer:
    """A throw-away PostgreSQL cluster (Debian's postgresql package) on a loopback port."""

    def __init__(self) -> None:
        bindir = _pg_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="lsic-pg-"))
        os.chmod(self.root, 0o777)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> PostgresServer:
        data = self.root / "data"
        subprocess.run(
            _as_postgres([str(self.bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "lsic"]),
            check=True,
            capture_output=True,
        )
        cmd = [
            str(self.bindir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(self.port),
            "-k",
            str(self.root),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=on",
        ]
        self.proc = subprocess.Popen(
            _as_postgres(cmd), stdout=subprocess.DEVNULL, stderr=(self.root / "log").open("wb")
        )
        import psycopg

        deadline = time.time() + 30
        while True:
            try:
                psycopg.connect(self.dsn, connect_timeout=2).close()
                return self
            except psycopg.OperationalError:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError((self.root / "log").read_text()[-2000:]) from None
                time.sleep(0.2)

    @property
    def dsn(self) -> str:
        return f"postgresql://lsic@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        shutil.rmtree(self.root, ignore_errors=True)


class S3Server:
    """moto's S3-compatible server on a loopback port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        import sys

        exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
        self.proc = subprocess.Popen(
            [exe, "-H", "127.0.0.1", "-p", str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        import urllib.request

        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(self.endpoint, timeout=1)
                return self
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
