"""Shared fixtures: the same service tests run on SQLite and on a real PostgreSQL.

`make test` starts PostgreSQL on 127.0.0.1 and exports SMIS_TEST_POSTGRES_URL. Each
test gets a fresh database copied from a template that already holds the schema, the
categories and the 5165 generated units, so every test starts from the same state.

It also starts PgBouncer (transaction pooling) in front of that server and exports
SMIS_TEST_PGBOUNCER_URL. With SMIS_TEST_VIA_PGBOUNCER=1 every PostgreSQL test's app
connection goes through it (the scratch databases are still made directly), e.g.
``SMIS_TEST_VIA_PGBOUNCER=1 scripts/test-services.sh .venv/bin/pytest tests/integration/test_review.py``;
tests/integration/test_pgbouncer.py always does (docs/pgbouncer.md).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from models import template
from models.db import (
    close_database,
    database_named,
    open_database,
    server_execute,
)
from models.migrate import upgrade
from models.schema import Unit
from models.unit_data import load_generated_units
from smis_tui.core.config import Settings
from smis_tui.services import Services, build_services
from smis_tui.services.crypto import create_key_file
from tests.helpers import branch
from tests.wheel_install import Installed

POSTGRES_URL_ENV = "SMIS_TEST_POSTGRES_URL"
PGBOUNCER_URL_ENV = "SMIS_TEST_PGBOUNCER_URL"
VIA_PGBOUNCER_ENV = "SMIS_TEST_VIA_PGBOUNCER"
TEMPLATE_DB = "smis_template"


def postgres_admin_url() -> str:
    url = os.environ.get(POSTGRES_URL_ENV)
    if url:
        return url
    if os.environ.get("CI") or os.environ.get("SMIS_REQUIRE_POSTGRES"):
        pytest.fail(
            f"{POSTGRES_URL_ENV} is not set: run the tests with `make test`, which starts PostgreSQL"
        )
    pytest.skip(f"PostgreSQL not started ({POSTGRES_URL_ENV} unset); `make test` runs these")


def pgbouncer_url() -> str:
    """The PgBouncer in front of the test PostgreSQL; a failure, not a skip, under CI."""
    url = os.environ.get(PGBOUNCER_URL_ENV)
    if url:
        return url
    if os.environ.get("CI") or os.environ.get("SMIS_REQUIRE_POSTGRES"):
        pytest.fail(
            f"{PGBOUNCER_URL_ENV} is not set: run the tests with `make test`, which starts PgBouncer"
        )
    pytest.skip(f"PgBouncer not started ({PGBOUNCER_URL_ENV} unset); `make test` runs these")


def through_pgbouncer(url: str) -> str:
    """``url``'s database, reached through the test PgBouncer (its wildcard entry
    serves every database of the server)."""
    return database_named(pgbouncer_url(), url.partition("?")[0].rsplit("/", 1)[1])


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return template.sqlite_template(tmp_path_factory.mktemp("template"))


@pytest.fixture(scope="session")
def postgres_template() -> str:
    base = postgres_admin_url()
    server_execute(base, f"DROP DATABASE IF EXISTS {TEMPLATE_DB}", f"CREATE DATABASE {TEMPLATE_DB}")
    open_database(database_named(base, TEMPLATE_DB), Path("/nonexistent"))
    upgrade()
    load_generated_units()
    close_database()
    return base


# Tests set up many applicants from one process; the flood limits have tests of their
# own (tests/integration/test_identity_proofs.py), which set them low.
UNLIMITED = 1_000_000


def _settings(tmp_path: Path, url: str | None) -> Settings:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=url,
        applications_per_session_hour=UNLIMITED,
        applications_per_card_hour=UNLIMITED,
        pending_lookups_per_session=UNLIMITED,
    )
    create_key_file(settings.resolved_key_file)
    return settings


@pytest.fixture
def sqlite_settings(tmp_path: Path, sqlite_template: Path) -> Iterator[Settings]:
    settings = _settings(tmp_path, None)
    settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(sqlite_template, settings.sqlite_path)
    yield settings
    close_database()


@pytest.fixture
def postgres_settings(tmp_path: Path, postgres_template: str) -> Iterator[Settings]:
    base = postgres_template
    name = f"smis_test_{uuid.uuid4().hex[:12]}"
    server_execute(base, f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    url = database_named(base, name)
    if os.environ.get(VIA_PGBOUNCER_ENV) == "1":
        url = through_pgbouncer(url)
    yield _settings(tmp_path, url)
    close_database()
    server_execute(base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest) -> Settings:
    return request.getfixturevalue(f"{request.param}_settings")


@pytest.fixture
def services(settings: Settings) -> Services:
    open_database(settings.database_url, settings.sqlite_path)
    return build_services(settings)


@pytest.fixture
def tree(services: Services) -> dict[str, Unit]:
    """One real branch of the unit tree, CDC down to a clinic (tests.helpers.branch)."""
    return branch()


# The names tests/integration/test_ssh_session.py imports from here.
_admin_execute = server_execute
_pg_url = database_named


@pytest.fixture(scope="session")
def installed_wheel() -> Iterator[Installed]:
    """This checkout's wheel installed with its kiosk extra in a fresh virtualenv, once
    per session, under a directory every user may read (the multi-user SSH tests run
    it as other Unix accounts)."""
    import tempfile

    from tests.wheel_install import install_wheel

    base = Path(tempfile.mkdtemp(prefix="smis-wheel-"))
    base.chmod(0o755)
    try:
        yield install_wheel(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
