"""A unit search whose query begins with "-" is searched for, as typed or after "--"
(argparse would otherwise take it for an option and end with its usage line)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from models.db import close_database
from smis_tui.cli import main


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    data = tmp_path_factory.mktemp("dash") / "data"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SMIS_DATA_DIR", str(data))
        for name in ("DATABASE_URL", "SMIS_KEY_FILE", "SMIS_CONFIG"):
            patch.delenv(name, raising=False)
        assert main(["db", "init", "--units", "200"]) == 0
        close_database()
        yield data


@pytest.fixture
def in_data_dir(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SMIS_DATA_DIR", str(data_dir))
    for name in ("DATABASE_URL", "SMIS_KEY_FILE", "SMIS_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    yield
    close_database()


@pytest.mark.parametrize(
    "argv",
    [
        ["units", "search", "-="],
        ["units", "search", "--", "-="],
        ["units", "search", "--c"],  # not an abbreviation of --county
        ["units", "search", "-="] + ["--county", "臺北市"],
    ],
)
def test_a_query_beginning_with_a_dash_is_searched(
    in_data_dir: None, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "查無符合條件的單位" in out
    assert "【每頁 20 筆" in out
    assert err == ""


def test_a_second_unknown_argument_is_still_refused(
    in_data_dir: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["units", "search", "-=", "--bogus"])
    assert exited.value.code == 2
    assert "unrecognized arguments: -= --bogus" in capsys.readouterr().err


def test_the_help_says_how_to_search_for_a_dash(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["units", "search", "--help"])
    assert "寫在 -- 之後" in capsys.readouterr().out


def test_an_unknown_county_is_quoted_shortened(
    in_data_dir: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pasted screenful as the county: one line naming the valid counties, not the
    screenful again (make stress found a 20 099-character line)."""
    assert main(["units", "search", "--county", "[on red]" * 2500]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and len(err) < 400
    assert err.startswith("縣市「[on red]") and err.endswith("連江縣")


def test_a_page_number_is_a_page(in_data_dir: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["units", "search", "--page", "1"]) == 0
    assert "第 1 頁" in capsys.readouterr().out
