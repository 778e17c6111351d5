"""Parsed CSS kept between starts (smis_tui.css_cache): the second start parses
nothing and looks exactly like the first; an edited stylesheet is never served stale;
a cache file that is not the user's own, or damaged, is ignored."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
import textual.css.stylesheet as textual_stylesheet
from textual.app import App, ComposeResult
from textual.color import Color
from textual.widgets import Static

from smis_tui.app import SmisApp
from smis_tui.css_cache import FILE_NAME, CachingStylesheet, CssCache, default_directory
from smis_tui.screens.new_account import NewAccountScreen
from smis_tui.screens.unit_search import UnitSearchScreen
from tests.tui.conftest import settle


async def _screenshots(app: SmisApp) -> tuple[str, str]:
    """The login screen, then 單位查詢 (a screen with its own stylesheet file, whose
    first opening makes Textual parse every stylesheet again)."""
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        login = app.export_screenshot()
        await pilot.press("f2")
        await settle(pilot)
        assert isinstance(app.screen, NewAccountScreen)
        await pilot.click("#choose-unit")
        await settle(pilot)
        assert isinstance(app.screen, UnitSearchScreen)
        await settle(pilot)
        return login, app.export_screenshot()


async def test_second_start_parses_nothing_and_looks_the_same(  # type: ignore[no-untyped-def]
    demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    services, runtime, cards = demo
    cache = CssCache(tmp_path / "cache")

    def kiosk(css_cache: CssCache | None) -> SmisApp:
        return SmisApp(services, runtime, demo_cards=cards, kiosk=True, css_cache=css_cache)

    plain = await _screenshots(kiosk(None))

    first = kiosk(cache)
    assert await _screenshots(first) == plain
    assert isinstance(first.stylesheet, CachingStylesheet)
    assert first.stylesheet.misses > 0
    written = os.stat(cache.path)
    assert stat.S_IMODE(written.st_mode) == 0o600
    assert stat.S_IMODE(os.stat(cache.directory).st_mode) == 0o700

    # Every parse Textual does, also those of a fresh Stylesheet it makes itself.
    parsed: list[object] = []
    textual_parse = textual_stylesheet.parse

    def counting_parse(*args: Any, **kwargs: Any) -> Any:
        parsed.append(args[2])  # read_from
        return textual_parse(*args, **kwargs)

    monkeypatch.setattr(textual_stylesheet, "parse", counting_parse)
    second = kiosk(cache)
    assert await _screenshots(second) == plain
    assert isinstance(second.stylesheet, CachingStylesheet)
    assert second.stylesheet.loaded > 0
    assert parsed == []


class Probe(App[None]):
    """One Static styled by a stylesheet file of the test."""

    def __init__(self, css_file: Path, cache: CssCache) -> None:
        self.CSS_PATH = [css_file]
        super().__init__()
        self.stylesheet = CachingStylesheet(variables=self.get_css_variables(), cache=cache)

    def compose(self) -> ComposeResult:
        yield Static("x", id="probe")


async def _probe_color(css_file: Path, cache: CssCache) -> tuple[Color, CachingStylesheet]:
    app = Probe(css_file, cache)
    async with app.run_test() as pilot:
        await pilot.pause()
        color = app.query_one("#probe").styles.color
    assert isinstance(app.stylesheet, CachingStylesheet)
    app.stylesheet.save()
    return color, app.stylesheet


async def test_an_edited_stylesheet_is_parsed_again(tmp_path: Path) -> None:
    css_file = tmp_path / "probe.tcss"
    cache = CssCache(tmp_path / "cache")
    css_file.write_text("#probe { color: red; }")
    color, _ = await _probe_color(css_file, cache)
    assert color == Color.parse("red")

    css_file.write_text("#probe { color: blue; }")
    color, stylesheet = await _probe_color(css_file, cache)
    assert color == Color.parse("blue")
    assert stylesheet.misses == 1  # the edited file; Textual's own CSS came from the cache

    color, stylesheet = await _probe_color(css_file, cache)
    assert color == Color.parse("blue")
    assert stylesheet.misses == 0


async def _filled_cache(tmp_path: Path) -> tuple[Path, CssCache]:
    css_file = tmp_path / "probe.tcss"
    css_file.write_text("#probe { color: red; }")
    cache = CssCache(tmp_path / "cache")
    await _probe_color(css_file, cache)
    assert cache.path.is_file()
    return css_file, cache


@pytest.mark.parametrize("mode", [0o666, 0o620])
async def test_a_cache_file_others_can_write_is_not_loaded(tmp_path: Path, mode: int) -> None:
    css_file, cache = await _filled_cache(tmp_path)
    cache.path.chmod(mode)
    color, stylesheet = await _probe_color(css_file, cache)
    assert color == Color.parse("red")
    assert stylesheet.loaded == 0
    assert stylesheet.misses > 0


async def test_a_cache_directory_others_can_write_is_not_used(tmp_path: Path) -> None:
    css_file, cache = await _filled_cache(tmp_path)
    cache.directory.chmod(0o777)
    color, stylesheet = await _probe_color(css_file, cache)
    assert color == Color.parse("red")
    assert stylesheet.loaded == 0
    assert stylesheet.misses > 0


async def test_a_symbolic_link_is_not_followed(tmp_path: Path) -> None:
    css_file, cache = await _filled_cache(tmp_path)
    elsewhere = tmp_path / "elsewhere.pickle"
    cache.path.rename(elsewhere)
    cache.path.symlink_to(elsewhere)
    _, stylesheet = await _probe_color(css_file, cache)
    assert stylesheet.loaded == 0
    assert stylesheet.misses > 0


async def test_a_damaged_cache_file_is_ignored_and_written_again(tmp_path: Path) -> None:
    css_file, cache = await _filled_cache(tmp_path)
    cache.path.write_bytes(b"\x80\x05not a pickle at all")
    color, stylesheet = await _probe_color(css_file, cache)
    assert color == Color.parse("red")
    assert stylesheet.loaded == 0
    assert stylesheet.misses > 0
    _, stylesheet = await _probe_color(css_file, cache)
    assert stylesheet.loaded > 0
    assert stylesheet.misses == 0


async def test_another_theme_does_not_use_the_entries(tmp_path: Path) -> None:
    css_file, cache = await _filled_cache(tmp_path)
    app = Probe(css_file, cache)
    assert isinstance(app.stylesheet, CachingStylesheet)
    assert app.stylesheet.entries
    other = dict(app.stylesheet.cached_variables, primary="#123456")
    app.stylesheet.set_variables(other)
    assert app.stylesheet.entries == {}


async def test_an_unwritable_cache_directory_only_costs_the_parse(tmp_path: Path) -> None:
    css_file = tmp_path / "probe.tcss"
    css_file.write_text("#probe { color: red; }")
    blocked = tmp_path / "file-not-directory"
    blocked.write_text("")
    cache = CssCache(blocked / "cache")
    color, stylesheet = await _probe_color(css_file, cache)
    assert color == Color.parse("red")
    assert not (blocked / "cache" / FILE_NAME).exists()
    assert stylesheet.misses > 0


async def test_a_directory_others_can_write_is_not_written_to(tmp_path: Path) -> None:
    css_file = tmp_path / "probe.tcss"
    css_file.write_text("#probe { color: red; }")
    cache = CssCache(tmp_path / "cache")
    cache.directory.mkdir(mode=0o700)
    cache.directory.chmod(0o775)  # e.g. made by hand with umask 002
    await _probe_color(css_file, cache)
    assert not cache.path.exists()


def test_no_home_directory_means_no_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    import pwd

    def no_entry(uid: int) -> pwd.struct_passwd:
        raise KeyError(uid)

    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    assert default_directory({}) is None
    assert default_directory({"XDG_CACHE_HOME": "/var/cache/kiosk"}) == Path(
        "/var/cache/kiosk/smis-tui"
    )
