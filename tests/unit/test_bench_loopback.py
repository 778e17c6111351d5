"""The load benchmark creates and drops databases: it runs only on this machine's
PostgreSQL, named as libpq allows — a failover URL's host list included."""

from __future__ import annotations

import pytest

from bench.load import _require_loopback


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://smis@127.0.0.1:5432/smis",
        "postgresql://smis@localhost/smis",
        "postgresql://smis@127.0.0.1:54451,127.0.0.1:54452/smis?target_session_attrs=read-write",
        "postgresql://smis@[::1]:5432/smis",
        "postgresql:///smis?host=/var/run/postgresql",
    ],
)
def test_this_machine_is_accepted(url: str) -> None:
    _require_loopback(url)


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("postgresql://smis@db.example.org/smis", "db.example.org"),
        (
            "postgresql://smis@127.0.0.1:5432,10.0.0.7:5432/smis?target_session_attrs=read-write",
            "10.0.0.7",
        ),
    ],
)
def test_another_machine_is_refused_and_named(url: str, named: str) -> None:
    with pytest.raises(SystemExit) as refused:
        _require_loopback(url)
    assert named in str(refused.value)
