"""SmisApp: the Textual application. Services are built before it and handed in."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from textual.app import App

from smis_tui.demo import DemoCard
from smis_tui.screens.placeholder import PlaceholderScreen
from smis_tui.services import Services
from smis_tui.text import t

STYLES = Path(__file__).resolve().parent.parent / "styles"
log = logging.getLogger("smis_tui.app")


class SmisApp(App[None]):
    CSS_PATH = [
        STYLES / "app.tcss",
        STYLES / "login.tcss",
        STYLES / "unit_search.tcss",
        STYLES / "form.tcss",
    ]
    TITLE = "智慧防疫物資管理資訊系統"

    def __init__(
        self,
        services: Services,
        *,
        kiosk: bool = False,
        started_at: float | None = None,
        demo_cards: Sequence[DemoCard] = (),
    ):
        super().__init__()
        self.services = services
        self.kiosk = kiosk
        self.demo_cards = tuple(demo_cards)
        self._started_at = started_at if started_at is not None else time.perf_counter()
        self.sub_title = t("app.subtitle", services.settings.language)

    def on_mount(self) -> None:
        self.push_screen(PlaceholderScreen(self.services.settings.language, self.demo_cards))
        log.info("startup took %.3f s", time.perf_counter() - self._started_at)
