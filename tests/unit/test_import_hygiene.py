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


# The staff computer's install: the card agent without the kiosk's packages.
KIOSK_ONLY = ("textual", "rich", "peewee", "playhouse", "psycopg2")
WITHOUT_KIOSK = (
    "import importlib.abc, sys\n"
    "class NotInstalled(importlib.abc.MetaPathFinder):\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    f"        if name.partition('.')[0] in {KIOSK_ONLY!r}:\n"
    "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
    "sys.meta_path.insert(0, NotInstalled())\n"
)


@pytest.mark.parametrize("module", ["smis_tui.cli.agent", "card.agent.server", "card.agent.client"])
def test_the_card_agent_loads_no_ui_and_no_database(module: str) -> None:
    modules, _ = loaded_after(f"import {module}")
    assert under(modules, *KIOSK_ONLY, "models", "smis_tui.services", "smis_tui.screens") == set()


def run_without_kiosk(statement: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TEXTUAL_FPS", "SMIS_CARD_AGENT")}
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_KIOSK + statement],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.mark.parametrize(
    "statement",
    [
        "import runpy; sys.argv = ['smis-tui', 'card-agent', '--help']; "
        "runpy.run_module('smis_tui.cli', run_name='__main__')",
        "from smis_tui.cli.agent import main; sys.exit(main(['--help']))",
    ],
    ids=["python -m smis_tui.cli card-agent", "smis-card-agent"],
)
def test_the_card_agent_runs_without_the_kiosk_packages(statement: str) -> None:
    done = run_without_kiosk(statement)
    assert done.returncode == 0, done.stderr
    assert "--server" in done.stdout and "USER@HOST" in done.stdout


def test_the_kiosk_without_its_packages_says_what_to_install() -> None:
    done = run_without_kiosk("from smis_tui.cli import main; sys.exit(main(['run']))")
    assert done.returncode == 1
    assert "pip install 'smis-tui[kiosk]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_base_install_is_the_card_agent() -> None:
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    base = {requirement.partition("==")[0] for requirement in project["dependencies"]}
    assert base == {"pyscard", "cryptography", "python-pkcs11"}
    kiosk = {r.partition("==")[0] for r in project["optional-dependencies"]["kiosk"]}
    assert {"textual", "peewee", "psycopg2-binary"} <= kiosk
    assert project["scripts"]["smis-card-agent"] == "smis_tui.cli.agent:main"
