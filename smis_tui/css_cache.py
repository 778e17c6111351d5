"""Textual's parsed CSS, kept between starts of the kiosk (as Python keeps bytecode).

At every start Textual parses the app's stylesheets and the ``DEFAULT_CSS`` of every
widget class it meets: about 45 ms before the login screen's first frame, the largest
part of the kiosk's start-up after the imports (bench/bench_tui.py). A parse depends
only on the CSS text, where it came from and the theme's variables, so its result is
written to a file once and loaded (about 5 ms) at the next start.

- An entry is used only for the very same CSS text: an edited ``.tcss`` file is parsed
  again, never served stale. The file is for one Textual release, one Python and one
  set of theme variables; anything else is parsed as usual.
- The file is unpickled, so, like bytecode, it must be the user's own: it is read only
  if it and its directory belong to the effective user, nobody else can write to
  them, and it is not a symbolic link. It is written atomically with mode 0600.
- Any problem with the file (missing, foreign, damaged, unwritable) only means that
  the CSS is parsed, as without this module.
"""

from __future__ import annotations

import logging
import os
import pickle
import stat
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import textual
from textual.css.model import RuleSet
from textual.css.stylesheet import Stylesheet

log = logging.getLogger(__name__)

# Bump when the layout of the file changes.
FORMAT = 2
FILE_NAME = "parsed-css.pickle"

# (read_from, is_default_rules, tie_breaker, scope) → (css, rules). In the file the
# rules of each entry are pickled on their own, and unpickled only when that CSS is met:
# the file also holds the screens a person may never open in this session.
EntryKey = tuple[Any, bool, int, str]
Entries = dict[EntryKey, tuple[str, "list[RuleSet] | bytes"]]


def default_directory(env: os._Environ[str] | dict[str, str] | None = None) -> Path | None:
    """``$XDG_CACHE_HOME/smis-tui``, else ``~/.cache/smis-tui``: per user, as the
    kiosk and every SSH session's user has their own. None without either (no
    ``HOME`` and no passwd entry): the kiosk then runs without the cache."""
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except RuntimeError:
            return None
    return Path(base) / "smis-tui"


# The modules whose classes are pickled in the file, or that make what is pickled.
_TEXTUAL_MODULES = ("css", "layouts", "color.py", "geometry.py")


def textual_release() -> str:
    """Which Textual parsed the entries: its installed distribution's name (read from
    the directory, as ``importlib.metadata`` takes ~35 ms), and the size and time of
    every module whose classes are in the file, so that a patched or editable
    install that changed one of them is not taken for the same release."""
    package = Path(textual.__file__).resolve().parent
    parts = sorted(p.name for p in package.parent.glob("textual-*.dist-info"))
    parts.append(sys.version)
    for name in _TEXTUAL_MODULES:
        path = package / name
        for module in sorted(path.glob("*.py")) if path.is_dir() else [path]:
            info = module.stat()
            parts.append(f"{module.relative_to(package)}:{info.st_size}:{info.st_mtime_ns}")
    return "\n".join(parts)


def _is_own(info: os.stat_result) -> bool:
    return info.st_uid == os.geteuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


class CssCache:
    """The file of parsed CSS in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / FILE_NAME

    def _open_directory(self) -> int | None:
        """The directory, opened without following a symbolic link, if it is the
        user's own and nobody else can write to it; else None (and why, logged)."""
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.directory, flags)
        except FileNotFoundError:
            return None
        except OSError as exc:  # ELOOP (a link), ENOTDIR, EACCES
            log.warning("parsed-CSS cache %s not used: %s", self.directory, exc)
            return None
        if not _is_own(os.fstat(fd)):
            os.close(fd)
            log.warning("parsed-CSS cache %s is not the user's own: not used", self.directory)
            return None
        return fd

    def load(self, release: str, variables: dict[str, str]) -> Entries:
        """The entries written for this Textual ``release`` and these theme
        ``variables``; none if the file is missing, not trusted or damaged."""
        directory = self._open_directory()
        if directory is None:
            return {}
        try:
            # O_NONBLOCK: a FIFO put there cannot hold the start up.
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            fd = os.open(FILE_NAME, flags, dir_fd=directory)
        except FileNotFoundError:
            return {}
        except OSError as exc:  # e.g. ELOOP: a symbolic link
            log.warning("parsed-CSS cache %s not used: %s", self.path, exc)
            return {}
        finally:
            os.close(directory)
        with os.fdopen(fd, "rb") as file:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode) or not _is_own(info):
                log.warning("parsed-CSS cache %s is not the user's own: not used", self.path)
                return {}
            try:
                stored = pickle.load(file)
            except Exception as exc:  # damaged or from another Textual: parse as usual
                log.info("parsed-CSS cache %s not used: %r", self.path, exc)
                return {}
        if (
            not isinstance(stored, dict)
            or stored.get("format") != FORMAT
            or stored.get("release") != release
            or stored.get("variables") != variables
            or not isinstance(stored.get("entries"), dict)
        ):
            return {}
        entries: Entries = stored["entries"]
        return entries

    def save(self, release: str, variables: dict[str, str], entries: Entries) -> bool:
        """Write the entries (atomically, 0600) into a directory of the user's own
        that nobody else can write to (made 0700 if missing); False if that cannot be
        (a read-only home, another owner), which costs only the next start's parse."""
        data = {"format": FORMAT, "release": release, "variables": variables, "entries": entries}
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            directory = self._open_directory()
            if directory is None:
                return False
            os.close(directory)
            fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".parsed-css-")
            try:
                with os.fdopen(fd, "wb") as file:
                    pickle.dump(data, file, protocol=pickle.HIGHEST_PROTOCOL)
                os.replace(temporary, self.path)
            except BaseException:
                os.unlink(temporary)
                raise
        except OSError as exc:
            log.info("parsed-CSS cache %s not written: %s", self.path, exc)
            return False
        return True


class CachingStylesheet(Stylesheet):
    """Textual's Stylesheet, taking parsed CSS from a :class:`CssCache` and noting what
    it parsed itself, for :meth:`save`."""

    def __init__(self, *, variables: dict[str, str], cache: CssCache) -> None:
        super().__init__(variables=variables)
        self.cache = cache
        self.cached_variables = dict(variables)
        try:
            self.release = textual_release()
            self.entries = cache.load(self.release, self.cached_variables)
        except Exception as exc:  # e.g. Textual without its .py files: parse as usual
            log.warning("parsed-CSS cache not used: %r", exc)
            self.release = ""
            self.entries = {}
        self.loaded = len(self.entries)
        self.hits = 0
        self.misses = 0
        self._unsaved = False

    def set_variables(self, variables: dict[str, str]) -> None:
        super().set_variables(variables)
        if variables != self.cached_variables:
            # Another theme: the entries were parsed with the old variables.
            self.cached_variables = dict(variables)
            self.entries = {}
            self._unsaved = False

    def _parse_rules(
        self,
        css: str,
        read_from: Any,
        is_default_rules: bool = False,
        tie_breaker: int = 0,
        scope: str = "",
    ) -> list[RuleSet]:
        key: EntryKey = (read_from, is_default_rules, tie_breaker, scope)
        entry = self.entries.get(key)
        if entry is not None and entry[0] == css:
            cached = self._unpickled(key, css, entry[1])
            if cached is not None:
                self.hits += 1
                return cached
        rules = super()._parse_rules(css, read_from, is_default_rules, tie_breaker, scope)
        self.misses += 1
        if not any(rule.errors for rule in rules):
            self.entries[key] = (css, rules)
            self._unsaved = True
        return rules

    def _unpickled(
        self, key: EntryKey, css: str, rules: list[RuleSet] | bytes
    ) -> list[RuleSet] | None:
        if not isinstance(rules, bytes):
            return rules
        try:
            unpickled: list[RuleSet] = pickle.loads(rules)
        except Exception as exc:  # damaged: parse as usual
            log.info("parsed-CSS cache entry %r not used: %r", key, exc)
            return None
        self.entries[key] = (css, unpickled)
        return unpickled

    def reparse(self) -> None:
        """Textual's reparse (textual/css/stylesheet.py), with the parses taken from
        here: Textual parses every source again, in a fresh Stylesheet so that an error
        leaves this one intact, whenever a screen brings its own CSS_PATH, i.e. at the
        first opening of 單位查詢, the application form, 審核 … (about 50 ms each)."""
        fresh = _SharingStylesheet(variables=self._variables, parse_rules=self._parse_rules)
        for read_from, (css, is_defaults, tie_breaker, scope) in self.source.items():
            fresh.add_source(
                css,
                read_from=read_from,
                is_default_css=is_defaults,
                tie_breaker=tie_breaker,
                scope=scope,
            )
        try:
            fresh.parse()
        except Exception:
            self._invalid_css.update(fresh._invalid_css)
            raise
        self._rules = fresh.rules
        self._rules_map = None
        self.source = fresh.source
        self._require_parse = False

    def save(self) -> bool:
        """Write what was parsed since the file was read (nothing if nothing was).
        Entries of files that are gone (an older checkout, a removed widget) are
        dropped, so the file does not grow with every move."""
        if not self._unsaved or not self.release:
            return False
        self._unsaved = False
        current: Entries = {}
        for key, (css, rules) in self.entries.items():
            if isinstance(key[0], tuple) and key[0][0] and not os.path.exists(key[0][0]):
                continue
            if not isinstance(rules, bytes):
                try:
                    rules = pickle.dumps(rules, protocol=pickle.HIGHEST_PROTOCOL)
                except Exception as exc:  # e.g. a value Textual cannot pickle: parse it
                    log.info("parsed-CSS cache entry %r not kept: %r", key, exc)
                    continue
            current[key] = (css, rules)
        return self.cache.save(self.release, self.cached_variables, current)


class _SharingStylesheet(Stylesheet):
    """The fresh Stylesheet of :meth:`CachingStylesheet.reparse`, parsing through it."""

    def __init__(
        self, *, variables: dict[str, str], parse_rules: Callable[..., list[RuleSet]]
    ) -> None:
        super().__init__(variables=variables)
        self._shared_parse_rules = parse_rules

    def _parse_rules(
        self,
        css: str,
        read_from: Any,
        is_default_rules: bool = False,
        tie_breaker: int = 0,
        scope: str = "",
    ) -> list[RuleSet]:
        return self._shared_parse_rules(css, read_from, is_default_rules, tie_breaker, scope)
