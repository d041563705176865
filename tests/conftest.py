"""Shared fixtures: users per role, and real processes (DICOM listener, Celery worker).

Processes started here talk to the same PostgreSQL test database and Redis as the tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.db import connection

from bench.peers import free_port, port_wait
from triage.roles import Role, roles_ensure

# One Celery worker process for both queues, as in the demo (solo pool: a kill test kills it).
CELERY_WORKER_COMMAND = [
    sys.executable,
    "-m",
    "celery",
    "-A",
    "triage.config",
    "worker",
    "-Q",
    "default,inference,outbound",
    "-P",
    "solo",
    "--without-gossip",
    "--without-mingle",
    "-l",
    "INFO",
]
CHROMIUM = "/usr/bin/chromium"  # Debian's, installed by deploy/bootstrap-dev.sh --test
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


def wait_for_port(port: int, *, process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    port_wait(port, process=process, timeout=timeout)


def child_environment() -> dict[str, str]:
    """The test process's environment, pointed at the test database."""
    env = dict(os.environ)
    db = settings.DATABASES["default"]
    env["DATABASE_URL"] = (
        f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    )
    env["TCP_NODELAY"] = "1"
    env.setdefault("LOG_LEVEL", "INFO")
    return env


@dataclass
class Users:
    radiologist: User
    radiologist2: User
    clinician: User
    administrator: User
    integration: User
    nobody: User


PASSWORD = "correct-horse-battery"


def _user(username: str, role: Role | None) -> User:
    user = User.objects.create_user(username=username, password=PASSWORD)
    if role is not None:
        user.groups.add(Group.objects.get(name=str(role)))
    return user


@pytest.fixture
def users(db: None) -> Users:
    roles_ensure()
    return Users(
        radiologist=_user("rad", Role.RADIOLOGIST),
        radiologist2=_user("rad2", Role.RADIOLOGIST),
        clinician=_user("clin", Role.CLINICIAN),
        administrator=_user("admin", Role.ADMINISTRATOR),
        integration=_user("modality", Role.INTEGRATION),
        nobody=_user("nobody", None),
    )


@pytest.fixture(autouse=True)
def _clean_storage() -> Iterator[None]:
    storage = Path(settings.DICOM_STORAGE_DIR)
    shutil.rmtree(storage, ignore_errors=True)
    storage.mkdir(parents=True, exist_ok=True)
    yield


@dataclass
class Listener:
    port: int
    ae_title: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def periodic_duties_start(
    log: IO[bytes], *, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`manage.py periodic_duties`: what Celery beat schedules in production."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "periodic_duties", "--interval", "0.5"],
        cwd=ROOT,
        env=env or child_environment(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def dicom_scp_start(
    port: int, log: IO[bytes], *, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`manage.py dicom_scp` (AE TRIAGE) on `port`, writing to `log`; the caller waits for the
    port and stops it."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "dicom_scp", "--host", "127.0.0.1",
         "--port", str(port), "--ae-title", "TRIAGE"],
        cwd=ROOT, env=env or child_environment(), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


@pytest.fixture
def dicom_listener(transactional_db: None, tmp_path: Path) -> Iterator[Listener]:
    """A real `manage.py dicom_scp` process on a free port, feeding the test database, and
    the periodic duties beside it (studies become ready); both write to one log."""
    port = free_port()
    log_path = tmp_path / "dicom_scp.log"
    with open(log_path, "ab") as log:
        process = dicom_scp_start(port, log)
        duties = periodic_duties_start(log)
    try:
        wait_for_port(port, process=process)
        yield Listener(port=port, ae_title="TRIAGE", process=process, log_path=log_path)
    finally:
        for child in (process, duties):
            child.terminate()
        for child in (process, duties):
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        connection.close()


@pytest.fixture(scope="session")
def celery_worker(
    django_db_setup: None, django_db_blocker: object
) -> Iterator[subprocess.Popen[bytes]]:
    """A real Celery worker on the real Redis broker, for the test database."""
    import redis

    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.flushdb()
    ARTIFACTS.mkdir(exist_ok=True)
    log = open(ARTIFACTS / "celery-worker.log", "wb")  # noqa: SIM115 - closed at teardown
    process = subprocess.Popen(
        CELERY_WORKER_COMMAND,
        cwd=ROOT,
        env=child_environment(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    yield process
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:  # type: ignore[no-untyped-def]
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session", autouse=True)
def _release_test_database(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Close connections left in worker threads (async consumers) so the test database can be
    dropped at the end of the session."""
    yield
    name = connection.settings_dict["NAME"]
    if not str(name).startswith("test_"):
        return  # the test database was never set up in this session
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def asgi_server_start(
    tmp_path: Path,
    *,
    name: str = "web",
    extra_env: dict[str, str] | None = None,
    port: int | None = None,
) -> tuple[subprocess.Popen[bytes], int]:
    """The production ASGI app under uvicorn (static files served by the app); on `port` when
    given (a restarted server, where its clients expect it)."""
    port = port or free_port()
    env = {**child_environment(), "SERVE_STATIC": "1", **(extra_env or {})}
    log = open(tmp_path / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "triage.config.asgi:application",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--ws-max-size",  # as deploy/ runs it: a frame over 128 KiB is refused unread (1009)
            "131072",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait_for_port(port, process=process)
    return process, port


def process_stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture
def asgi_server(transactional_db: None, tmp_path: Path) -> Iterator[int]:
    process, port = asgi_server_start(tmp_path)
    yield port
    process_stop(process)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium through Playwright, one per test module."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an asyncio loop running in this thread; Django would then
    # refuse the tests' own (synchronous) database access. Allow it while the browser is open.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            yield chromium
            chromium.close()


# Fixtures kept in modules of their own, offered to every test (imported last: they use the
# helpers above).
from tests.private_postgres import private_postgres  # noqa: E402, F401
