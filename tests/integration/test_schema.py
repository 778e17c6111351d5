"""Schema versioning and reference data, on both databases."""

from __future__ import annotations

import pytest

from models.migrate import SCHEMA_VERSION, SchemaMismatch, check_schema, current_version, upgrade
from models.schema import Category, CategoryOption, Meta, Unit
from smis_tui.services import Services


def test_reference_data_is_seeded_once(services: Services) -> None:
    assert upgrade() == (SCHEMA_VERSION, SCHEMA_VERSION)
    names = [c.name for c in Category.select().order_by(Category.sort_order)]
    assert names == [
        "個人防護裝備",
        "流感抗病毒藥劑",
        "防疫藥品器材",
        "抗蛇毒血清",
        "生物防護裝備",
        "愛滋結核藥劑",
        "新興傳染病用藥",
    ]
    options = [o.name for o in CategoryOption.select().order_by(CategoryOption.sort_order)]
    assert options == ["猴痘(M痘)", "COVID-19"]
    assert Unit.select().count() == 5165


def test_unknown_schema_versions_are_refused(services: Services) -> None:
    check_schema()
    Meta.update(value=str(SCHEMA_VERSION + 1)).where(Meta.key == "schema_version").execute()
    with pytest.raises(SchemaMismatch, match="請更新 smis-tui"):
        check_schema()
    with pytest.raises(SchemaMismatch):
        upgrade()
    assert current_version() == SCHEMA_VERSION + 1
