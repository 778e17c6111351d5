"""使用者登入: card kind, live card status, PIN, 登入, and the link 新帳號申請.

Thin: the card work runs in thread workers calling CardLoginService; outcomes come
back as messages and are shown in dialogs (DESIGN §3's table).
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import (
    Button,
    Input,
    Label,
    Static,
)

from card.errors import CardError, CertificateProblem, WrongPin
from smis_tui.services.errors import ServiceError
from smis_tui.text import render_error, t
from smis_tui.widgets.bars import KeyBar, TitleBar
from smis_tui.widgets.choice_line import ChoiceLine
from smis_tui.widgets.localised import Localised
from smis_tui.widgets.pin_input import PinInput
from smis_tui.widgets.safe import plain

if TYPE_CHECKING:
    from smis_tui.demo import DemoCard
    from smis_tui.services.auth import LoginOutcome
    from smis_tui.services.card_login import CardLoginResult, CardPreview
    from smis_tui.services.card_runtime import CardRuntime

log = logging.getLogger(__name__)

_SESSIONS = itertools.count(1)

# Columns of the demo cards' list, in terminal cells.
DEMO_PIN_CELLS = 9
DEMO_HOLDER_CELLS = 9


class LoginScreen(Localised, Screen[None]):
    AUTO_FOCUS = "#card-kind"
    BINDINGS = [
        Binding("f2", "apply", "login.apply_link"),
        Binding("f3", "language", "login.language"),
    ]

    @dataclass
    class Previewed(Message):
        session: int
        preview: CardPreview | None
        error: CardError | None

    @dataclass
    class Finished(Message):
        session: int
        result: CardLoginResult | None
        error: CardError | ServiceError | None

    def __init__(self, language: str, *, demo: bool = False) -> None:
        """The screen comes up before the card readers are ready (see smis_tui.boot);
        :meth:`attach` hands them in. ``demo`` keeps room for the demo cards' list."""
        super().__init__()
        self.language = language
        self.demo = demo
        self.cards: CardRuntime | None = None
        self.demo_cards: tuple[DemoCard, ...] = ()
        self.reader: str | None = None
        self.preview: CardPreview | None = None
        # Every card change starts a new session; answers for an older one are dropped,
        # so nothing of the previous person can appear after their card left. Numbered
        # across screens: a login screen rebuilt in another language starts afresh.
        self.session = next(_SESSIONS)
        self.busy = False

    def tr(self, key: str, **params: object) -> str:
        return t(key, self.language, **params)

    def compose(self) -> ComposeResult:
        yield TitleBar()
        with Horizontal(id="login-layout"):
            with Vertical(id="login-box"):
                with Horizontal(id="login-title-row"):
                    yield Static(self.tr("login.title"), id="login-title")
                    yield Button(self.tr("login.language"), id="language", compact=True)
                yield ChoiceLine(
                    [("hpc", self.tr("login.kind_hpc")), ("moica", self.tr("login.kind_moica"))],
                    id="card-kind",
                )
                yield Label(self.tr("login.status_insert"), id="card-status", markup=False)
                yield Label(self.tr("login.pin_label"), id="pin-label")
                yield PinInput(placeholder=self.tr("login.pin_placeholder"), id="pin")
                yield Label("", id="pin-error", markup=False)
                with Horizontal(id="login-actions"):
                    yield Button(
                        self.tr("login.submit"), variant="primary", id="login", disabled=True
                    )
                    yield Button(self.tr("login.apply_link"), id="apply")
            if self.demo:
                with Vertical(id="demo-box"):
                    yield Static(self.tr("login.demo_title"), id="demo-title")
                    yield Static(self._demo_line(*self._demo_headers()), id="demo-header")
                    # Filled with a button per card once boot() has read them.
                    yield Vertical(id="demo-cards")
        yield KeyBar()

    def on_mount(self) -> None:
        if self.demo and self.demo_cards:
            self._fill_demo_cards()
        self.call_after_refresh(self.app.login_screen_painted)  # type: ignore[attr-defined]

    def attach(self, cards: CardRuntime, demo_cards: tuple[DemoCard, ...]) -> None:
        """The readers (and demo cards) are ready: card events follow from now on."""
        self.cards = cards
        self.demo_cards = demo_cards
        if self.demo and self.is_mounted:
            self._fill_demo_cards()

    def _demo_headers(self) -> tuple[str, str, str]:
        return (self.tr("demo.pin"), self.tr("demo.holder"), self.tr("demo.case"))

    @staticmethod
    def _demo_line(pin: str, holder: str, case: str) -> Text:
        """One line of the demo cards' list, its columns padded by display width (a
        CJK character takes two cells)."""
        line = Text(no_wrap=True, overflow="ellipsis", end="")
        for value, width in ((pin, DEMO_PIN_CELLS), (holder, DEMO_HOLDER_CELLS)):
            cell = plain(value)
            line.append_text(cell)
            line.append(" " * max(1, width - cell.cell_len))
        line.append_text(plain(case))
        return line

    def _fill_demo_cards(self) -> None:
        """A button per demo card: Enter or a click puts it in the demo reader."""
        holder = self.query_one("#demo-cards", Vertical)
        holder.remove_children()
        holder.mount_all(
            Button(
                self._demo_line(card.pin, card.holder, card.label),
                id=f"demo-card-{index}",
                classes="demo-card",
                compact=True,
            )
            for index, card in enumerate(self.demo_cards)
        )

    # ----- the card in the reader ------------------------------------------------

    def card_changed(self, reader: str, inserted: bool) -> None:
        """Called by the app for every reader event."""
        if not inserted:
            if reader == self.reader:
                self.reset()
            return
        self.reset()
        self.reader = reader
        self.query_one("#card-status", Label).update(self.tr("login.status_reading"))
        self.read_card(reader, self.session)

    @work(thread=True, exclusive=True, group="card", exit_on_error=False)
    def read_card(self, reader: str, session: int) -> None:
        assert self.cards is not None
        try:
            preview = self.cards.login.read(reader)
        except CardError as error:
            self.post_message(self.Previewed(session, None, error))
            return
        self.post_message(self.Previewed(session, preview, None))

    @on(Previewed)
    def show_preview(self, message: Previewed) -> None:
        if message.session != self.session:
            return
        status = self.query_one("#card-status", Label)
        if message.error is not None:
            status.update(render_error(message.error, self.language))
            return
        preview = message.preview
        assert preview is not None
        self.preview = preview
        kind = self.tr(f"login.card_kind.{preview.identity.kind}")
        text = self.tr("login.status_card", name=preview.identity.name, kind=kind)
        if preview.problem is not None:
            text += "\n" + render_error(preview.problem, self.language)
        status.update(plain(text))
        # The card says what it is: the choice above follows it, so the screen never
        # shows 自然人憑證 chosen while a 醫事人員卡 is in the reader.
        card_kind = self.query_one("#card-kind", ChoiceLine)
        if preview.identity.kind in card_kind.values:
            card_kind.value = preview.identity.kind
        self.query_one("#login", Button).disabled = preview.problem is not None
        self.query_one("#pin", Input).focus()

    def reset(self) -> None:
        """Back to an empty login screen: no card, no PIN, no message."""
        self.session = next(_SESSIONS)
        self.busy = False
        self.reader = None
        self.preview = None
        self.app.copy_to_clipboard("")
        self.query_one("#card-status", Label).update(self.tr("login.status_insert"))
        self.query_one("#pin", Input).value = ""
        self.query_one("#pin-error", Label).update("")
        self.query_one("#login", Button).disabled = True

    def restart(self) -> None:
        """After a logout with the card still in the reader: read it again, so the
        next login needs only the PIN."""
        reader = self.reader
        self.reset()
        if reader is not None:
            self.card_changed(reader, True)

    # ----- logging in -----------------------------------------------------------------

    @on(Input.Submitted, "#pin")
    @on(Button.Pressed, "#login")
    def log_in(self) -> None:
        pin_input = self.query_one("#pin", Input)
        pin = pin_input.value
        pin_input.value = ""
        if self.busy or self.reader is None or self.preview is None or self.preview.problem:
            return
        self.busy = True
        self.query_one("#pin-error", Label).update(self.tr("login.authenticating"))
        self.query_one("#login", Button).disabled = True
        self.authenticate(self.reader, pin, self.session, self.preview.identity.cert_sha256)

    @work(thread=True, exclusive=True, group="card", exit_on_error=False)
    def authenticate(self, reader: str, pin: str, session: int, cert_sha256: str) -> None:
        assert self.cards is not None
        try:
            result = self.cards.login.authenticate(reader, pin, cert_sha256)
        except (CardError, ServiceError) as error:
            self.post_message(self.Finished(session, None, error))
            return
        except Exception:
            log.exception("login failed unexpectedly")
            self.post_message(self.Finished(session, None, ServiceError("error.unexpected")))
            return
        finally:
            del pin
        self.post_message(self.Finished(session, result, None))

    @on(Finished)
    def finished(self, message: Finished) -> None:
        if message.session != self.session:
            return  # the card left meanwhile: that login is void
        self.busy = False
        error_label = self.query_one("#pin-error", Label)
        error_label.update("")
        self.query_one("#login", Button).disabled = self.preview is None
        if isinstance(message.error, WrongPin):
            error_label.update(render_error(message.error, self.language))
            self.query_one("#pin", Input).focus()
            return
        if message.error is not None:
            text = render_error(message.error, self.language)
            if isinstance(message.error, CertificateProblem):
                self.query_one("#login", Button).disabled = True
            self.app.notify_dialog(text)  # type: ignore[attr-defined]
            return
        result = message.result
        assert result is not None
        if result.needs_person_id is not None:
            self.app.ask_person_id(result.needs_person_id, self.session)  # type: ignore[attr-defined]
            return
        assert result.outcome is not None
        self.app.show_outcome(result.outcome, self.session)  # type: ignore[attr-defined]

    def outcome_text(self, outcome: LoginOutcome) -> str:
        from smis_tui.services.auth import LoginState

        text = self.tr(outcome.message_key or "login.no_account")
        if outcome.state == LoginState.PENDING and outcome.pending_since is not None:
            # Stored in UTC; the applicant knows the day in Taiwan time.
            taiwan = outcome.pending_since + dt.timedelta(hours=8)
            from smis_tui.core.rocdate import to_roc

            text += "\n" + self.tr("login.pending_hint", date=to_roc(taiwan.date()))
        if outcome.rejected_reason:
            text += "\n" + self.tr("login.rejected_hint", reason=outcome.rejected_reason)
        return text

    # ----- links and demo cards -------------------------------------------------------

    @on(Button.Pressed, "#language")
    def action_language(self) -> None:
        self.app.switch_language()  # type: ignore[attr-defined]

    @on(Button.Pressed, "#apply")
    def action_apply(self) -> None:
        self.app.start_application()  # type: ignore[attr-defined]

    @on(Button.Pressed, ".demo-card")
    def insert_demo_card(self, event: Button.Pressed) -> None:
        from smis_tui.demo import virtual_card

        runtime = self.cards
        if runtime is None or runtime.demo_backend is None or runtime.demo_pki is None:
            return
        assert event.button.id is not None
        card = self.demo_cards[int(event.button.id.removeprefix("demo-card-"))]
        from smis_tui.services.card_runtime import DEMO_READER

        runtime.demo_backend.insert(DEMO_READER, virtual_card(runtime.demo_pki, card))
