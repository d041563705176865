"""A private PostgreSQL cluster for the drills that stop and start the database (never the
machine's shared one): made with initdb under a temporary folder, migrated, removed after."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.conftest import ROOT, child_environment, free_port

PG_BIN = Path("/usr/lib/postgresql")


def _pg_tool(name: str) -> str:
    found = sorted(PG_BIN.glob(f"*/bin/{name}"))
    if not found:
        pytest.fail(f"PostgreSQL's {name} is not installed under {PG_BIN}")
    return str(found[-1])


@dataclass
class Cluster:
    folder: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/drill"

    def ctl(self, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", _pg_tool("pg_ctl"), "-D", str(self.folder),
             "-w", "-t", "30", *args],
            check=True, capture_output=True,
        )  # fmt: skip

    def start(self) -> None:
        self.ctl("-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
                 "-c fsync=off", "-l", str(self.folder / "server.log"), "start")  # fmt: skip

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with psycopg.connect(self.url) as connection:
            return list(connection.execute(sql, params).fetchall())


@pytest.fixture
def private_postgres() -> Iterator[Cluster]:
    folder = Path(tempfile.mkdtemp(prefix="triage-drill-pg-"))
    shutil.chown(folder, "postgres", "postgres")
    cluster = Cluster(folder=folder / "data", port=free_port())
    subprocess.run(
        ["runuser", "-u", "postgres", "--", _pg_tool("initdb"), "-D", str(cluster.folder),
         "-A", "trust", "-U", "postgres", "--no-sync"],
        check=True, capture_output=True,
    )  # fmt: skip
    cluster.start()
    try:
        subprocess.run([_pg_tool("createdb"), "-h", "127.0.0.1", "-p", str(cluster.port),
                        "-U", "postgres", "drill"], check=True, capture_output=True)  # fmt: skip
        env = {**child_environment(), "DATABASE_URL": cluster.url}
        subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "-v", "0"],
                       cwd=ROOT, env=env, check=True, capture_output=True)  # fmt: skip
        yield cluster
    finally:
        stop = [_pg_tool("pg_ctl"), "-D", str(cluster.folder), "-m", "immediate", "stop"]
        subprocess.run(["runuser", "-u", "postgres", "--", *stop], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
