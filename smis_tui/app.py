"""SmisApp: the Textual application. Services and the card runtime are built before
it and handed in; it owns the screens' navigation and turns reader events (from a
background thread) into messages."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual import events, work
from textual.app import App
from textual.binding import Binding
from textual.message import Message

from smis_tui.boot import Ready, release_collector
from smis_tui.core.config import Settings
from smis_tui.screens import STYLES
from smis_tui.screens.base import ReaderEvents, SessionEnded
from smis_tui.screens.login import LoginScreen
from smis_tui.text import t

# Only what the login screen's first frame needs is imported up here; the services,
# the card layer and the other screens come with boot() or when first used.
if TYPE_CHECKING:
    from smis_tui.demo import DemoCard
    from smis_tui.screens.home import HomeScreen
    from smis_tui.services import Services
    from smis_tui.services.accounts import AccountView
    from smis_tui.services.card_notice import CertificateExpiry
    from smis_tui.services.card_proof import CardProof
    from smis_tui.services.card_runtime import CardRuntime
    from smis_tui.widgets.idle import IdleWarning

log = logging.getLogger("smis_tui.app")


class SmisApp(App[None]):
    # Screens that are not on the way to the first frame bring their own file
    # (their CSS_PATH), parsed when they are first opened.
    CSS_PATH = [STYLES / "app.tcss", STYLES / "login.tcss", STYLES / "widgets.tcss"]
    TITLE = "智慧防疫物資管理資訊系統"
    # A public counter has no use for the command palette (and it bypasses the screens).
    ENABLE_COMMAND_PALETTE = False
    # Screen classes by terminal size, for the stylesheets: an SSH terminal of 80×24
    # is "-narrow" and "-short"; rows of buttons and forms there take one row each.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (40, "-tall")]
    # Demo cards only: taking the card out works from every screen, as with a reader.
    BINDINGS = [
        # Priority, so focus moves as soon as the app reads the key, before the keys
        # typed after it are handed to a field (smis_tui.widgets.safe_input).
        Binding("tab", "focus_next", show=False, priority=True),
        Binding("shift+tab", "focus_previous", show=False, priority=True),
        Binding("f4", "remove_demo_card", "login.demo_remove", show=False),
        Binding("f5", "insert_demo_card", "login.demo_insert", show=False),
        # The only way out of a kiosk (ctrl+q / ctrl+c do nothing there); its key is
        # the operator's setting, put in place through the keymap.
        Binding("ctrl+f12", "operator_quit", show=False, priority=True, id="operator-quit"),
    ]

    @dataclass
    class CardEvent(Message):
        reader: str
        inserted: bool

    @dataclass
    class Booted(Message):
        ready: Ready | None
        error: BaseException | None = None

    def __init__(
        self,
        services: Services | None = None,
        cards: CardRuntime | None = None,
        *,
        boot: Callable[[], Ready] | None = None,
        settings: Settings | None = None,
        kiosk: bool = False,
        started_at: float | None = None,
        demo_cards: Sequence[DemoCard] = (),
        demo: bool = False,
    ):
        """Either the ready ``services`` and ``cards`` (tests), or ``boot`` and the
        ``settings``: then the login screen is shown first and ``boot`` runs in a
        worker thread (see smis_tui.boot)."""
        super().__init__()
        if services is not None and cards is not None:
            self._booted: Ready | None = Ready(services, cards, tuple(demo_cards))
            settings = services.settings
        elif boot is None or settings is None:
            raise TypeError("SmisApp needs services and cards, or boot and settings")
        else:
            self._booted = None
        self._boot = boot
        self.settings = settings
        self.kiosk = kiosk
        self.language = settings.language
        # The card of the person logged in, when its certificate runs out soon.
        self.card_expiry: CertificateExpiry | None = None
        # The card of the login: changes in 個人資料維護 go with it while it lasts.
        self.session_proof: CardProof | None = None
        self._started_at = started_at if started_at is not None else time.perf_counter()
        self._unsubscribe: Callable[[], None] | None = None
        self.title = t("app.title", self.language)
        self.sub_title = t("app.subtitle", self.language)
        self.demo = demo or bool(demo_cards)
        self.login_screen = LoginScreen(self.language, demo=self.demo)
        self._last_input = time.monotonic()
        self._idle_warning: IdleWarning | None = None
        self.set_keymap({"operator-quit": settings.operator_key})
        from smis_tui.themes import HIGH_CONTRAST

        self.register_theme(HIGH_CONTRAST)
        self.theme_name = ""
        # What the terminal is told once the app has ended (why it could not start,
        # or that an idle SSH session was closed): printed by smis_tui.crash.
        self.exit_line: str | None = None
        self.apply_theme(settings.theme)

    @property
    def services(self) -> Services:
        assert self._booted is not None, "services are used only after boot"
        return self._booted.services

    @property
    def cards(self) -> CardRuntime:
        assert self._booted is not None, "cards are used only after boot"
        return self._booted.cards

    @property
    def demo_cards(self) -> tuple[DemoCard, ...]:
        return self._booted.demo_cards if self._booted is not None else ()

    @property
    def is_ready(self) -> bool:
        return self._booted is not None

    def on_mount(self) -> None:
        self.push_screen(self.login_screen)
        if self._booted is not None:
            self._start(self._booted)
        self.set_interval(self.IDLE_CHECK_SECONDS, self._check_idle, name="idle")

    # ----- kiosk: idle timeout and the operator key ------------------------------------

    IDLE_CHECK_SECONDS = 0.5
    IDLE_WARNING_SECONDS = 30

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key | events.MouseDown | events.MouseScrollDown) or (
            isinstance(event, events.MouseScrollUp)
        ):
            self._last_input = time.monotonic()
        await super().on_event(event)

    def _has_something_to_clear(self) -> bool:
        if self.screen is not self.login_screen:
            return True
        return self.login_screen.has_input()

    def _check_idle(self) -> None:
        timeout = self.settings.idle_timeout_seconds
        idle = time.monotonic() - self._last_input
        warning = self._idle_warning
        if warning is not None and not warning.is_attached:
            self._idle_warning = warning = None  # dismissed by a key or 繼續使用
        if idle < timeout - min(self.IDLE_WARNING_SECONDS, timeout / 2):
            return
        if self.kiosk and not self._has_something_to_clear() and warning is None:
            self._last_input = time.monotonic()  # an empty login screen: nothing to clear
            return
        left = max(0, round(timeout - idle))
        if warning is None and left > 0:
            from smis_tui.widgets.idle import IdleWarning

            self._idle_warning = IdleWarning(left, self.language, ends_session=not self.kiosk)
            self.push_screen(self._idle_warning)
        elif warning is not None:
            warning.show_seconds(left)
        if idle >= timeout:
            self._idle_timed_out()

    def _idle_timed_out(self) -> None:
        self._last_input = time.monotonic()
        if not self.kiosk:
            self.exit_line = t("kiosk.session_ended", self.language)
            self.exit(return_code=0)
            return
        log.info("idle timeout: back to the login screen")
        self._idle_warning = None
        self.logout()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "operator_quit":
            return self.kiosk
        return super().check_action(action, parameters)

    def action_operator_quit(self) -> None:
        self.exit()

    async def action_quit(self) -> None:
        if not self.kiosk:
            await super().action_quit()

    def action_help_quit(self) -> None:
        if not self.kiosk:
            super().action_help_quit()

    # ----- language -----------------------------------------------------------------

    def switch_language(self) -> None:
        """zh-TW ⇄ English, from the login screen: the screen is built again in the
        other language (a card in the reader is read again)."""
        if self.screen is not self.login_screen:
            return
        self.set_language("en" if self.language == "zh_TW" else "zh_TW")
        self._rebuild_login_screen()

    # ----- colours ----------------------------------------------------------------------

    def apply_theme(self, name: str) -> None:
        """``name`` of smis_tui.core.config.THEMES, from now on (every screen at once)."""
        from smis_tui.themes import TEXTUAL_THEMES

        if name == self.theme_name:
            return
        self.theme_name = name
        self.theme = TEXTUAL_THEMES[name]

    def switch_theme(self) -> None:
        """Normal ⇄ high contrast, from the login screen: kept after the login as the
        account's own (the person chose it)."""
        if self.screen is not self.login_screen:
            return
        self.apply_theme("high-contrast" if self.theme_name == "default" else "default")

    def on_login_screen_theme_wanted(self, message: LoginScreen.ThemeWanted) -> None:
        self.switch_theme()

    def on_home_screen_theme_chosen(self, message: HomeScreen.ThemeChosen) -> None:
        self.apply_theme(message.theme)

    def set_language(self, language: str) -> None:
        self.language = language
        self.title = t("app.title", language)
        self.sub_title = t("app.subtitle", language)

    def on_login_screen_first_frame(self, message: LoginScreen.FirstFrame) -> None:
        """Only after the login screen's first frame does boot() start (a thread
        importing and opening things would slow that first frame down)."""
        log.info("login screen up after %.3f s", time.perf_counter() - self._started_at)
        if self._booted is None and self._boot is not None:
            self._run_boot()

    @work(thread=True, exclusive=True, group="boot", exit_on_error=False)
    def _run_boot(self) -> None:
        assert self._boot is not None
        try:
            self.post_message(self.Booted(self._boot()))
        except Exception as error:  # reported by on_smis_app_booted
            self.post_message(self.Booted(None, error))
        finally:
            # Held off by the command since start-up; after the message, so that
            # the readers are attached while this thread collects.
            release_collector()

    def on_smis_app_booted(self, message: Booted) -> None:
        if message.ready is None:
            from smis_tui.boot import operator_errors

            error = message.error
            if isinstance(error, operator_errors()):
                line = f"smis-tui: {error}"
            else:
                log.error("start-up failed", exc_info=error)
                line = f"smis-tui: {error!r}"
            # One line on stderr once the app has left the screen, as the operator
            # commands print theirs (smis_tui.crash prints it): Textual's error
            # console would wrap it at the terminal's width.
            self.exit_line = line
            self.exit(return_code=1)
            return
        self._booted = message.ready
        self._start(message.ready)

    def _start(self, ready: Ready) -> None:
        def card_event(reader: str, inserted: bool) -> None:
            # post_message is thread-safe: reader events arrive on the monitor's thread.
            self.post_message(self.CardEvent(reader, inserted))

        self.login_screen.attach(ready.services, ready.cards, ready.demo_cards)
        self._unsubscribe = ready.cards.subscribe(card_event)
        log.info("ready for a card after %.3f s", time.perf_counter() - self._started_at)

    def on_unmount(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._booted is not None:
            self._booted.cards.close()

    def on_smis_app_card_event(self, event: CardEvent) -> None:
        in_use = self.screen is not self.login_screen and self.login_screen.reader is not None
        if in_use and event.reader != self.login_screen.reader:
            return  # someone is using the kiosk with their card: other readers wait
        if not event.inserted and event.reader == self.login_screen.reader:
            # The card left: whoever was using the kiosk is logged out, nothing kept.
            self._back_to_login()
        self.login_screen.card_changed(event.reader, event.inserted)
        if isinstance(self.screen, ReaderEvents) and self.screen is not self.login_screen:
            self.screen.reader_changed(event.reader, event.inserted)

    # ----- what the login screen reports ---------------------------------------------

    def on_login_screen_logged_in(self, message: LoginScreen.LoggedIn) -> None:

        if message.view.language != self.language:
            self.set_language(message.view.language)  # the account's own language
        if self.theme_name != self.settings.theme:
            # Chosen on this login screen: the person's own from now on.
            self._keep_theme(message.view.id, self.theme_name)
        else:
            self.apply_theme(message.view.theme)
        self.card_expiry = message.card_expiry
        self.session_proof = message.proof
        self.push_screen(self._home(message.view))

    def _home(self, view: AccountView) -> HomeScreen:
        from smis_tui.screens.home import HomeScreen

        return HomeScreen(
            view,
            self.language,
            self.services,
            self.card_expiry,
            cards=self.cards,
            proof=self.session_proof,
        )

    def on_login_screen_application_wanted(self, message: LoginScreen.ApplicationWanted) -> None:
        self.start_application(message.person_id, message.proof)

    def on_login_screen_language_wanted(self, message: LoginScreen.LanguageWanted) -> None:
        self.switch_language()

    # ----- navigation -----------------------------------------------------------------

    def start_application(
        self, person_id: str | None = None, proof: CardProof | None = None
    ) -> None:
        from smis_tui.screens.new_account import NewAccountScreen

        if self._booted is None:
            return  # not before boot (a fraction of a second after the first frame)

        screen = NewAccountScreen(
            self.services,
            self.cards,
            self.language,
            person_id,
            reader=self.login_screen.reader,
            proof=proof,
        )
        self.push_screen(screen)

    def on_session_ended(self, message: SessionEnded) -> None:
        self.logout()
        if message.notice:
            from smis_tui.widgets.dialogs import MessageDialog

            self.push_screen(MessageDialog(message.notice, language=self.language))

    def on_home_screen_language_chosen(self, message: HomeScreen.LanguageChosen) -> None:

        self.set_language(message.language)
        self.switch_screen(self._home(message.view))

    def action_insert_demo_card(self) -> None:
        """Demo only: choose a demo card and put it in the demo reader, from any screen
        (a dialog asking for the card covers the login screen's list)."""
        if self._booted is None or self.cards.demo_backend is None or not self.demo_cards:
            return
        from smis_tui.screens.demo_picker import DemoCardPicker  # demo only: not at start

        if isinstance(self.screen, DemoCardPicker):
            return
        cards = self.demo_cards

        def chosen(index: int | None) -> None:
            runtime = self.cards
            if index is None or runtime.demo_backend is None or runtime.demo_pki is None:
                return
            from smis_tui.demo import virtual_card
            from smis_tui.services.card_runtime import DEMO_READER

            runtime.demo_backend.insert(DEMO_READER, virtual_card(runtime.demo_pki, cards[index]))

        self.push_screen(DemoCardPicker(cards, self.language), chosen)

    def action_remove_demo_card(self) -> None:
        if self._booted is not None and self.cards.demo_backend is not None:
            from smis_tui.services.card_runtime import DEMO_READER

            self.cards.demo_backend.remove(DEMO_READER)

    def _back_to_login(self) -> None:
        if self.session_proof is not None or self.screen is not self.login_screen:
            # Someone was using the kiosk: the next person meets the kiosk's own colours
            # (a card taken out at the login screen keeps what was just chosen there).
            self.apply_theme(self.settings.theme)
        while self.screen is not self.login_screen and len(self.screen_stack) > 1:
            self.pop_screen()

    @work(thread=True, group="theme", exit_on_error=False)
    def _keep_theme(self, account_id: int, theme: str) -> None:
        try:
            self.services.accounts.set_theme(account_id, theme)
        except Exception:
            # Only a preference: the theme stays for this session either way.
            log.exception("could not keep the theme chosen at login")

    def logout(self) -> None:
        self.card_expiry = None
        if self._booted is not None:
            self.services.accounts.proofs.forget(self.session_proof)
        self.session_proof = None
        self._back_to_login()
        default = self.settings.language
        if self.language != default or self.login_screen.language != default:
            # The next person meets the kiosk in its own language, not the last user's.
            self.set_language(default)
            self._rebuild_login_screen()
        else:
            self.login_screen.restart()

    def _rebuild_login_screen(self) -> None:
        """A new login screen in ``self.language`` in place of the current one (which
        must be on top); a card in the reader is read again by the new one."""
        reader = self.login_screen.reader
        self.login_screen = LoginScreen(self.language, demo=self.demo)
        if self._booted is not None:
            booted = self._booted
            self.login_screen.attach(booted.services, booted.cards, booted.demo_cards)
        self.switch_screen(self.login_screen)
        if reader is not None:
            self.call_after_refresh(self.login_screen.card_changed, reader, True)
