"""What importing a module loads: the kiosk's first frame waits for every import of
the app module, so what it defers (docs/architecture.md, "Start-up") must stay
deferred, and the lower layers must never pull in the UI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def loaded_after(statement: str) -> tuple[set[str], dict[str, str]]:
    """The modules a fresh interpreter holds after ``statement``, and its environment."""
    probe = (
        "import json, os, sys\n"
        f"{statement}\n"
        "print(json.dumps([sorted(sys.modules), dict(os.environ)]))"
    )
    env = {k: v for k, v in os.environ.items() if k != "TEXTUAL_FPS"}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    modules, environment = json.loads(done.stdout.strip().splitlines()[-1])
    return set(modules), environment


def under(modules: set[str], *packages: str) -> set[str]:
    return {m for m in modules if any(m == p or m.startswith(p + ".") for p in packages)}


# Loaded by boot() in a worker thread, or by the screen that first needs them.
DEFERRED_BY_THE_APP = (
    "cryptography",
    "peewee",
    "playhouse",
    "psycopg2",
    "smartcard",
    "pkcs11",
    "sqlite3",
    "models",
    "smis_tui.services",
    "smis_tui.demo",
    "smis_tui.core.identifiers",
    "smis_tui.core.rocdate",
    "smis_tui.screens.home",
    "smis_tui.screens.new_account",
    "smis_tui.screens.application_form",
    "smis_tui.screens.profile",
    "smis_tui.screens.review",
    "smis_tui.screens.account_control",
    "smis_tui.screens.audit_trail",
    "smis_tui.screens.unit_search",
    "smis_tui.screens.card_auth",
    "smis_tui.screens.person_id_prompt",
    "smis_tui.widgets.dialogs",
    "smis_tui.widgets.idle",
    "smis_tui.widgets.role_grid",
    "smis_tui.widgets.paged_table",
    "smis_tui.screens.paged",
    "textual.widgets._data_table",
    "secrets",
    "tomllib",
)


def test_the_app_module_defers_everything_the_first_frame_does_not_need() -> None:
    modules, _ = loaded_after("import smis_tui.app")
    assert "textual.app" in modules
    assert under(modules, *DEFERRED_BY_THE_APP) == set()
    # The card layer: only its error classes, which the login screen names.
    assert under(modules, "card") == {"card", "card.errors"}


def test_the_command_line_loads_no_ui_and_no_database_before_a_command_runs() -> None:
    modules, _ = loaded_after("import smis_tui.cli")
    assert under(modules, "textual", "rich", "cryptography", "peewee", "smartcard") == set()
    assert under(modules, "smis_tui.services", "models", "card") == set()


@pytest.mark.parametrize(
    "module",
    ["card.identity", "card.validation", "models.schema", "smis_tui.services.registry"],
)
def test_the_lower_layers_never_load_textual(module: str) -> None:
    modules, _ = loaded_after(f"import {module}")
    assert under(modules, "textual") == set()


def test_importing_the_package_changes_nothing() -> None:
    modules, environment = loaded_after("import smis_tui")
    assert "TEXTUAL_FPS" not in environment
    assert under(modules, "smis_tui") == {"smis_tui"}
