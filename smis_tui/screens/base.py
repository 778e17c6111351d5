"""What every screen and dialog of the kiosk shares: its language, text look-up, the
title and key bars, and one way to call a service without blocking the screen.

A service call runs in a thread worker (:func:`smis_tui.services.calls.run_call`:
its own connection scope, errors sorted) and comes back to the screen as a message.
Each call belongs to a group; only the newest call of a group is answered, so a
slow answer never overwrites a newer one (typing ahead, paging fast, a card taken
out mid-way: :meth:`KioskScreen.drop_answers`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from textual.app import ComposeResult
from textual.message import Message
from textual.screen import ModalScreen, Screen

from smis_tui.text import render_error
from smis_tui.widgets.bars import KeyBar, TitleBar
from smis_tui.widgets.localised import Localised
from smis_tui.widgets.safe_input import SafeInput

if TYPE_CHECKING:
    from smis_tui.services.calls import CallResult

ResultT = TypeVar("ResultT")
ValueT = TypeVar("ValueT")


@dataclass
class ServiceAnswer(Message):
    """The result of a :meth:`ServiceCalls.call_service`, back on the UI thread."""

    group: str
    sequence: int
    result: CallResult[Any]
    done: Callable[[Any], None]
    failed: Callable[[Exception], None] | None


class ServiceCalls:
    """Mixed into a Screen: :meth:`call_service` and its answers."""

    def _next_sequence(self, group: str) -> int:
        sequences: dict[str, int] = self.__dict__.setdefault("_call_sequences", {})
        sequences[group] = sequences.get(group, 0) + 1
        return sequences[group]

    def _is_newest(self, group: str, sequence: int) -> bool:
        return self.__dict__.get("_call_sequences", {}).get(group) == sequence

    def call_service(
        self,
        call: Callable[[], ValueT],
        done: Callable[[ValueT], None],
        *,
        group: str = "call",
        failed: Callable[[Exception], None] | None = None,
    ) -> None:
        """Run ``call`` off the UI thread; then ``done(value)`` on it, or
        ``failed(error)`` (by default a dialog saying what went wrong). Only the
        newest call of ``group`` is answered."""
        screen: Any = self
        sequence = self._next_sequence(group)

        def run() -> None:
            from smis_tui.services.calls import run_call

            result = run_call(call)
            screen.post_message(ServiceAnswer(group, sequence, result, done, failed))

        screen.run_worker(run, thread=True, group=group, exit_on_error=False)

    def drop_answers(self, group: str) -> None:
        """Answers of calls of ``group`` under way are not shown."""
        self._next_sequence(group)

    def on_service_answer(self, message: ServiceAnswer) -> None:
        message.stop()
        if not self._is_newest(message.group, message.sequence):
            return
        error = message.result.error
        if error is None:
            message.done(message.result.value)
        elif message.failed is not None:
            message.failed(error)
        else:
            self.show_error(error)

    def show_error(self, error: BaseException) -> None:
        from smis_tui.widgets.dialogs import MessageDialog

        screen: Any = self
        screen.app.push_screen(
            MessageDialog(render_error(error, screen.language), language=screen.language)
        )


class SessionEnded(Message):
    """Posted by a screen when the person is done: logged out, or their account can no
    longer be used. The app clears every screen back to the login screen, then shows
    ``notice`` if there is one."""

    def __init__(self, notice: str | None = None) -> None:
        super().__init__()
        self.notice = notice


class ReaderEvents:
    """Mixed into a Screen: the app tells the screen on top about every card."""

    def reader_changed(self, reader: str, inserted: bool) -> None:
        """A card went into or out of ``reader``; most screens need not know."""


class InputRefusals:
    """Mixed into a Screen: text that did not fit a field is told about, once per
    refusal, in the screen's language."""

    def on_safe_input_refused(self, message: SafeInput.Refused) -> None:
        message.stop()
        screen: Any = self
        key = "input.too_long" if message.limit else "input.refused"
        screen.notify(screen.tr(key, limit=message.limit), severity="warning", timeout=6)


class KioskScreen(Localised, ServiceCalls, ReaderEvents, InputRefusals, Screen[ResultT]):
    """A full screen: the title bar, :meth:`compose_body`, the key bar."""

    def __init__(self, language: str, *, name: str | None = None, id: str | None = None) -> None:
        super().__init__(name=name, id=id)
        self.language = language

    def compose(self) -> ComposeResult:
        yield TitleBar()
        yield from self.compose_body()
        yield KeyBar()

    def compose_body(self) -> ComposeResult:
        raise NotImplementedError
        yield

    def ask_before_discarding(self, leave: Callable[[], object]) -> None:
        """Ask whether typed data that was not sent may go (取消 focused: one stray
        Enter keeps it); ``leave`` runs only on 確定."""
        from smis_tui.widgets.dialogs import MessageDialog

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                leave()

        self.app.push_screen(
            MessageDialog(
                self.tr("form.discard_confirm"),
                language=self.language,
                cancel=True,
                destructive=True,
            ),
            answered,
        )


class KioskDialog(Localised, ServiceCalls, ReaderEvents, InputRefusals, ModalScreen[ResultT]):
    """A dialog over a screen, dismissed with a result of type ``ResultT``."""

    def __init__(self, language: str, *, name: str | None = None, id: str | None = None) -> None:
        super().__init__(name=name, id=id)
        self.language = language
