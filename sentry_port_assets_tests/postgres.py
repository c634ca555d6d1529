"""A real PostgreSQL server on loopback for the tests (Debian's `postgresql` package: `.ci/run` installs it when it is
missing). Where no server can be started the tests that need one are skipped with the reason, never faked; with
SENTRY_PORT_TESTS_REQUIRE_POSTGRES=1 (set by `.ci/run`) they fail instead."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REQUIRE = os.environ.get("SENTRY_PORT_TESTS_REQUIRE_POSTGRES") == "1"


def _binaries() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    base: Path
    port: int
    run_as: list[str]
    bin: Path

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def database(self, name: str | None = None) -> str:
        """A new, empty database; returns its URL."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        subprocess.run([str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-q",
                        "-c", f'CREATE DATABASE "{name}"'], check=True, capture_output=True, timeout=60)
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        subprocess.run([*self.run_as, str(self.bin / "pg_ctl"), "-D", str(self.base / "data"), "-m", "fast", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(self.base, ignore_errors=True)


def start_postgres() -> PostgresServer:
    """Starts a throwaway server; pytest.skip (or fail, when required) with the reason when it cannot."""
    binaries = _binaries()
    if binaries is None:
        (pytest.fail if REQUIRE else pytest.skip)("PostgreSQL's server binaries (pg_ctl) are not installed")
    base = Path(tempfile.mkdtemp(prefix="sentry-port-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root: run it as the package's `postgres` user
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            (pytest.fail if REQUIRE else pytest.skip)("running as root and there is no `postgres` user to run as")
        os.chown(base, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    server = PostgresServer(base, port, run_as, binaries)
    steps = [
        [*run_as, str(binaries / "initdb"), "-D", str(base / "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        [*run_as, str(binaries / "pg_ctl"), "-D", str(base / "data"), "-l", str(base / "server.log"), "-w", "-t", "60",
         "-o", f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c max_connections=200", "start"],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=180)
        if done.returncode != 0:
            log = (base / "server.log").read_text() if (base / "server.log").exists() else ""
            shutil.rmtree(base, ignore_errors=True)
            (pytest.fail if REQUIRE else pytest.skip)(
                f"PostgreSQL could not be started ({' '.join(step[len(run_as):len(run_as) + 1])}): "
                f"{(done.stderr or done.stdout)[-500:]} {log[-500:]}")
    return server
