"""使用者登入: card kind, live card status, PIN, 登入, and the link 新帳號申請.

The screen owns the login flow: the card work runs through ``call_service``
(CardLoginService), a new card is bound after the person ID is asked, and outcomes
are shown in dialogs (docs/architecture.md, "Lifecycle"). In an SSH session the PIN
is typed on the staff member's own computer, in their card agent: the screen then has
no PIN field, 登入 asks the agent for a login proof and the screen says where to type
the PIN, naming the session as the agent does, until the card answers or Esc cancels.
It reports up to the app with typed messages: the first frame is up, someone logged
in, someone wants to apply, the language should switch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.cells import cell_len
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, Static

from card.errors import CardReset, CertificateProblem, ProofCancelled, ProofTimedOut, WrongPin
from smis_tui.core.clock import taiwan_date
from smis_tui.screens.base import KioskScreen
from smis_tui.text import render_error, t
from smis_tui.widgets.choice_line import ChoiceLine
from smis_tui.widgets.keys_in_order import Button
from smis_tui.widgets.pin_input import PinInput
from smis_tui.widgets.prose import ProseLabel
from smis_tui.widgets.safe import plain

if TYPE_CHECKING:
    from smis_tui.demo import DemoCard
    from smis_tui.services import Services
    from smis_tui.services.accounts import AccountView
    from smis_tui.services.auth import LoginOutcome
    from smis_tui.services.card_login import CardLoginResult, CardPreview
    from smis_tui.services.card_notice import CertificateExpiry
    from smis_tui.services.card_proof import CardProof
    from smis_tui.services.card_runtime import CardRuntime

log = logging.getLogger(__name__)

# Columns of the demo cards' list, in terminal cells.
DEMO_PIN_CELLS = 8
DEMO_HOLDER_CELLS = 9
# Before the card in the demo reader; as wide as the blank before the others.
DEMO_IN_READER_MARK = "● "
DEMO_GROUP = "demo"
"""The group of the calls that read what the demo cards' accounts are now."""


def demo_card_line(
    pin: str, holder: str, case: str, *, note: str = "", marked: bool = False, lines: int = 2
) -> Text:
    """One entry of the demo cards' list: the PIN, the holder and what the card shows,
    its columns padded by display width (a CJK character takes two cells). ``note``
    follows the holder (``lines=2``, where what it shows goes below, so that the
    list fits an 80-column terminal) or the end of the line (``lines=1``); ``marked``
    puts the in-reader mark before it."""
    indent = " " * len(DEMO_IN_READER_MARK)
    line = Text(no_wrap=True, overflow="ellipsis", end="")
    line.append(DEMO_IN_READER_MARK if marked else indent)
    line.append_text(plain(pin))
    line.append(" " * max(1, DEMO_PIN_CELLS - cell_len(pin)))
    line.append_text(plain(holder))
    if lines == 2:
        line.append(f" {note}" if note else "")
        line.append("\n" + indent)
    else:
        line.append(" " * max(1, DEMO_HOLDER_CELLS - cell_len(holder)))
    line.append_text(plain(case))
    if lines == 1 and note:
        line.append("  " + note)
    return line


CARD_WORK = "card"
"""The group of every call about the card in the reader: a card taken out voids them."""


@dataclass(frozen=True)
class Resolved:
    """What an outcome's dialog or screen needs, loaded off the UI thread."""

    outcome: LoginOutcome
    view: AccountView | None = None
    person_id: str | None = None


class LoginScreen(KioskScreen[None]):
    AUTO_FOCUS = "#card-kind"
    BINDINGS = [
        Binding("f2", "apply", "login.apply_link"),
        Binding("f3", "language", "login.language"),
        Binding("f9", "theme", "login.theme"),
        # Shown only while the staff computer is asked for the PIN (check_action).
        Binding("escape", "cancel_proof", "common.cancel"),
        # The demo's card keys, shown here where the demo cards are (check_action); the
        # app's own bindings, unshown, take the card out or put one in elsewhere.
        Binding("f4", "remove_demo_card", "login.demo_remove"),
        Binding("f5", "insert_demo_card", "login.demo_insert"),
    ]

    class FirstFrame(Message):
        """The screen is painted: the app may start what waits behind it (boot)."""

    @dataclass
    class LoggedIn(Message):
        view: AccountView
        #: The card's certificate, when it runs out within a month.
        card_expiry: CertificateExpiry | None = None
        #: The card that just logged in: it stands for the account while it lasts.
        proof: CardProof | None = None

    @dataclass
    class ApplicationWanted(Message):
        """新帳號申請; ``person_id`` and the card's ``proof`` when a disabled account's
        holder applies again."""

        person_id: str | None = None
        proof: CardProof | None = None

    class LanguageWanted(Message):
        pass

    class ThemeWanted(Message):
        """Normal colours ⇄ high contrast (F9)."""

    def __init__(self, language: str, *, demo: bool = False) -> None:
        """The screen comes up before the card readers are ready (see smis_tui.boot);
        :meth:`attach` hands them in. ``demo`` keeps room for the demo cards' list."""
        super().__init__(language)
        self.demo = demo
        self.services: Services | None = None
        self.cards: CardRuntime | None = None
        self.demo_cards: tuple[DemoCard, ...] = ()
        # Per demo card, the state its account is in now where the card's own label no
        # longer says it (smis_tui.demo.changed_cases); None where it does.
        self.demo_cases: tuple[str | None, ...] = ()
        self.reader: str | None = None
        self.preview: CardPreview | None = None
        # The card of the last login, handed on to what its holder does next.
        self.proof: CardProof | None = None
        self.busy = False
        # Waiting for the PIN typed at the staff computer (SSH sessions only).
        self.proving = False

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="login-layout"):
            with Vertical(id="login-box"):
                with Horizontal(id="login-title-row"):
                    yield Static(self.tr("login.title"), id="login-title")
                    yield Button(self.tr("login.language"), id="language", compact=True)
                yield ChoiceLine(
                    [
                        ("hpc", self.tr("login.card_choice.hpc")),
                        ("moica", self.tr("login.card_choice.moica")),
                    ],
                    id="card-kind",
                )
                yield ProseLabel(self.tr("card.no_card"), id="card-status", markup=False)
                yield ProseLabel(self.tr("login.pin_label"), id="pin-label")
                yield PinInput(placeholder=self.tr("login.pin_placeholder"), id="pin")
                yield ProseLabel("", id="pin-error", markup=False)
                with Horizontal(id="login-actions"):
                    yield Button(
                        self.tr("login.submit"), variant="primary", id="login", disabled=True
                    )
                # The seed's step 1: a text button below the login button.
                yield Button(
                    self.tr("login.apply_link"), id="apply", compact=True, classes="text-button"
                )
            if self.demo:
                with Vertical(id="demo-box"):
                    yield Static(self.tr("login.demo_title"), id="demo-title")
                    yield Static(
                        demo_card_line(*self._demo_headers()), id="demo-header", markup=False
                    )
                    # Filled with a button per card once boot() has read them; scrolls
                    # where the terminal is too short for them all.
                    yield VerticalScroll(id="demo-cards", can_focus=False)

    def _pin_message(self, text: str, *, error: bool = False) -> None:
        """The line under the PIN: a refusal is marked as an error (✖ and its colour),
        the progress line is not."""
        line = self.query_one("#pin-error", Label)
        line.set_class(error, "-error")
        line.update(text)

    def on_mount(self) -> None:
        if self.demo and self.demo_cards:
            self._fill_demo_cards()
        self._show_remote_mode()
        self.call_after_refresh(self.post_message, self.FirstFrame())

    def on_unmount(self) -> None:
        if self.proving and self.cards is not None:
            self.cards.login.cancel_proof()  # nobody is left to see the answer

    def attach(
        self, services: Services, cards: CardRuntime, demo_cards: tuple[DemoCard, ...]
    ) -> None:
        """The readers (and demo cards) are ready: card events follow from now on."""
        self.services = services
        self.cards = cards
        self.demo_cards = demo_cards
        if self.demo and self.is_mounted:
            self._fill_demo_cards()
            self._refresh_demo_cases()
        if self.is_mounted:
            self._show_remote_mode()

    def on_screen_resume(self) -> None:
        # Back from a screen where an application may have been sent, reviewed, ….
        self._refresh_demo_cases()

    # ----- a PIN typed at the staff computer ---------------------------------------------

    @property
    def remote_session(self) -> str | None:
        """The SSH session's id when the PIN is typed at the staff computer."""
        return self.cards.remote_session if self.cards is not None else None

    def _show_remote_mode(self) -> None:
        """No PIN field in an SSH session: in its place, where to type the PIN and the
        session the staff computer's agent names too."""
        if self.remote_session is None or self.query("#remote-pin"):
            return
        self.query_one("#pin-label", Label).display = False
        self.query_one("#pin", Input).display = False
        self.query_one("#login-box", Vertical).mount(
            ProseLabel(self._remote_text(), id="remote-pin", markup=False), after="#pin"
        )

    def _remote_text(self) -> str:
        first = "login.remote_waiting" if self.proving else "login.remote_hint"
        return self.tr(first) + "\n" + self.tr("login.remote_session", session=self.remote_session)

    def _set_proving(self, proving: bool) -> None:
        self.proving = proving
        for label in self.query("#remote-pin").results(Label):
            label.update(self._remote_text())
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel_proof":
            return self.proving
        if action in ("remove_demo_card", "insert_demo_card"):
            return self.demo  # otherwise the app's own (unshown) binding answers
        return True

    def action_cancel_proof(self) -> None:
        """Esc while the staff computer asks for the PIN: the agent drops its prompt
        and the login ends as cancelled."""
        if self.proving and self.cards is not None:
            self.cards.login.cancel_proof()

    def _demo_headers(self) -> tuple[str, str, str]:
        return (self.tr("demo.pin"), self.tr("demo.holder"), self.tr("demo.case"))

    def demo_label(self, index: int, language: str | None = None) -> str:
        """What the demo card ``index`` shows, as its account is now."""
        case = self.demo_cases[index] if index < len(self.demo_cases) else None
        if case is None:
            return self.demo_cards[index].label
        return t(f"demo.account.{case}", language or self.language)

    def demo_card_in_reader(self) -> int | None:
        """The index of the demo card in the demo reader, if one is."""
        runtime = self.cards
        if runtime is None or runtime.demo_backend is None:
            return None
        from smis_tui.demo import demo_user_in
        from smis_tui.services.card_runtime import DEMO_READER

        user = demo_user_in(runtime.demo_backend.card_in(DEMO_READER))
        return next((i for i, card in enumerate(self.demo_cards) if card.user == user), None)

    def _fill_demo_cards(self) -> None:
        """A button per demo card: Enter or a click puts it in the demo reader."""
        holder = self.query_one("#demo-cards", VerticalScroll)
        holder.remove_children()
        holder.mount_all(
            Button("", id=f"demo-card-{index}", classes="demo-card", compact=True)
            for index in range(len(self.demo_cards))
        )
        self._show_demo_cards()

    def _show_demo_cards(self) -> None:
        """Each demo card as its account is now, the one in the reader marked."""
        in_reader = self.demo_card_in_reader()
        for index, card in enumerate(self.demo_cards):
            for button in self.query(f"#demo-card-{index}").results(Button):
                marked = index == in_reader
                note = self.tr("demo.in_reader") if marked else ""
                label = self.demo_label(index)
                button.label = demo_card_line(
                    card.pin, card.holder, label, note=note, marked=marked
                )
                button.set_class(marked, "-in-reader")

    def _refresh_demo_cases(self) -> None:
        """Read, off the UI thread, what the demo cards' accounts are now."""
        services, runtime, cards = self.services, self.cards, self.demo_cards
        if not self.demo or not cards or services is None or runtime is None:
            return
        pki = runtime.demo_pki
        if pki is None:
            return
        from smis_tui.demo import changed_cases

        self.call_service(
            lambda: changed_cases(services, pki, cards),
            self._demo_cases_read,
            group=DEMO_GROUP,
            failed=self._demo_cases_unread,
        )

    def _demo_cases_read(self, cases: tuple[str | None, ...]) -> None:
        self.demo_cases = cases
        self._show_demo_cards()

    @staticmethod
    def _demo_cases_unread(error: Exception) -> None:
        # The list keeps the labels it has: a demo's aid is no reason for a dialog.
        log.warning("demo cards' accounts not read: %r", error)

    # ----- the card in the reader ------------------------------------------------

    def card_changed(self, reader: str, inserted: bool) -> None:
        """Called by the app for every reader event."""
        if self.demo and self.demo_cards:
            self._show_demo_cards()
            self._refresh_demo_cases()
        if not inserted:
            if reader == self.reader:
                self.reset()
            return
        self.reset()
        self.reader = reader
        self.query_one("#card-status", Label).update(self.tr("login.status_reading"))
        cards = self.cards
        assert cards is not None
        self.call_service(
            lambda: cards.login.read(reader),
            self.show_preview,
            group=CARD_WORK,
            failed=self._unreadable,
        )

    def _unreadable(self, error: Exception) -> None:
        self.query_one("#card-status", Label).update(render_error(error, self.language))

    def show_preview(self, preview: CardPreview) -> None:
        status = self.query_one("#card-status", Label)
        self.preview = preview
        kind = self.tr(f"login.card_kind.{preview.identity.kind}")
        text = self.tr("login.status_card", name=preview.identity.name, kind=kind)
        if preview.problem is not None:
            text += "\n" + render_error(preview.problem, self.language)
            text += "\n" + self.tr(self._where_to_renew(preview))
        status.update(plain(text))
        # The card says what it is: the choice above follows it, so the screen never
        # shows 自然人憑證 chosen while a 醫事人員卡 is in the reader.
        card_kind = self.query_one("#card-kind", ChoiceLine)
        if preview.identity.kind in card_kind.values:
            card_kind.value = preview.identity.kind
        self.query_one("#login", Button).disabled = preview.problem is not None
        pin = self.query_one("#pin", Input)
        # A card that cannot log in takes no PIN: typing one would only be cleared.
        pin.disabled = preview.problem is not None
        if preview.problem is not None:
            self.query_one("#apply", Button).focus()
        elif self.remote_session is not None:
            self.query_one("#login", Button).focus()  # Enter starts the login
        else:
            pin.focus()

    @staticmethod
    def _where_to_renew(preview: CardPreview) -> str:
        """Where the holder of a card that cannot log in gets it put right."""
        if preview.problem is not None and preview.problem.reason == "untrusted":
            return "login.renew_untrusted"
        return f"login.renew_{preview.identity.kind}"

    def reset(self) -> None:
        """Back to an empty login screen: no card, no PIN, no message. Nothing of
        the previous person can appear after their card left: answers still under
        way are dropped, a PIN prompt at the staff computer withdrawn."""
        if self.proving and self.cards is not None:
            self.cards.login.cancel_proof()
        self.drop_answers(CARD_WORK)
        self._set_proving(False)
        self.busy = False
        self.reader = None
        self.preview = None
        self.proof = None
        self.app.copy_to_clipboard("")
        self.query_one("#card-status", Label).update(self.tr("card.no_card"))
        self.query_one("#pin", Input).disabled = False
        self.query_one("#pin", Input).value = ""
        self._pin_message("")
        self.query_one("#login", Button).disabled = True

    def has_input(self) -> bool:
        """Something typed that an idle kiosk must clear."""
        return bool(self.query_one("#pin", Input).value)

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
        if self.remote_session is not None:
            self._log_in_remotely()
            return
        pin_input = self.query_one("#pin", Input)
        pin = pin_input.value
        pin_input.value = ""
        if self.busy or self.reader is None or self.preview is None or self.preview.problem:
            return
        self.busy = True
        self._pin_message(self.tr("login.authenticating"))
        self.query_one("#login", Button).disabled = True
        cards, reader = self.cards, self.reader
        assert cards is not None
        cert_sha256 = self.preview.identity.cert_sha256
        secret = [pin]
        del pin

        def authenticate() -> CardLoginResult:
            try:
                return cards.login.authenticate(reader, secret[0], cert_sha256)
            finally:
                secret.clear()  # the PIN is kept no longer than the card needs it

        self.call_service(authenticate, self._authenticated, group=CARD_WORK, failed=self._refused)

    def _log_in_remotely(self) -> None:
        """The PIN is typed at the staff computer: ask its agent for the login proof
        and say so here."""
        if self.busy or self.reader is None or self.preview is None or self.preview.problem:
            return
        self.busy = True
        self._pin_message("")
        self.query_one("#login", Button).disabled = True
        self._set_proving(True)
        cards, reader = self.cards, self.reader
        assert cards is not None
        cert_sha256 = self.preview.identity.cert_sha256
        self.call_service(
            lambda: cards.login.authenticate(reader, None, cert_sha256),
            self._authenticated,
            group=CARD_WORK,
            failed=self._refused,
        )

    def _idle_again(self) -> None:
        self._set_proving(False)
        self.busy = False
        self._pin_message("")
        self.query_one("#login", Button).disabled = self.preview is None

    def _refused(self, error: Exception) -> None:
        self._idle_again()
        if self.remote_session is not None and isinstance(
            error, WrongPin | CardReset | ProofCancelled | ProofTimedOut
        ):  # 登入 asks the staff computer again
            self._pin_message(render_error(error, self.language), error=True)
            self.query_one("#login", Button).focus()
            return
        if isinstance(error, WrongPin | CardReset):  # the PIN is asked again, right here
            self._pin_message(render_error(error, self.language), error=True)
            self.query_one("#pin", Input).focus()
            return
        if isinstance(error, CertificateProblem):
            self.query_one("#login", Button).disabled = True
        self.tell(render_error(error, self.language))

    def _authenticated(self, result: CardLoginResult) -> None:
        self._idle_again()
        self.proof = result.proof
        if result.needs_person_id is not None:
            self._ask_person_id(result.needs_person_id)
            return
        assert result.outcome is not None
        outcome = result.outcome
        self._resolve(lambda: outcome)

    def _ask_person_id(self, proof: CardProof) -> None:
        """A card seen for the first time: its holder types their ID, which is bound
        to the card if the card proves it."""
        from smis_tui.screens.person_id_prompt import PersonIdPrompt

        cards = self.cards
        assert cards is not None

        def bind(person_id: str | None) -> None:
            if person_id:
                self._resolve(lambda: cards.login.bind(proof, person_id))

        self.app.push_screen(PersonIdPrompt(self.language), bind)

    def _resolve(self, outcome_of: Callable[[], LoginOutcome]) -> None:
        """The outcome, and what its screen or dialog shows, loaded off the UI thread."""
        services = self.services
        assert services is not None

        def resolve() -> Resolved:
            from smis_tui.services.auth import LoginState

            outcome = outcome_of()
            if outcome.account_id is not None and outcome.state == LoginState.ACTIVE:
                return Resolved(outcome, view=services.accounts.view(outcome.account_id))
            if outcome.account_id is not None and outcome.state == LoginState.DISABLED:
                return Resolved(
                    outcome, person_id=services.accounts.person_id_for(outcome.account_id)
                )
            return Resolved(outcome)

        self.call_service(resolve, self._show_resolved, group=CARD_WORK)

    def _show_resolved(self, resolved: Resolved) -> None:
        if resolved.view is not None:
            from smis_tui.services.card_notice import certificate_expiry

            identity = self.preview.identity if self.preview is not None else None
            expiry = certificate_expiry(identity) if identity is not None else None
            self.post_message(self.LoggedIn(resolved.view, expiry, self.proof))
            return
        from smis_tui.services.auth import LoginState

        text = self.outcome_text(resolved.outcome)
        if resolved.outcome.state == LoginState.PENDING:
            self._show_application_status(text)
            return
        person_id = resolved.person_id
        if person_id is None:
            self.tell(text)
            return

        def reapply(confirmed: bool | None) -> None:
            if confirmed:
                self.post_message(self.ApplicationWanted(person_id, self.proof))

        self.tell(text, reapply)

    def _show_application_status(self, text: str) -> None:
        """申請審核中: the applicant's own requests, read for the card that just logged
        in; closing the dialog starts the login over, cleared."""
        from smis_tui.screens.application_status import ApplicationStatusDialog

        assert self.services is not None
        dialog = ApplicationStatusDialog(self.services.accounts, self.proof, self.language, text)
        self.app.push_screen(dialog, lambda _: self.restart())

    def tell(self, text: str, then: Callable[[bool | None], None] | None = None) -> None:
        from smis_tui.widgets.dialogs import MessageDialog

        self.app.push_screen(MessageDialog(text, language=self.language), then)

    def outcome_text(self, outcome: LoginOutcome) -> str:
        from smis_tui.services.auth import LoginState

        text = self.tr(outcome.message_key or "login.no_account")
        if outcome.state == LoginState.PENDING and outcome.pending_since is not None:
            from smis_tui.core.rocdate import to_roc

            # Stored in UTC; the applicant knows the day in Taiwan time.
            date = to_roc(taiwan_date(outcome.pending_since))
            text += "\n" + self.tr("login.pending_hint", date=date)
        if outcome.state == LoginState.DISABLED:
            cause = self._disabled_cause(outcome)
            if cause:
                text += "\n" + cause
        if outcome.rejected_reason:
            text += "\n" + self.tr("login.rejected_hint", reason=outcome.rejected_reason)
        elif outcome.state == LoginState.NO_ACCOUNT:
            text += "\n" + self.tr("login.apply_hint")
        return text

    def _disabled_cause(self, outcome: LoginOutcome) -> str:
        from smis_tui.core.domain import DisabledReason

        if outcome.disabled_reason == DisabledReason.INACTIVE:
            return self.tr("login.disabled_cause_inactive", days=outcome.inactive_days)
        if outcome.disabled_reason == DisabledReason.SELF:
            return self.tr("login.disabled_cause_self")
        if outcome.disabled_reason == DisabledReason.SUPERIOR and outcome.disabled_by_unit:
            return self.tr(
                "login.disabled_cause_superior",
                unit=outcome.disabled_by_unit,
                reason=outcome.disabled_note,
            )
        if outcome.disabled_reason == DisabledReason.SUPERIOR:
            return self.tr("login.disabled_cause_superior_unknown")
        return ""

    # ----- links and demo cards -------------------------------------------------------

    @on(Button.Pressed, "#language")
    def action_language(self) -> None:
        self.post_message(self.LanguageWanted())

    def action_theme(self) -> None:
        self.post_message(self.ThemeWanted())

    @on(Button.Pressed, "#apply")
    def action_apply(self) -> None:
        # The card just proven, if it is still in: its holder applies with it.
        self.post_message(self.ApplicationWanted(None, self.proof))

    async def action_remove_demo_card(self) -> None:
        await self.app.run_action("remove_demo_card")

    async def action_insert_demo_card(self) -> None:
        await self.app.run_action("insert_demo_card")

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
