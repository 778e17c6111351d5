"""Fixtures of the screen tests: the demo accounts and cards on a temp database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from models.db import open_database
from smis_tui.core.config import Settings
from smis_tui.demo import DemoCard, create_demo
from smis_tui.services import Services, build_services
from smis_tui.services.card_runtime import CardRuntime, demo_runtime


@pytest.fixture
def demo(
    sqlite_settings: Settings, tmp_path: Path
) -> Iterator[tuple[Services, CardRuntime, list[DemoCard]]]:
    open_database(sqlite_settings.database_url, sqlite_settings.sqlite_path)
    services = build_services(sqlite_settings)
    cards = create_demo(services, tmp_path / "demo-pki")
    yield services, demo_runtime(services, tmp_path / "demo-pki"), cards


async def settle(pilot) -> None:  # type: ignore[no-untyped-def]
    """Let the screen, then its workers, then the messages they posted finish."""
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
