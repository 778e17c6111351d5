"""Reference data that the database is seeded with: categories and their sub-options."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CategorySeed:
    code: str
    name: str
    name_en: str
    options: tuple[str, ...] = ()


# Order is the column order of the seed's role grid.
CATEGORIES: tuple[CategorySeed, ...] = (
    CategorySeed("ppe", "個人防護裝備", "Personal protective equipment"),
    CategorySeed("flu_antiviral", "流感抗病毒藥劑", "Influenza antivirals"),
    CategorySeed("epidemic_drugs", "防疫藥品器材", "Epidemic-prevention drugs and devices"),
    CategorySeed("antivenom", "抗蛇毒血清", "Antivenom"),
    CategorySeed("biosafety", "生物防護裝備", "Biological protective equipment"),
    CategorySeed("hiv_tb", "愛滋結核藥劑", "HIV and TB drugs"),
    CategorySeed(
        "emerging", "新興傳染病用藥", "Emerging infectious disease drugs", ("猴痘(M痘)", "COVID-19")
    ),
)
