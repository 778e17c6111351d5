"""The wheel of this checkout, built and installed as an operator installs it.

One install per test session (tests/conftest.py `installed_wheel`), in a directory
every Unix user may read: the multi-user SSH tests run it as other accounts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import venv
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
# The top-level packages the wheel is made of (pyproject.toml's packages.find include).
PACKAGES = [
    name.rstrip("*") for name in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
]
PIP_TIMEOUT_S = 600  # the kiosk extra's dependencies come from the package index


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    outside: Path  # a working directory outside the checkout

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)


def clean_env(data_dir: Path) -> dict[str, str]:
    """The operator's environment: none of the developer's settings or import paths."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("SMIS_")
        and key not in {"DATABASE_URL", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}
    }
    env["SMIS_DATA_DIR"] = str(data_dir)
    return env


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> str:
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result.stdout


def install_wheel(base: Path) -> Installed:
    """Build the wheel into ``base`` and install it with its kiosk extra into a fresh
    virtualenv there."""
    # Built from a copy of what the wheel is made of, so the build leaves nothing in the
    # checkout (build/, *.egg-info) and no earlier build's leftovers get into the wheel.
    source = base / "source"
    source.mkdir()
    shutil.copy2(REPO / "pyproject.toml", source)
    shutil.copy2(REPO / PYPROJECT["project"]["readme"], source)
    for name in PACKAGES:
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = base / "wheels"
    env = clean_env(base / "unused")
    run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels), "."],
        cwd=source,
        env=env,
        timeout=PIP_TIMEOUT_S,
    )
    (wheel,) = wheels.glob("smis_tui-*.whl")
    target = base / "venv"
    venv.create(target, with_pip=True)
    pip = [str(target / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    run([*pip, "install", "--quiet", f"{wheel}[kiosk]"], base, env, PIP_TIMEOUT_S)
    outside = base / "outside"
    outside.mkdir()
    return Installed(wheel, target, outside)
