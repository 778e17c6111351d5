"""The default unit directory: Taiwan's 22 counties and a deterministic set of units.

:func:`generate_units` builds the seed's 5165 units (259 pages of 20) from a seed:
衛生福利部疾病管制署 → 6 regional centres → 22 health bureaus → one public health centre
per township → hospitals → clinics and pharmacies, with realistic names and NHI-like
codes. :func:`load_generated_units` puts them into the bound database.

Codes follow the shape of the NHI 醫事機構代碼: two digits of ownership/kind, the two-digit
NHI area code of the county (01 臺北市, 31 新北市, 36 for the former 臺中縣 districts, …),
two digits of township, a three-digit serial and a check digit. Clinics start with 3
(``35…`` 西醫, ``36…`` 牙醫, ``37…`` 中醫), pharmacies with 59, health centres with 23,
hospitals with 0 (public) or 1 (private); the CDC, regional centres and health bureaus,
which have no NHI contract, use 00.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import cast

from models.db import bulk_insert, is_postgres, write_transaction
from models.reference import CATEGORIES
from models.schema import Category, Unit, UnitKind, utcnow
from models.textfold import fold
from models.unit_search import refresh_statistics, refresh_unit_grams

DEFAULT_TOTAL = 5165
DEFAULT_SEED = 2024
INSERT_BATCH = 500

ALL_CATEGORIES: tuple[str, ...] = tuple(c.code for c in CATEGORIES)


# --------------------------------------------------------------------------- counties


@dataclass(frozen=True)
class County:
    name: str  # official spelling, with 臺
    moi_code: str  # 內政部 county code (縣市別代碼)
    area: str  # NHI two-digit area code
    phone_area: str
    townships: tuple[str, ...]
    # Townships of a county merged into a municipality keep their old NHI area code.
    former_area: str = ""
    former_townships: frozenset[str] = field(default_factory=frozenset)

    @property
    def short(self) -> str:
        return self.name[:-1]

    def area_of(self, township: str) -> str:
        return self.former_area if township in self.former_townships else self.area


def _t(text: str) -> tuple[str, ...]:
    return tuple(text.split())


COUNTIES: tuple[County, ...] = (
    County(
        "臺北市",
        "63",
        "01",
        "02",
        _t("中正區 大同區 中山區 松山區 大安區 萬華區 信義區 士林區 北投區 內湖區 南港區 文山區"),
    ),
    County(
        "新北市",
        "65",
        "31",
        "02",
        _t(
            "板橋區 三重區 中和區 永和區 新莊區 新店區 樹林區 鶯歌區 三峽區 淡水區 汐止區 瑞芳區"
            " 土城區 蘆洲區 五股區 泰山區 林口區 深坑區 石碇區 坪林區 三芝區 石門區 八里區 平溪區"
            " 雙溪區 貢寮區 金山區 萬里區 烏來區"
        ),
    ),
    County(
        "桃園市",
        "68",
        "32",
        "03",
        _t(
            "桃園區 中壢區 大溪區 楊梅區 蘆竹區 大園區 龜山區 八德區 龍潭區 平鎮區 新屋區 觀音區 復興區"
        ),
    ),
    County(
        "臺中市",
        "66",
        "17",
        "04",
        _t(
            "中區 東區 南區 西區 北區 西屯區 南屯區 北屯區 豐原區 東勢區 大甲區 清水區 沙鹿區"
            " 梧棲區 后里區 神岡區 潭子區 大雅區 新社區 石岡區 外埔區 大安區 烏日區 大肚區 龍井區"
            " 霧峰區 太平區 大里區 和平區"
        ),
        former_area="36",
        former_townships=frozenset(
            _t(
                "豐原區 東勢區 大甲區 清水區 沙鹿區 梧棲區 后里區 神岡區 潭子區 大雅區 新社區"
                " 石岡區 外埔區 大安區 烏日區 大肚區 龍井區 霧峰區 太平區 大里區 和平區"
            )
        ),
    ),
    County(
        "臺南市",
        "67",
        "21",
        "06",
        _t(
            "中西區 東區 南區 北區 安平區 安南區 新營區 鹽水區 白河區 柳營區 後壁區 東山區 麻豆區"
            " 下營區 六甲區 官田區 大內區 佳里區 學甲區 西港區 七股區 將軍區 北門區 新化區 善化區"
            " 新市區 安定區 山上區 玉井區 楠西區 南化區 左鎮區 仁德區 歸仁區 關廟區 龍崎區 永康區"
        ),
        former_area="41",
        former_townships=frozenset(
            _t(
                "新營區 鹽水區 白河區 柳營區 後壁區 東山區 麻豆區 下營區 六甲區 官田區 大內區"
                " 佳里區 學甲區 西港區 七股區 將軍區 北門區 新化區 善化區 新市區 安定區 山上區"
                " 玉井區 楠西區 南化區 左鎮區 仁德區 歸仁區 關廟區 龍崎區 永康區"
            )
        ),
    ),
    County(
        "高雄市",
        "64",
        "02",
        "07",
        _t(
            "鹽埕區 鼓山區 左營區 楠梓區 三民區 新興區 前金區 苓雅區 前鎮區 旗津區 小港區 鳳山區"
            " 林園區 大寮區 大樹區 大社區 仁武區 鳥松區 岡山區 橋頭區 燕巢區 田寮區 阿蓮區 路竹區"
            " 湖內區 茄萣區 永安區 彌陀區 梓官區 旗山區 美濃區 六龜區 甲仙區 杉林區 內門區 茂林區"
            " 桃源區 那瑪夏區"
        ),
        former_area="42",
        former_townships=frozenset(
            _t(
                "鳳山區 林園區 大寮區 大樹區 大社區 仁武區 鳥松區 岡山區 橋頭區 燕巢區 田寮區"
                " 阿蓮區 路竹區 湖內區 茄萣區 永安區 彌陀區 梓官區 旗山區 美濃區 六龜區 甲仙區"
                " 杉林區 內門區 茂林區 桃源區 那瑪夏區"
            )
        ),
    ),
    County("基隆市", "10017", "11", "02", _t("中正區 七堵區 暖暖區 仁愛區 中山區 安樂區 信義區")),
    County("新竹市", "10018", "12", "03", _t("東區 北區 香山區")),
    County("嘉義市", "10020", "22", "05", _t("東區 西區")),
    County(
        "新竹縣",
        "10004",
        "33",
        "03",
        _t(
            "竹北市 竹東鎮 新埔鎮 關西鎮 湖口鄉 新豐鄉 芎林鄉 橫山鄉 北埔鄉 寶山鄉 峨眉鄉 尖石鄉 五峰鄉"
        ),
    ),
    County(
        "苗栗縣",
        "10005",
        "35",
        "037",
        _t(
            "苗栗市 頭份市 苑裡鎮 通霄鎮 竹南鎮 後龍鎮 卓蘭鎮 大湖鄉 公館鄉 銅鑼鄉 南庄鄉 頭屋鄉"
            " 三義鄉 西湖鄉 造橋鄉 三灣鄉 獅潭鄉 泰安鄉"
        ),
    ),
    County(
        "彰化縣",
        "10007",
        "37",
        "04",
        _t(
            "彰化市 員林市 鹿港鎮 和美鎮 北斗鎮 溪湖鎮 田中鎮 二林鎮 線西鄉 伸港鄉 福興鄉 秀水鄉"
            " 花壇鄉 芬園鄉 大村鄉 埔鹽鄉 埔心鄉 永靖鄉 社頭鄉 二水鄉 田尾鄉 埤頭鄉 芳苑鄉 大城鄉"
            " 竹塘鄉 溪州鄉"
        ),
    ),
    County(
        "南投縣",
        "10008",
        "38",
        "049",
        _t(
            "南投市 埔里鎮 草屯鎮 竹山鎮 集集鎮 名間鄉 鹿谷鄉 中寮鄉 魚池鄉 國姓鄉 水里鄉 信義鄉 仁愛鄉"
        ),
    ),
    County(
        "雲林縣",
        "10009",
        "39",
        "05",
        _t(
            "斗六市 斗南鎮 虎尾鎮 西螺鎮 土庫鎮 北港鎮 古坑鄉 大埤鄉 莿桐鄉 林內鄉 二崙鄉 崙背鄉"
            " 麥寮鄉 東勢鄉 褒忠鄉 臺西鄉 元長鄉 四湖鄉 口湖鄉 水林鄉"
        ),
    ),
    County(
        "嘉義縣",
        "10010",
        "40",
        "05",
        _t(
            "太保市 朴子市 布袋鎮 大林鎮 民雄鄉 溪口鄉 新港鄉 六腳鄉 東石鄉 義竹鄉 鹿草鄉 水上鄉"
            " 中埔鄉 竹崎鄉 梅山鄉 番路鄉 大埔鄉 阿里山鄉"
        ),
    ),
    County(
        "屏東縣",
        "10013",
        "43",
        "08",
        _t(
            "屏東市 潮州鎮 東港鎮 恆春鎮 萬丹鄉 長治鄉 麟洛鄉 九如鄉 里港鄉 鹽埔鄉 高樹鄉 萬巒鄉"
            " 內埔鄉 竹田鄉 新埤鄉 枋寮鄉 新園鄉 崁頂鄉 林邊鄉 南州鄉 佳冬鄉 琉球鄉 車城鄉 滿州鄉"
            " 枋山鄉 三地門鄉 霧臺鄉 瑪家鄉 泰武鄉 來義鄉 春日鄉 獅子鄉 牡丹鄉"
        ),
    ),
    County(
        "宜蘭縣",
        "10002",
        "34",
        "03",
        _t("宜蘭市 羅東鎮 蘇澳鎮 頭城鎮 礁溪鄉 壯圍鄉 員山鄉 冬山鄉 五結鄉 三星鄉 大同鄉 南澳鄉"),
    ),
    County(
        "花蓮縣",
        "10015",
        "45",
        "03",
        _t(
            "花蓮市 鳳林鎮 玉里鎮 新城鄉 吉安鄉 壽豐鄉 光復鄉 豐濱鄉 瑞穗鄉 富里鄉 秀林鄉 萬榮鄉 卓溪鄉"
        ),
    ),
    County(
        "臺東縣",
        "10014",
        "46",
        "089",
        _t(
            "臺東市 成功鎮 關山鎮 卑南鄉 鹿野鄉 池上鄉 東河鄉 長濱鄉 太麻里鄉 大武鄉 綠島鄉 海端鄉"
            " 延平鄉 金峰鄉 達仁鄉 蘭嶼鄉"
        ),
    ),
    County("澎湖縣", "10016", "44", "06", _t("馬公市 湖西鄉 白沙鄉 西嶼鄉 望安鄉 七美鄉")),
    County("金門縣", "09020", "90", "082", _t("金城鎮 金湖鎮 金沙鎮 金寧鄉 烈嶼鄉 烏坵鄉")),
    County("連江縣", "09007", "91", "0836", _t("南竿鄉 北竿鄉 莒光鄉 東引鄉")),
)

COUNTY_NAMES: tuple[str, ...] = tuple(c.name for c in COUNTIES)


def county_rank(county: str) -> int:
    """The county's place in the official order, 1 (臺北市) … 22 (連江縣); 99 if unknown."""
    return COUNTY_NAMES.index(county) + 1 if county in COUNTY_NAMES else 99


COUNTY_BY_NAME: dict[str, County] = {c.name: c for c in COUNTIES}

# 縣市別代碼 → county: 內政部 codes, plus the two-digit NHI area codes (which include the
# pre-2010 county codes of the merged municipalities: 36 臺中縣, 41 臺南縣, 42 高雄縣).
COUNTY_BY_CODE: dict[str, str] = {c.moi_code: c.name for c in COUNTIES}
# The municipalities' codes as the NHI files write them, five digits: 63000 for 63.
COUNTY_BY_CODE.update({c.moi_code.ljust(5, "0"): c.name for c in COUNTIES if len(c.moi_code) == 2})
COUNTY_BY_CODE.update({c.area: c.name for c in COUNTIES})
COUNTY_BY_CODE.update({c.former_area: c.name for c in COUNTIES if c.former_area})

# The six regional centres and the counties each covers; the first is where it sits.
REGIONAL_CENTRES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("疾病管制署臺北區管制中心", ("臺北市", "新北市", "基隆市", "宜蘭縣", "金門縣", "連江縣")),
    ("疾病管制署北區管制中心", ("桃園市", "新竹市", "新竹縣", "苗栗縣")),
    ("疾病管制署中區管制中心", ("臺中市", "彰化縣", "南投縣")),
    ("疾病管制署南區管制中心", ("臺南市", "嘉義市", "嘉義縣", "雲林縣")),
    ("疾病管制署高屏區管制中心", ("高雄市", "屏東縣", "澎湖縣")),
    ("疾病管制署東區管制中心", ("花蓮縣", "臺東縣")),
)

CDC_NAME = "衛生福利部疾病管制署"

# The only 22 names containing 衛生局.
HEALTH_BUREAUS: dict[str, str] = {
    "臺北市": "臺北市政府衛生局",
    "新北市": "新北市政府衛生局",
    "桃園市": "桃園市政府衛生局",
    "臺中市": "臺中市政府衛生局",
    "臺南市": "臺南市政府衛生局",
    "高雄市": "高雄市政府衛生局",
    "基隆市": "基隆市衛生局",
    "新竹市": "新竹市衛生局",
    "嘉義市": "嘉義市政府衛生局",
    "新竹縣": "新竹縣政府衛生局",
    "苗栗縣": "苗栗縣政府衛生局",
    "彰化縣": "彰化縣衛生局",
    "南投縣": "南投縣政府衛生局",
    "雲林縣": "雲林縣衛生局",
    "嘉義縣": "嘉義縣衛生局",
    "屏東縣": "屏東縣政府衛生局",
    "宜蘭縣": "宜蘭縣政府衛生局",
    "花蓮縣": "花蓮縣衛生局",
    "臺東縣": "臺東縣衛生局",
    "澎湖縣": "澎湖縣政府衛生局",
    "金門縣": "金門縣衛生局",
    "連江縣": "連江縣衛生局",
}

# Rough number of hospitals per county (2023 order of magnitude) and population in
# ten-thousands; they weight where hospitals and clinics/pharmacies go.
_HOSPITAL_WEIGHT: dict[str, int] = {
    "臺北市": 37, "新北市": 55, "桃園市": 33, "臺中市": 65, "臺南市": 37, "高雄市": 60,
    "基隆市": 7, "新竹市": 7, "嘉義市": 10, "新竹縣": 7, "苗栗縣": 12, "彰化縣": 33,
    "南投縣": 15, "雲林縣": 15, "嘉義縣": 6, "屏東縣": 24, "宜蘭縣": 12, "花蓮縣": 10,
    "臺東縣": 7, "澎湖縣": 3, "金門縣": 2, "連江縣": 1,
}  # fmt: skip
_POPULATION: dict[str, int] = {
    "臺北市": 250, "新北市": 405, "桃園市": 230, "臺中市": 285, "臺南市": 186, "高雄市": 273,
    "基隆市": 36, "新竹市": 45, "嘉義市": 26, "新竹縣": 59, "苗栗縣": 54, "彰化縣": 123,
    "南投縣": 48, "雲林縣": 67, "嘉義縣": 48, "屏東縣": 80, "宜蘭縣": 45, "花蓮縣": 32,
    "臺東縣": 21, "澎湖縣": 11, "金門縣": 14, "連江縣": 2,
}  # fmt: skip

# Real public hospitals, county by county (listed before the generated ones).
_PUBLIC_HOSPITALS: dict[str, tuple[str, ...]] = {
    "臺北市": ("臺北市立聯合醫院", "國立臺灣大學醫學院附設醫院", "臺北榮民總醫院", "三軍總醫院"),
    "新北市": ("新北市立聯合醫院", "衛生福利部臺北醫院", "衛生福利部樂生療養院"),
    "桃園市": ("衛生福利部桃園醫院", "衛生福利部桃園療養院", "國軍桃園總醫院"),
    "臺中市": ("衛生福利部臺中醫院", "衛生福利部豐原醫院", "臺中榮民總醫院"),
    "臺南市": ("衛生福利部臺南醫院", "衛生福利部新營醫院", "國立成功大學醫學院附設醫院"),
    "高雄市": ("高雄市立聯合醫院", "衛生福利部旗山醫院", "高雄榮民總醫院"),
    "基隆市": ("衛生福利部基隆醫院",),
    "新竹市": ("國立臺灣大學醫學院附設醫院新竹臺大分院",),
    "嘉義市": ("衛生福利部嘉義醫院",),
    "新竹縣": ("新竹縣立湖口醫院",),
    "苗栗縣": ("衛生福利部苗栗醫院",),
    "彰化縣": ("衛生福利部彰化醫院",),
    "南投縣": ("衛生福利部南投醫院", "衛生福利部草屯療養院"),
    "雲林縣": ("國立臺灣大學醫學院附設醫院雲林分院",),
    "嘉義縣": ("衛生福利部朴子醫院",),
    "屏東縣": ("衛生福利部屏東醫院", "衛生福利部恆春旗艦醫院"),
    "宜蘭縣": ("國立陽明交通大學附設醫院",),
    "花蓮縣": ("衛生福利部花蓮醫院", "衛生福利部玉里醫院"),
    "臺東縣": ("衛生福利部臺東醫院",),
    "澎湖縣": ("衛生福利部澎湖醫院",),
    "金門縣": ("衛生福利部金門醫院",),
    "連江縣": ("連江縣立醫院",),
}

_HOSPITAL_CORES = _t(
    "仁愛 博愛 安泰 宏恩 聖保祿 慈惠 長安 同仁 惠生 康寧 仁濟 明德 大千 宏仁 安生 建佑 祐生"
    " 優生 濟生 大新 華濟 佑民 天成 新仁 信義 和平 國泰 光明 中興 德仁 協和 正心 恩主公 聖功"
    " 崇恩 懷德 福康 永安 靜和 民生 杏和 瑞生 宏慈 慈祐 仁和 怡仁 永和 大安 博仁 元和"
)
_SURNAMES = _t("陳 林 黃 張 李 王 吳 劉 蔡 楊 許 鄭 謝 郭 洪 曾 邱 廖 賴 周 徐 蘇 葉 莊 呂 江 何")
_HOSPITAL_SUFFIXES: tuple[tuple[str, int], ...] = (
    ("醫院", 45), ("綜合醫院", 20), ("紀念醫院", 15), ("婦產科醫院", 5), ("骨科醫院", 5),
    ("外科醫院", 5), ("復健醫院", 3), ("身心醫院", 2),
)  # fmt: skip
_CORE_FIRST = tuple("同仁康安永福德信合明大新長惠祥健宏博佳美華慈崇嘉民中正育良順")
_CORE_SECOND = tuple("泰愛健生安和德仁心康群民成平恩順益興全欣祐元禾豐揚峰品璽悅晴")
_CLINIC_SPECIALTIES: tuple[tuple[str, int], ...] = (
    ("", 30), ("牙醫", 18), ("中醫", 12), ("耳鼻喉科", 6), ("小兒科", 6), ("內科", 6),
    ("家庭醫學科", 5), ("皮膚科", 4), ("眼科", 4), ("婦產科", 3), ("骨科", 3), ("復健科", 2),
    ("身心醫學科", 1),
)  # fmt: skip
_PHARMACY_SUFFIXES: tuple[tuple[str, int], ...] = (
    ("藥局", 55),
    ("健保藥局", 20),
    ("大藥局", 10),
    ("中西藥局", 8),
    ("社區藥局", 7),
)
_ROADS = _t(
    "中山路 中正路 民生路 民權路 民族路 復興路 建國路 光復路 成功路 和平路 信義路 仁愛路"
    " 自由路 文化路 中華路 忠孝路 公園路 大同路 新生路 博愛路 三民路 林森路 金山路 長安路"
)
_SECTIONS = ("", "", "", "一段", "二段", "三段")

# Kind prefixes (first two digits of the code).
_PREFIX_AGENCY = "00"
_PREFIX_HEALTH_CENTRE = "23"
_PREFIX_CLINIC = {"牙醫": "36", "中醫": "37"}  # everything else 35
_PREFIX_PHARMACY = "59"

# Categories: what each kind of unit handles (docs/architecture.md, "Domain model").
# Generated hospitals and clinics get random subsets around these; the NHI importer
# uses them as they are.
HEALTH_CENTRE_CATEGORIES: tuple[str, ...] = (
    "ppe",
    "flu_antiviral",
    "epidemic_drugs",
    "hiv_tb",
    "emerging",
)
TYPICAL_CATEGORIES: dict[str, tuple[str, ...]] = {
    UnitKind.CDC: ALL_CATEGORIES,
    UnitKind.REGIONAL_CENTRE: ALL_CATEGORIES,
    UnitKind.HEALTH_BUREAU: ALL_CATEGORIES,
    UnitKind.HEALTH_CENTRE: HEALTH_CENTRE_CATEGORIES,
    UnitKind.HOSPITAL: (
        "ppe",
        "flu_antiviral",
        "epidemic_drugs",
        "biosafety",
        "hiv_tb",
        "emerging",
    ),
    UnitKind.CLINIC: ("ppe", "flu_antiviral"),
    UnitKind.PHARMACY: ("flu_antiviral", "emerging"),
    UnitKind.OTHER: ("ppe",),
}
# The seed's own example: 金門縣衛生局 shows 生物防護裝備 as 【單位無此業務權限】.
_BUREAU_EXCEPTIONS: dict[str, tuple[str, ...]] = {"金門縣": ("biosafety",)}

# Of 480 hospitals, about 200 keep antivenom (抗蛇毒血清).
HOSPITALS = 480
ANTIVENOM_HOSPITALS = 200
PHARMACY_SHARE = 0.24


@dataclass(frozen=True)
class GeneratedUnit:
    code: str
    name: str
    county: str
    kind: str  # a models.schema.UnitKind value
    parent_code: str | None
    category_codes: tuple[str, ...]
    township: str = ""
    address: str = ""
    phone: str = ""


# --------------------------------------------------------------------------- generation


def _allocate(total: int, weights: dict[str, int], minimum: int = 0) -> dict[str, int]:
    """Split ``total`` over the counties by weight (largest remainder, in county order)."""
    names = list(COUNTY_NAMES)
    base = {n: minimum for n in names} if total >= minimum * len(names) else dict.fromkeys(names, 0)
    left = total - sum(base.values())
    weight_sum = sum(weights[n] for n in names)
    shares = {n: left * weights[n] / weight_sum for n in names}
    result = {n: base[n] + int(shares[n]) for n in names}
    rest = total - sum(result.values())
    by_remainder = sorted(names, key=lambda n: (-(shares[n] - int(shares[n])), names.index(n)))
    for n in by_remainder[:rest]:
        result[n] += 1
    return result


def _weighted(rng: random.Random, options: Sequence[tuple[str, int]]) -> str:
    return rng.choices([o for o, _ in options], weights=[w for _, w in options])[0]


def _public_prefix(name: str) -> str:
    """Ownership digits of a public hospital: 01 衛福部, 02 縣市立, 04 大學, 05 國軍, 06 榮民."""
    if name.startswith("衛生福利部"):
        return "01"
    if "大學" in name:
        return "04"
    if "國軍" in name or "三軍" in name:
        return "05"
    if "榮民" in name:
        return "06"
    return "02"


def _stem(township: str) -> str:
    """板橋區 → 板橋; 中區 stays 中區 (one character alone reads badly)."""
    return township[:-1] if len(township) > 2 else township


class _Codes:
    """Unique NHI-like codes: prefix + area + township + serial + check digit."""

    def __init__(self) -> None:
        self._serials: Counter[tuple[str, str, int]] = Counter()

    def next(self, prefix: str, area: str, township_no: int) -> str:
        key = (prefix, area, township_no)
        self._serials[key] += 1
        serial = self._serials[key]
        overflow, serial = divmod(serial, 1000)
        block = township_no + 50 * overflow
        if block > 99:
            raise ValueError("太多單位：同一鄉鎮市區的代碼已用完")
        body = f"{prefix}{area}{block:02d}{serial:03d}"
        check = sum((i + 1) * int(d) for i, d in enumerate(body)) % 10
        return f"{body}{check}"


class _Generator:
    def __init__(self, total: int, seed: int) -> None:
        self.total = total
        self.rng = random.Random(seed)
        self.codes = _Codes()
        self.names: set[str] = set()
        self.units: list[GeneratedUnit] = []

    # -- helpers

    def _address(self, county: County, township: str) -> tuple[str, str]:
        rng = self.rng
        road = rng.choice(_ROADS) + rng.choice(_SECTIONS)
        address = f"{county.name}{township}{road}{rng.randint(1, 580)}號"
        digits = {"02": 8, "04": 8, "037": 6, "089": 6, "082": 6, "0836": 5}.get(
            county.phone_area, 7
        )
        number = str(rng.randint(2, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(digits - 1))
        if digits >= 7:
            number = f"{number[:-4]}-{number[-4:]}"
        return address, f"{county.phone_area}-{number}"

    def _unique(self, make: Callable[[], str], county: County, township: str) -> str:
        for attempt in range(60):
            name = make()
            if attempt >= 20:
                name = _stem(township) + name
            if attempt >= 40:
                name = county.short + name
            if name not in self.names:
                break
        self.names.add(name)
        return name

    def add(
        self,
        *,
        code: str,
        name: str,
        county: County,
        kind: UnitKind,
        parent: str | None,
        categories: Iterable[str],
        township: str,
    ) -> GeneratedUnit:
        assert "衛生局" not in name or kind is UnitKind.HEALTH_BUREAU, name
        wanted = set(categories)
        address, phone = self._address(county, township)
        unit = GeneratedUnit(
            code=code,
            name=name,
            county=county.name,
            kind=kind.value,
            parent_code=parent,
            category_codes=tuple(c for c in ALL_CATEGORIES if c in wanted),
            township=township,
            address=address,
            phone=phone,
        )
        self.names.add(name)
        self.units.append(unit)
        return unit

    # -- levels

    def build(self) -> list[GeneratedUnit]:
        cdc_county = COUNTY_BY_NAME["臺北市"]
        cdc = self.add(
            code=self.codes.next(_PREFIX_AGENCY, cdc_county.area, 10),
            name=CDC_NAME,
            county=cdc_county,
            kind=UnitKind.CDC,
            parent=None,
            categories=ALL_CATEGORIES,
            township="中正區",
        )
        centre_of: dict[str, str] = {}
        for name, covered in REGIONAL_CENTRES:
            seat = COUNTY_BY_NAME[covered[0]]
            centre = self.add(
                code=self.codes.next(_PREFIX_AGENCY, seat.area, 20),
                name=name,
                county=seat,
                kind=UnitKind.REGIONAL_CENTRE,
                parent=cdc.code,
                categories=ALL_CATEGORIES,
                township=seat.townships[0],
            )
            centre_of.update(dict.fromkeys(covered, centre.code))
        bureau_of: dict[str, str] = {}
        for county in COUNTIES:
            lacking = _BUREAU_EXCEPTIONS.get(county.name, ())
            bureau = self.add(
                code=self.codes.next(_PREFIX_AGENCY, county.area, 30),
                name=HEALTH_BUREAUS[county.name],
                county=county,
                kind=UnitKind.HEALTH_BUREAU,
                parent=centre_of[county.name],
                categories=[c for c in ALL_CATEGORIES if c not in lacking],
                township=county.townships[0],
            )
            bureau_of[county.name] = bureau.code
        centres_of: dict[str, list[tuple[str, str, int]]] = {}
        for county in COUNTIES:
            for number, township in enumerate(county.townships, start=1):
                if county.name == "臺北市":
                    name = f"臺北市{township}健康服務中心"
                else:
                    name = f"{county.name}{township}衛生所"
                centre = self.add(
                    code=self.codes.next(_PREFIX_HEALTH_CENTRE, county.area_of(township), number),
                    name=name,
                    county=county,
                    kind=UnitKind.HEALTH_CENTRE,
                    parent=bureau_of[county.name],
                    categories=HEALTH_CENTRE_CATEGORIES,
                    township=township,
                )
                centres_of.setdefault(county.name, []).append((centre.code, township, number))
        fixed = len(self.units)
        if self.total < fixed:
            return self.units[: self.total]
        rest = self.total - fixed
        hospitals = min(HOSPITALS, rest * HOSPITALS // (DEFAULT_TOTAL - fixed))
        self._hospitals(hospitals, bureau_of)
        self._clinics_and_pharmacies(self.total - len(self.units), centres_of)
        assert len(self.units) == self.total
        return self.units

    def _hospitals(self, count: int, bureau_of: dict[str, str]) -> None:
        rng = self.rng
        per_county = _allocate(count, _HOSPITAL_WEIGHT, minimum=1)
        first_of_county: list[int] = []
        start = len(self.units)
        for county in COUNTIES:
            public = _PUBLIC_HOSPITALS[county.name][: per_county[county.name]]
            for index in range(per_county[county.name]):
                number = rng.randrange(len(county.townships))
                township = county.townships[number]
                if index < len(public):
                    name = public[index]
                    prefix = _public_prefix(name)
                else:
                    suffix = _weighted(rng, _HOSPITAL_SUFFIXES)

                    def make(suffix: str = suffix, township: str = township) -> str:
                        roll = rng.random()
                        if suffix in ("外科醫院", "綜合醫院") and roll < 0.35:
                            return rng.choice(_SURNAMES) + suffix
                        core = rng.choice(_HOSPITAL_CORES)
                        if roll < 0.7:
                            return _stem(township) + core + suffix
                        return core + suffix

                    name = self._unique(make, county, township)
                    prefix = "11" if suffix in ("紀念醫院", "綜合醫院") else "15"
                if index == 0:
                    first_of_county.append(len(self.units))
                self.add(
                    code=self.codes.next(prefix, county.area_of(township), number + 1),
                    name=name,
                    county=county,
                    kind=UnitKind.HOSPITAL,
                    parent=bureau_of[county.name],
                    categories=(),
                    township=township,
                )
        # Categories: antivenom at ~200 hospitals (at least one per county), the rest
        # mostly everywhere.
        indices = list(range(start, len(self.units)))
        target = round(count * ANTIVENOM_HOSPITALS / HOSPITALS)
        antivenom = set(first_of_county[:target])
        others = [i for i in indices if i not in antivenom]
        antivenom.update(rng.sample(others, max(0, target - len(antivenom))))
        for i in indices:
            wanted = ["ppe", "flu_antiviral", "epidemic_drugs"]
            if i in antivenom:
                wanted.append("antivenom")
            if rng.random() < 0.7:
                wanted.append("biosafety")
            if rng.random() < 0.85:
                wanted.append("hiv_tb")
            if rng.random() < 0.9:
                wanted.append("emerging")
            unit = self.units[i]
            self.units[i] = GeneratedUnit(
                code=unit.code,
                name=unit.name,
                county=unit.county,
                kind=unit.kind,
                parent_code=unit.parent_code,
                category_codes=tuple(c for c in ALL_CATEGORIES if c in wanted),
                township=unit.township,
                address=unit.address,
                phone=unit.phone,
            )

    def _clinics_and_pharmacies(
        self, count: int, centres_of: dict[str, list[tuple[str, str, int]]]
    ) -> None:
        rng = self.rng
        per_county = _allocate(count, _POPULATION)
        for county in COUNTIES:
            centres = centres_of[county.name]
            for _ in range(per_county[county.name]):
                centre_code, township, number = rng.choice(centres)
                area = county.area_of(township)
                if rng.random() < PHARMACY_SHARE:
                    suffix = _weighted(rng, _PHARMACY_SUFFIXES)

                    def make_pharmacy(suffix: str = suffix, township: str = township) -> str:
                        core = self._core()
                        return (_stem(township) if rng.random() < 0.25 else "") + core + suffix

                    name = self._unique(make_pharmacy, county, township)
                    self.add(
                        code=self.codes.next(_PREFIX_PHARMACY, area, number),
                        name=name,
                        county=county,
                        kind=UnitKind.PHARMACY,
                        parent=centre_code,
                        categories=TYPICAL_CATEGORIES[UnitKind.PHARMACY],
                        township=township,
                    )
                    continue
                specialty = _weighted(rng, _CLINIC_SPECIALTIES)

                def make_clinic(specialty: str = specialty, township: str = township) -> str:
                    roll = rng.random()
                    if specialty and roll < 0.2:
                        return rng.choice(_SURNAMES) + specialty + "診所"
                    head = _stem(township) if roll > 0.75 else ""
                    return head + self._core() + specialty + "診所"

                name = self._unique(make_clinic, county, township)
                wanted = ["ppe", "flu_antiviral"]
                if rng.random() < 0.5:
                    wanted.append("epidemic_drugs")
                if rng.random() < 0.4:
                    wanted.append("emerging")
                self.add(
                    code=self.codes.next(_PREFIX_CLINIC.get(specialty, "35"), area, number),
                    name=name,
                    county=county,
                    kind=UnitKind.CLINIC,
                    parent=centre_code,
                    categories=wanted,
                    township=township,
                )

    def _core(self) -> str:
        while True:
            first, second = self.rng.choice(_CORE_FIRST), self.rng.choice(_CORE_SECOND)
            if first != second:
                return first + second


def generate_units(total: int = DEFAULT_TOTAL, seed: int = DEFAULT_SEED) -> list[GeneratedUnit]:
    """Exactly ``total`` units, parents before children, the same for the same arguments."""
    if total < 0:
        raise ValueError("total must not be negative")
    return _Generator(total, seed).build()


def demo_unit_codes(total: int = DEFAULT_TOTAL, seed: int = DEFAULT_SEED) -> dict[str, str]:
    """Codes of a few well-known generated units, for demo cards, fixtures and docs.

    Keys: cdc, regional_centre (臺北區), health_bureau (新北市政府衛生局), kinmen_bureau
    (金門縣衛生局, which lacks 生物防護裝備), health_centre, hospital (one with
    antivenom), hospital_no_antivenom, clinic, pharmacy.
    """
    return dict(_demo_unit_codes(total, seed))


@lru_cache(maxsize=4)
def _demo_unit_codes(total: int, seed: int) -> tuple[tuple[str, str], ...]:
    units = generate_units(total, seed)
    found: dict[str, str] = {}

    def first(key: str, test: Callable[[GeneratedUnit], bool]) -> None:
        for unit in units:
            if test(unit):
                found[key] = unit.code
                return

    first("cdc", lambda u: u.kind == UnitKind.CDC)
    first("regional_centre", lambda u: u.kind == UnitKind.REGIONAL_CENTRE)
    first("health_bureau", lambda u: u.name == "新北市政府衛生局")
    first("kinmen_bureau", lambda u: u.name == "金門縣衛生局")
    first("health_centre", lambda u: u.name == "新北市板橋區衛生所")
    first(
        "hospital",
        lambda u: (
            u.kind == UnitKind.HOSPITAL and u.county == "新北市" and "antivenom" in u.category_codes
        ),
    )
    first(
        "hospital_no_antivenom",
        lambda u: u.kind == UnitKind.HOSPITAL and "antivenom" not in u.category_codes,
    )
    first("clinic", lambda u: u.kind == UnitKind.CLINIC and u.county == "新北市")
    first("pharmacy", lambda u: u.kind == UnitKind.PHARMACY and u.county == "新北市")
    return tuple(found.items())


# --------------------------------------------------------------------------- loading


UNIT_COLUMNS = (
    "code",
    "name",
    "county",
    "county_rank",
    "kind",
    "parent_id",
    "active",
    "search_key",
    "address",
    "phone",
    "source",
    "updated_at",
)


def insert_units(
    units: Sequence[GeneratedUnit],
    progress: Callable[[int, int], None] | None = None,
    source: str = "generated",
) -> int:
    """Insert ``units`` (parents before children) with their categories; no transaction.

    Parents are resolved from units inserted earlier in the same call or already in
    the database, in batches of at most :data:`INSERT_BATCH` rows. Returns the number
    of units inserted.
    """
    category_ids = {c.code: c.id for c in Category.select(Category.id, Category.code)}
    missing = {code for u in units for code in u.category_codes} - category_ids.keys()
    if missing:
        raise ValueError(f"資料庫缺少物資類別：{', '.join(sorted(missing))}（請先執行 db upgrade）")
    id_of: dict[str, int] = {}
    own_codes = {u.code for u in units}
    outside = sorted({u.parent_code for u in units if u.parent_code} - own_codes)
    for start in range(0, len(outside), INSERT_BATCH):
        chunk = outside[start : start + INSERT_BATCH]
        id_of.update(Unit.select(Unit.code, Unit.id).where(Unit.code.in_(chunk)).tuples())
    now = utcnow()
    stamp: object = now if is_postgres() else now.isoformat(" ")
    batch: list[GeneratedUnit] = []
    done = 0
    total = len(units)

    def flush() -> None:
        nonlocal done
        if not batch:
            return
        rows = [
            (
                u.code,
                u.name,
                u.county,
                county_rank(u.county),
                u.kind,
                id_of[u.parent_code] if u.parent_code else None,
                True,
                fold(u.name),
                u.address,
                u.phone,
                source,
                stamp,
            )
            for u in batch
        ]
        for unit_id, code in bulk_insert("unit", UNIT_COLUMNS, rows, returning='"id", "code"'):
            id_of[str(code)] = cast(int, unit_id)
        links = [(id_of[u.code], category_ids[c]) for u in batch for c in u.category_codes]
        for start in range(0, len(links), INSERT_BATCH):
            bulk_insert(
                "unit_category", ("unit_id", "category_id"), links[start : start + INSERT_BATCH]
            )
        done += len(batch)
        batch.clear()
        if progress is not None:
            progress(done, total)

    in_batch: set[str] = set()
    for unit in units:
        parent = unit.parent_code
        if len(batch) >= INSERT_BATCH or (parent in in_batch):
            flush()
            in_batch.clear()
        if parent and parent not in id_of:
            raise ValueError(f"單位 {unit.code} 的上級單位 {parent} 不存在")
        batch.append(unit)
        in_batch.add(unit.code)
    flush()
    return done


def load_generated_units(
    total: int = DEFAULT_TOTAL,
    seed: int = DEFAULT_SEED,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Load the generated directory into an empty unit table, in one transaction.

    Returns the number of units loaded: 0 when units already exist (nothing is
    touched then), and their search grams.
    """
    units = None if Unit.select().exists() else generate_units(total, seed)
    with write_transaction():
        if units is None or Unit.select().exists():  # loaded before, or by another kiosk
            return 0
        count = insert_units(units, progress)
        refresh_unit_grams()
    refresh_statistics()
    return count
