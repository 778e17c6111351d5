"""SmisApp: the Textual application. Services are built before it and handed in."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from textual.app import App, ComposeResult
from textual.containers import Vertical
from textual.widgets import Footer, Header, Static

from smis_tui.services import Services
from smis_tui.text import t

STYLES = Path(__file__).resolve().parent.parent / "styles"
log = logging.getLogger("smis_tui.app")


class SmisApp(App[None]):
    CSS_PATH = STYLES / "app.tcss"
    TITLE = "智慧防疫物資管理資訊系統"

    def __init__(self, services: Services, *, kiosk: bool = False, started_at: float | None = None):
        super().__init__()
        self.services = services
        self.kiosk = kiosk
        self._started_at = started_at if started_at is not None else time.perf_counter()
        self.sub_title = t("app.subtitle", services.settings.language)

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="placeholder"):
            yield Static(
                t("app.placeholder_title", self.services.settings.language), id="placeholder-title"
            )
            yield Static(
                t("app.placeholder_body", self.services.settings.language), id="placeholder-body"
            )
        yield Footer()

    def on_mount(self) -> None:
        log.info("startup took %.3f s", time.perf_counter() - self._started_at)
