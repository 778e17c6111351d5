"""DATABASE_URL as libpq reads it (docs/failover.md): several hosts, tried in turn,
with target_session_attrs and the other libpq parameters; messages name every host
and never the password. No server is needed: the ports are closed ones on 127.0.0.1.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from models.db import (
    DatabaseUnavailable,
    _PostgresDatabase,
    database_named,
    make_database,
    open_database,
)

# Ports nothing listens on (tcpmux, discard): connecting is refused at once.
MULTI = (
    "postgresql://smis:s3cr%40t-pw@127.0.0.1:1,127.0.0.1:9/smis"
    "?target_session_attrs=read-write&connect_timeout=2"
)


def test_a_multi_host_url_reaches_libpq_whole() -> None:
    db = make_database(MULTI, Path("/nonexistent"))
    assert isinstance(db, _PostgresDatabase)
    assert db.database == "smis"
    params = db.connect_params
    assert params["host"] == "127.0.0.1,127.0.0.1"
    assert params["port"] == "1,9"
    assert params["target_session_attrs"] == "read-write"
    assert params["connect_timeout"] == "2"  # the URL's own, not our default
    assert params["password"] == "s3cr@t-pw"  # percent-decoded, as libpq does


def test_connect_failure_names_every_host_and_never_the_password() -> None:
    db = make_database(MULTI, Path("/nonexistent"))
    with pytest.raises(DatabaseUnavailable) as failed:
        db.connect()
    message = str(failed.value)
    assert message.startswith("無法連線資料庫 127.0.0.1:1,127.0.0.1:9/smis：")
    # libpq's reason for each host it tried, on one line.
    assert "port 1 failed" in message and "port 9 failed" in message
    assert "\n" not in message
    assert "s3cr" not in message


def test_open_database_names_every_host_and_never_the_password() -> None:
    with pytest.raises(DatabaseUnavailable) as failed:
        open_database(MULTI, Path("/nonexistent"))
    message = str(failed.value)
    assert "postgresql://127.0.0.1:1,127.0.0.1:9/smis" in message
    assert "s3cr" not in message and "\n" not in message


def test_an_unreadable_url_is_refused_without_showing_the_password() -> None:
    # libpq quotes the token it could not decode: here the password itself.
    with pytest.raises(DatabaseUnavailable) as failed:
        make_database("postgresql://smis:pw%zzsecret@127.0.0.1/smis", Path("/nonexistent"))
    message = str(failed.value)
    assert message.startswith("DATABASE_URL 無法解析")
    assert "zzsecret" not in message
    with pytest.raises(DatabaseUnavailable, match="無法解析"):
        make_database("postgresql://smis@127.0.0.1/smis?no_such_option=1", Path("/x"))


def test_database_named_keeps_every_host_and_the_options() -> None:
    assert database_named(MULTI, "other") == (
        "postgresql://smis:s3cr%40t-pw@127.0.0.1:1,127.0.0.1:9/other"
        "?target_session_attrs=read-write&connect_timeout=2"
    )
    assert database_named("postgresql://u@h:5432/a", "b") == "postgresql://u@h:5432/b"
    assert database_named("postgres://u@h", "b") == "postgres://u@h/b"
