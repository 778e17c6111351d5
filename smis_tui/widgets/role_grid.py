"""RoleGrid: the per-category role choice of an application (the seed's 權限表).

The seed draws one row for the unit and one column per category. Seven columns of
radio buttons do not fit 80 terminal columns, so the grid is turned on its side:
one line per category with its name and a radio set 管理者 / 承辦人 / 瀏覽者 / 不申請,
or 【單位無此業務權限】 and no choice where the unit lacks the category. A category
with sub-options (新興傳染病用藥) gets a second line of checkboxes, enabled while a
role is chosen. Tab / Shift+Tab move between the sets, arrows move inside one,
Space / Enter choose; the mouse works too. Styles live in
``smis_tui/styles/widgets.tcss``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Label, Static

from smis_tui.core.domain import Role, RoleChoice
from smis_tui.text import DEFAULT_LANGUAGE, labels, t
from smis_tui.widgets.keys_in_order import Checkbox, RadioButton, RadioSet
from smis_tui.widgets.safe import plain

# Radio order of every row; None = 不申請.
ROLE_ORDER: tuple[Role | None, ...] = (Role.ADMIN, Role.OFFICER, Role.VIEWER, None)
NONE_ID = "none"


class GridCategory(Protocol):
    """One category (subsystem) as the grid needs it, in the screen's data (the
    services' categories): code, names, sub-options."""

    @property
    def code(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def name_en(self) -> str: ...

    @property
    def options(self) -> tuple[str, ...]: ...


class RoleRadioSet(RadioSet):
    """A RadioSet whose keyboard cursor starts on the pressed button (not the first)."""

    def __init__(self, *buttons: RadioButton, category: str, id: str | None = None) -> None:
        super().__init__(*buttons, id=id, classes="grid-roles", compact=True)
        self.category = category

    def on_mount(self) -> None:
        # RadioSet's own mount handler (run after this one) puts the cursor on the
        # first button; move it to the pressed one once that has happened.
        self.call_after_refresh(self._cursor_to_pressed)

    def _cursor_to_pressed(self) -> None:
        # Every button is enabled, so each step moves the cursor one button on.
        for _ in range(self.pressed_index):
            self.action_next_button()


class OptionCheckbox(Checkbox):
    """A sub-option (e.g. a disease of 新興傳染病用藥) of one category."""

    def __init__(
        self, category: str, option: str, *, value: bool, disabled: bool, id: str | None = None
    ) -> None:
        super().__init__(
            plain(option),
            value=value,
            disabled=disabled,
            compact=True,
            id=id,
            classes="grid-option",
        )
        self.category = category
        self.option = option


class RoleGrid(Vertical):
    """The role choices of one unit; :attr:`value` maps category code → RoleChoice."""

    class Changed(Message):
        """A role or a sub-option changed; ``value`` is the grid's new value."""

        def __init__(self, grid: RoleGrid, value: dict[str, RoleChoice]) -> None:
            super().__init__()
            self.grid = grid
            self.value = value

        @property
        def control(self) -> RoleGrid:
            return self.grid

    def __init__(
        self,
        unit_name: str,
        categories: Sequence[GridCategory],
        handled: Collection[str],
        language: str = DEFAULT_LANGUAGE,
        initial: Mapping[str, RoleChoice] | None = None,
        *,
        id: str | None = None,
        classes: str | None = None,
        disabled: bool = False,
    ) -> None:
        super().__init__(id=id, classes=classes, disabled=disabled)
        self.unit_name = unit_name
        self.categories = tuple(categories)
        self.handled = frozenset(handled)
        self.language = language
        self._roles: dict[str, Role | None] = {}
        self._options: dict[str, set[str]] = {}
        initial = initial or {}
        for category in self.categories:
            if category.code not in self.handled:
                continue
            choice = initial.get(category.code)
            self._roles[category.code] = Role(choice.role) if choice is not None else None
            chosen = set(choice.options) if choice is not None else set()
            self._options[category.code] = chosen & set(category.options)
        self.initial_value = self.value

    # ----- value ----------------------------------------------------------------

    @property
    def value(self) -> dict[str, RoleChoice]:
        """The chosen roles: categories left at 不申請 (or lacking) are absent."""
        result: dict[str, RoleChoice] = {}
        for category in self.categories:
            role = self._roles.get(category.code)
            if role is None:
                continue
            options = tuple(o for o in category.options if o in self._options[category.code])
            result[category.code] = RoleChoice(role, options)
        return result

    @property
    def is_modified(self) -> bool:
        return self.value != self.initial_value

    def role_of(self, code: str) -> Role | None:
        return self._roles.get(code)

    # ----- compose ----------------------------------------------------------------

    def category_name(self, category: GridCategory) -> str:
        return labels.category_label(category.name, category.name_en, self.language)

    def compose(self) -> ComposeResult:
        yield Static(
            plain(t("grid.unit_heading", self.language) + self.unit_name), classes="grid-unit"
        )
        for category in self.categories:
            with Horizontal(classes="grid-row", id=f"grid-{category.code}"):
                yield Label(plain(self.category_name(category)), classes="grid-category")
                if category.code in self.handled:
                    yield self._radio_set(category)
                else:
                    yield Static(
                        t("apply.no_business", self.language),
                        markup=False,
                        classes="grid-no-business",
                        id=f"no-business-{category.code}",
                    )
            if category.options and category.code in self.handled:
                yield self._options_row(category)

    def _radio_set(self, category: GridCategory) -> RoleRadioSet:
        current = self._roles[category.code]
        buttons = [
            RadioButton(
                labels.role_label(role, self.language) if role else t("grid.none", self.language),
                value=role == current,
                id=f"role-{category.code}-{role.value if role else NONE_ID}",
            )
            for role in ROLE_ORDER
        ]
        return RoleRadioSet(*buttons, category=category.code, id=f"roles-{category.code}")

    def _options_row(self, category: GridCategory) -> Horizontal:
        enabled = self._roles[category.code] is not None
        boxes = [
            OptionCheckbox(
                category.code,
                option,
                value=option in self._options[category.code],
                disabled=not enabled,
                id=f"option-{category.code}-{index}",
            )
            for index, option in enumerate(category.options)
        ]
        label = Label(
            plain(t("grid.options", self.language, category=self.category_name(category))),
            classes="grid-category grid-options-label",
        )
        return Horizontal(
            label, *boxes, classes="grid-row grid-options-row", id=f"grid-{category.code}-options"
        )

    # ----- events -----------------------------------------------------------------

    @on(RadioSet.Changed)
    def _role_changed(self, event: RadioSet.Changed) -> None:
        event.stop()
        radio_set = event.radio_set
        if not isinstance(radio_set, RoleRadioSet):
            return
        code = radio_set.category
        index = event.index
        self._roles[code] = ROLE_ORDER[index] if 0 <= index < len(ROLE_ORDER) else None
        for box in self.query(OptionCheckbox).results(OptionCheckbox):
            if box.category == code:
                box.disabled = self._roles[code] is None
        self.post_message(self.Changed(self, self.value))

    @on(Checkbox.Changed, ".grid-option")
    def _option_changed(self, event: Checkbox.Changed) -> None:
        event.stop()
        box = event.checkbox
        if not isinstance(box, OptionCheckbox):
            return
        if event.value:
            self._options[box.category].add(box.option)
        else:
            self._options[box.category].discard(box.option)
        self.post_message(self.Changed(self, self.value))
