"""The wheel runs: built from this checkout, installed into a fresh virtualenv, started
from outside the repository.

Everything the kiosk reads at run time (its stylesheets) must be inside the installed
package: a file left in the checkout is missing from the wheel, and `smis-tui run` then
stops at start with "unable to read CSS file" (issue 18). Here the wheel is installed
with its `kiosk` extra from the package index (as an operator does), the database and
the demo cards are made with the installed `smis-tui`, and the kiosk is started the way
`smis-tui run --demo` starts it, headless (Textual's Pilot instead of a terminal), with
the checkout neither the working directory nor on the path.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from tests.wheel_install import PACKAGES, REPO, Installed, clean_env, run

# Runs with the virtualenv's python: `smis-tui run --demo` through smis_tui.cli.main,
# with SmisApp.run replaced by a headless run that waits for boot (database, services,
# demo cards), records the first screen and quits.
DRIVER = """
import asyncio, importlib, inspect, json, pkgutil, sys

import smis_tui
import smis_tui.screens
import smis_tui.widgets
from textual.screen import Screen
from smis_tui.app import SmisApp
from smis_tui.cli import main
from smis_tui.text import t

seen = {}


def headless_run(self, *args, **kwargs):
    async def drive():
        async with self.run_test(size=(100, 30)) as pilot:
            for _ in range(400):  # boot runs in a worker thread
                if self.is_ready:
                    break
                await asyncio.sleep(0.05)
            await pilot.pause()
            seen["ready"] = self.is_ready
            seen["screen"] = type(self.screen).__name__
            seen["shot"] = self.export_screenshot().replace("&#160;", " ")
            seen["holders"] = [card.holder for card in self.demo_cards]
            seen["app_css"] = [str(path) for path in self.css_path]
            self.exit()

    asyncio.run(drive())


SmisApp.run = headless_run
seen["code"] = main(["run", "--demo"])
seen["module"] = smis_tui.__file__
seen["title"] = t("login.title", "zh_TW")
# The screens opened later read their own stylesheets then: each must be there too.
screen_css = []
for package in (smis_tui.screens, smis_tui.widgets):
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Screen) and cls.__module__ == module.__name__ and cls.CSS_PATH:
                paths = cls.CSS_PATH if isinstance(cls.CSS_PATH, list) else [cls.CSS_PATH]
                screen_css.extend(str(path) for path in paths)
seen["screen_css"] = screen_css
print(json.dumps(seen))
"""


@pytest.fixture(scope="module")
def installed(installed_wheel: Installed) -> Installed:
    return installed_wheel


def test_the_wheel_holds_every_file_the_packages_read(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
    data_files = {
        path.relative_to(REPO).as_posix()
        for name in PACKAGES
        for path in (REPO / name).rglob("*")
        if path.is_file() and path.suffix not in {".py", ".pyc"}
    }
    assert any(name.endswith(".tcss") for name in data_files)  # the stylesheets are found
    assert data_files - names == set()


def test_the_installed_kiosk_starts_on_the_login_screen(installed: Installed) -> None:
    data_dir = installed.outside / "data"
    env = clean_env(data_dir)
    smis = installed.bin("smis-tui")
    assert "已載入預設單位 5165 筆" in run([smis, "db", "init", "--demo"], installed.outside, env)
    run([smis, "demo", "init"], installed.outside, env)
    driver = installed.outside / "drive.py"
    driver.write_text(DRIVER, encoding="utf-8")
    out = run([installed.bin("python"), str(driver)], installed.outside, env)
    seen = json.loads(out.splitlines()[-1])

    site = installed.venv.resolve()
    # The installed copy ran, not the checkout.
    assert Path(seen["module"]).resolve().is_relative_to(site), seen["module"]
    assert seen["code"] == 0
    assert seen["ready"], "boot did not finish"
    assert seen["screen"] == "LoginScreen"
    assert seen["title"] in seen["shot"]
    assert seen["holders"] and seen["holders"][0] in seen["shot"]  # the demo cards, booted
    css = [Path(path) for path in seen["app_css"] + seen["screen_css"]]
    assert len(seen["screen_css"]) >= 5  # every screen family brings its own file
    for path in css:
        assert path.resolve().is_relative_to(site) and path.is_file(), path
