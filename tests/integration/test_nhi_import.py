"""The published NHI layouts (tests/data/nhi, docs/nhi-data.md) on both backends:
the raw inserts write dates and flags as each server keeps them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from models.schema import Unit, UnitKind
from models.unit_import import close_ended_units, import_units_csv
from smis_tui.services import Services

DATA = Path(__file__).resolve().parents[1] / "data" / "nhi"
TODAY = dt.date(2026, 12, 3)


def test_hospitals_clinics_and_pharmacies_as_published(services: Services) -> None:
    first = import_units_csv(DATA / "hospitals-and-clinics.csv", today=TODAY)
    second = import_units_csv(DATA / "pharmacies.csv", today=TODAY)
    assert first.retired > 0 and second.retired > 0
    units = {unit.code: unit for unit in Unit.select().where(Unit.source == "nhi")}
    assert len(units) == 8
    assert units["1101100011"].closes_on == dt.date(2030, 12, 31)
    assert units["1101100011"].active and not units["3590300018"].active
    assert units["5942030015"].county == "臺中市"
    assert (
        not Unit.select()
        .where(
            (Unit.source == "generated")
            & Unit.kind.in_([UnitKind.HOSPITAL, UnitKind.CLINIC, UnitKind.PHARMACY])
            & Unit.active
        )
        .exists()
    )
    directory = services.units
    assert [row.code for row in directory.search("成功大學").rows] == ["0421040011"]
    assert directory.search("台中測試藥局").total == 1
    assert close_ended_units(dt.date(2029, 11, 30)) == 1  # the pharmacy's last day came
    assert directory.search("台中測試藥局").total == 0
    assert directory.search("基隆長庚").total == 1
