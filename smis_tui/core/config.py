"""Settings: an optional TOML file, overridden by SMIS_* environment variables.

Read once at start-up by the CLI and handed to whatever needs it; tests build their
own :class:`Settings` against temporary directories.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path


class ConfigError(RuntimeError):
    """The configuration is unusable; the message is one line for the operator."""


def _default_data_dir(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "smis-tui"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str | None = None
    key_file: Path | None = None
    ca_dir: Path | None = None
    # Where the CRLs of the CAs in ca_dir are (`smis-tui crl refresh` writes them);
    # defaults to <ca_dir>/../crl. Without a current CRL for a CA, logins are refused.
    crl_dir: Path | None = None
    # A CRL is still accepted this many hours past its nextUpdate (0: not at all; at
    # most MAX_CRL_GRACE_HOURS, 168: a week).
    crl_grace_hours: int = 0
    # CRLs that `smis-tui crl refresh` downloads besides those the CA certificates name.
    crl_urls: tuple[str, ...] = ()
    # Accounts are disabled after this many days without a login (the seed's 180).
    inactive_days: int = 180
    # Superior units are warned this many days after the last login.
    inactive_warning_days: int = 150
    # 權限定期檢閱 (docs/access-review.md): how many days a review stays open unless the
    # 管理者 starting it chooses otherwise; past how many days without login removal is
    # recommended; and what becomes of the items nobody decided by the deadline
    # (ACCESS_REVIEW_DEFAULTS: keep, remove, or follow the recommendation).
    access_review_days: int = 14
    access_review_inactive_days: int = 90
    access_review_default: str = "keep"
    idle_timeout_seconds: int = 180
    # An SSH session's login waits this long for the PIN typed at the staff computer.
    remote_pin_timeout_seconds: int = 120
    # Applications (new, again, updated) accepted per hour from one kiosk session, and
    # with one card: more is a flood, refused and shown in 軌跡紀錄.
    applications_per_session_hour: int = 20
    applications_per_card_hour: int = 5
    # Answers to "has this ID an application under review?" (the seed's step 10, the
    # one look-up that tells something about an ID before any card) per kiosk session
    # in 10 minutes.
    pending_lookups_per_session: int = 5
    # The names staff members reach this server by (`smis-tui card-agent --server`):
    # a remote login proof made for any other name is refused. Empty: this host's
    # own names (see resolved_server_names).
    server_names: tuple[str, ...] = ()
    language: str = "zh_TW"
    # The kiosk's colours: "default", or "high-contrast" (white and yellow on black).
    theme: str = "default"
    # The only key that ends the kiosk (--kiosk); not shown anywhere on the screen.
    operator_key: str = "ctrl+f12"

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "smis.sqlite3"

    @property
    def resolved_key_file(self) -> Path:
        return self.key_file or self.data_dir / "smis.key"

    @property
    def resolved_crl_dir(self) -> Path | None:
        if self.crl_dir is not None:
            return self.crl_dir
        return self.ca_dir.parent / "crl" if self.ca_dir is not None else None

    @property
    def resolved_server_names(self) -> tuple[str, ...]:
        """``server_names``, or else this host's name and its fully qualified name
        (looked up only here: getfqdn may ask DNS, which no kiosk start should wait for)."""
        if self.server_names:
            return self.server_names
        import socket

        return tuple(dict.fromkeys(n for n in (socket.gethostname(), socket.getfqdn()) if n))

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


LANGUAGES = ("zh_TW", "en")
THEMES = ("default", "high-contrast")
ACCESS_REVIEW_DEFAULTS = ("keep", "remove", "recommendation")
# A review is open for at most this many days: a year.
MAX_ACCESS_REVIEW_DAYS = 365
# crl_grace_hours at most: a week past nextUpdate is already a week of revocations unseen.
MAX_CRL_GRACE_HOURS = 168
_INT_SETTINGS = (
    "inactive_days",
    "inactive_warning_days",
    "idle_timeout_seconds",
    "remote_pin_timeout_seconds",
    "applications_per_session_hour",
    "applications_per_card_hour",
    "pending_lookups_per_session",
    "access_review_days",
    "access_review_inactive_days",
)
# A server name goes into every remote login proof (card.agent.proof.login_message).
MAX_SERVER_NAME_BYTES = 255


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    data_dir = Path(env.get("SMIS_DATA_DIR") or _default_data_dir(env))
    config_path = Path(env.get("SMIS_CONFIG") or data_dir / "config.toml")
    values: dict[str, object] = {}
    if config_path.is_file():
        import tomllib  # only when there is a file: a few ms of every start otherwise

        try:
            values = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"設定檔 {config_path} 格式錯誤：{exc}") from None

    def pick(name: str, env_name: str) -> object | None:
        return env.get(env_name) or values.get(name)

    _refuse_unknown(config_path, values)
    if not env.get("SMIS_DATA_DIR") and values.get("data_dir"):
        # A system install keeps its settings in /etc and its data in /var/lib.
        data_dir = Path(str(values["data_dir"]))
    settings = Settings(data_dir=data_dir)
    url = pick("database_url", "DATABASE_URL")
    key_file = pick("key_file", "SMIS_KEY_FILE")
    ca_dir = pick("ca_dir", "SMIS_CA_DIR")
    crl_dir = pick("crl_dir", "SMIS_CRL_DIR")
    changes: dict[str, object] = {
        "database_url": str(url) if url else None,
        "key_file": Path(str(key_file)) if key_file else None,
        "ca_dir": Path(str(ca_dir)) if ca_dir else None,
        "crl_dir": Path(str(crl_dir)) if crl_dir else None,
        "crl_urls": _string_list("crl_urls", values.get("crl_urls")),
        "server_names": _server_names(env, values),
        "language": str(pick("language", "SMIS_LANGUAGE") or "zh_TW"),
        "theme": str(pick("theme", "SMIS_THEME") or "default"),
        "operator_key": str(pick("operator_key", "SMIS_OPERATOR_KEY") or "ctrl+f12"),
        "access_review_default": str(
            pick("access_review_default", "SMIS_ACCESS_REVIEW_DEFAULT") or "keep"
        ),
    }
    if changes["access_review_default"] not in ACCESS_REVIEW_DEFAULTS:
        raise ConfigError(
            f"設定 access_review_default 必須是 {'、'.join(ACCESS_REVIEW_DEFAULTS)} 之一"
            f"（目前為 {changes['access_review_default']!r}）"
        )
    if changes["theme"] not in THEMES:
        raise ConfigError(f"設定 theme 必須是 {' 或 '.join(THEMES)}（目前為 {changes['theme']!r}）")
    if changes["language"] not in LANGUAGES:
        raise ConfigError(
            f"設定 language 必須是 {' 或 '.join(LANGUAGES)}（目前為 {changes['language']!r}）"
        )
    for name in _INT_SETTINGS:
        raw = pick(name, f"SMIS_{name.upper()}")
        if raw is None:
            continue
        try:
            number = int(str(raw))
        except ValueError:
            raise ConfigError(f"設定 {name} 必須是整數（目前為 {raw!r}）") from None
        if number <= 0:
            raise ConfigError(f"設定 {name} 必須大於 0（目前為 {number}）")
        changes[name] = number
    if int(str(changes.get("access_review_days", 0))) > MAX_ACCESS_REVIEW_DAYS:
        raise ConfigError(
            f"設定 access_review_days 不可大於 {MAX_ACCESS_REVIEW_DAYS}"
            f"（目前為 {changes['access_review_days']}）"
        )
    grace = pick("crl_grace_hours", "SMIS_CRL_GRACE_HOURS")
    if grace is not None:
        try:
            hours = int(str(grace))
        except ValueError:
            raise ConfigError(f"設定 crl_grace_hours 必須是整數（目前為 {grace!r}）") from None
        if hours < 0:
            raise ConfigError(f"設定 crl_grace_hours 不可小於 0（目前為 {hours}）")
        if hours > MAX_CRL_GRACE_HOURS:
            raise ConfigError(
                f"設定 crl_grace_hours 不可大於 {MAX_CRL_GRACE_HOURS}（一週；目前為 {hours}）"
            )
        changes["crl_grace_hours"] = hours
    return replace(settings, **changes)  # type: ignore[arg-type]


def _refuse_unknown(path: Path, values: Mapping[str, object]) -> None:
    """A misspelt setting would be ignored, and the default used in its place (a
    `databse_url` ran on the local SQLite file): every key must be one we read."""
    known = [f.name for f in fields(Settings)]
    for key in values:
        if key in known:
            continue
        import difflib

        close = difflib.get_close_matches(key, known, n=1)
        hint = f"（是否為 {close[0]}？）" if close else ""
        raise ConfigError(
            f"設定檔 {path} 有不明的設定 {key!r}{hint}；可用的設定：{'、'.join(known)}"
        )


def _string_list(name: str, value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f'設定 {name} 必須是字串清單，例如 {name} = ["http://…"]')
    return tuple(item.strip() for item in value if item.strip())


def _server_names(env: Mapping[str, str], values: Mapping[str, object]) -> tuple[str, ...]:
    """``SMIS_SERVER_NAMES`` (comma-separated) or the ``server_names`` list."""
    raw = env.get("SMIS_SERVER_NAMES")
    if raw is not None and raw.strip():
        names = tuple(name.strip() for name in raw.split(",") if name.strip())
    else:
        names = _string_list("server_names", values.get("server_names"))
    for name in names:
        data = name.encode("utf-8")
        if len(data) > MAX_SERVER_NAME_BYTES or any(ch < 0x20 or ch == 0x7F for ch in data):
            raise ConfigError(
                f"設定 server_names 的 {name!r} 不是有效的伺服器名稱"
                f"（至多 {MAX_SERVER_NAME_BYTES} 位元組、不含控制字元）"
            )
    return tuple(dict.fromkeys(names))
