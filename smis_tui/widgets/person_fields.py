"""PersonFields: the personal-data rows of the application form and of 個人資料維護.

One row per field (使用者姓名, the two phones each with its #分機, the two e-mails,
行動電話): a label, the input(s), and the field's message beside them. A field is
checked as the cursor leaves it, by the rule the screen hands in (the service's own,
so the words are those of the check on submit); moving from a number to its #分機 is
not leaving the field. Enter moves on. Styles live in
``smis_tui/styles/person_fields.tcss``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, Static

from smis_tui.text import Phrase, t
from smis_tui.widgets.prose import Prose
from smis_tui.widgets.safe_input import SafeInput

# In form (and Tab) order.
FIELDS: tuple[str, ...] = ("name", "phone", "phone_backup", "email", "email_backup", "mobile")
PHONE_FIELDS = frozenset({"phone", "phone_backup"})
MAX_LENGTHS = {
    "name": 64,  # the service's NAME_MAX
    "phone": 32,
    "phone_backup": 32,
    "email": 254,
    "email_backup": 254,
    "mobile": 20,
}
EXTENSION_MAX = 8
PLACEHOLDERS = {
    "phone": "person.phone_placeholder",
    "phone_backup": "person.phone_placeholder",
    "email": "person.email_placeholder",
    "email_backup": "person.email_placeholder",
    "mobile": "person.mobile_placeholder",
}

FieldCheck = Callable[[str, str], Phrase | None]
"""``check(field, value)``: what is wrong with a field's value (phones joined with
their extension), or None."""


def join_phone(number: str, extension: str) -> str:
    """``"02-12345678"`` + ``"123"`` → ``"02-12345678#123"``; no extension, no ``#``."""
    number, extension = number.strip(), extension.strip()
    return f"{number}#{extension}" if extension else number


def split_phone(phone: str) -> tuple[str, str]:
    """The reverse of :func:`join_phone`: ``"02-12345678#123"`` → ``("02-12345678", "123")``."""
    number, _, extension = phone.partition("#")
    return number, extension


def _input_values(values: Mapping[str, str]) -> dict[str, str]:
    """Input id → its text, for the stored ``values`` (field → value)."""
    shown: dict[str, str] = {}
    for field in FIELDS:
        value = values.get(field) or ""
        if field in PHONE_FIELDS:
            shown[f"input-{field}"], shown[f"input-{field}-ext"] = split_phone(value)
        else:
            shown[f"input-{field}"] = value
    return shown


class PersonFields(Vertical):
    """The personal-data rows, filled from ``values`` (field → stored value)."""

    def __init__(
        self,
        values: Mapping[str, str],
        check: FieldCheck,
        language: str,
        *,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.check = check
        self.language = language
        self._initial = _input_values(values)

    # ----- values -------------------------------------------------------------------

    def _input(self, input_id: str) -> Input:
        return self.query_one(f"#{input_id}", Input)

    def value(self, field: str) -> str:
        """The typed value of ``field``, a phone joined with its #分機."""
        number = self._input(f"input-{field}").value
        if field in PHONE_FIELDS:
            return join_phone(number, self._input(f"input-{field}-ext").value)
        return number.strip()

    def values(self) -> dict[str, str]:
        """Field → its typed value, in form order."""
        return {field: self.value(field) for field in FIELDS}

    @property
    def is_modified(self) -> bool:
        """Has anything been typed since the rows were filled?"""
        return any(self._input(key).value != value for key, value in self._initial.items())

    def reset(self, values: Mapping[str, str]) -> None:
        """Show ``values`` (as stored), with no messages."""
        self._initial = _input_values(values)
        for input_id, value in self._initial.items():
            self._input(input_id).value = value
        self.show_errors({})

    # ----- messages -----------------------------------------------------------------

    def show_error(self, field: str, message: str | None) -> None:
        """``message`` beside ``field`` and its inputs marked; None clears both."""
        error = self.query_one(f"#error-{field}", Static)
        error.update(message or "")
        error.set_class(bool(message), "-shown")
        for input_id in (f"input-{field}", f"input-{field}-ext"):
            for widget in self.query(f"#{input_id}").results(Input):
                widget.set_class(bool(message), "-invalid")

    def show_errors(self, messages: Mapping[str, str]) -> None:
        """Each field's message from ``messages`` (none: cleared); the cursor goes to the
        first field that has one."""
        for field in FIELDS:
            self.show_error(field, messages.get(field))
        first = next((field for field in FIELDS if field in messages), None)
        if first is not None:
            self._input(f"input-{first}").focus()

    # ----- compose ------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        for field in FIELDS:
            yield self._row(field)

    def _row(self, field: str) -> Horizontal:
        placeholder = PLACEHOLDERS.get(field)
        phone = field in PHONE_FIELDS
        widgets: list[Label | Input | Static] = [
            Label(t(f"person.{field}", self.language), classes="person-label"),
            SafeInput(
                self._initial[f"input-{field}"],
                placeholder=t(placeholder, self.language) if placeholder else "",
                max_length=MAX_LENGTHS[field],
                id=f"input-{field}",
                classes="person-input person-input-phone" if phone else "person-input",
            ),
        ]
        if phone:
            widgets += [
                Static(t("person.extension_mark", self.language), classes="person-ext-mark"),
                SafeInput(
                    self._initial[f"input-{field}-ext"],
                    placeholder=t("person.extension_placeholder", self.language),
                    max_length=EXTENSION_MAX,
                    restrict=r"[0-9]*",
                    id=f"input-{field}-ext",
                    classes="person-input person-input-ext",
                ),
            ]
        widgets.append(Prose("", id=f"error-{field}", classes="person-error", markup=False))
        return Horizontal(*widgets, classes="person-row", id=f"row-{field}")

    # ----- checking a field as the cursor leaves it -----------------------------------

    def _field_of(self, input_id: str | None) -> str | None:
        if not input_id or not input_id.startswith("input-"):
            return None
        field = input_id.removeprefix("input-").removesuffix("-ext")
        return field if field in FIELDS else None

    @on(Input.Blurred)
    def _check_on_leave(self, event: Input.Blurred) -> None:
        field = self._field_of(event.input.id)
        if field is None:
            return
        focused = self.screen.focused
        if field in PHONE_FIELDS and focused is not None:
            if focused.id in (f"input-{field}", f"input-{field}-ext"):
                return  # from the number to its #分機 is not leaving the field
        problem = self.check(field, self.value(field))
        self.show_error(field, problem.render(self.language) if problem is not None else None)

    @on(Input.Changed)
    def _clear_when_put_right(self, event: Input.Changed) -> None:
        """A message beside a field goes as soon as what is typed is right: nobody
        should have to leave the field to see that it is fixed. A new message waits
        for the cursor to leave (typing is not an error yet)."""
        field = self._field_of(event.input.id)
        if field is None or not self.query_one(f"#error-{field}", Static).has_class("-shown"):
            return
        if self.check(field, self.value(field)) is None:
            self.show_error(field, None)

    @on(Input.Submitted)
    def _enter_moves_on(self, event: Input.Submitted) -> None:
        event.stop()
        self.screen.focus_next()
