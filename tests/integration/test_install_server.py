"""scripts/install-server.sh, run for real: accounts, the wheel in a virtualenv, the
configuration, the data key, the systemd units (checked by systemd-analyze verify),
the sudo rule and the sshd snippet, and the kiosk seat's own command line (cage and
foot, headless) starting the installed kiosk.

Only the paths and account names differ from a server's (every one is an option of the
script), so the test installs into a scratch directory with accounts of its own and
leaves packages and running services alone (--no-apt --no-systemctl).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.wheel_install import Installed

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "install-server.sh"
SERVICE_USER = "smistest-isvc"
STAFF_GROUP = "smistest-istaff"
UNITS = (
    "smis-tui-maintenance.service",
    "smis-tui-maintenance.timer",
    "smis-tui-crl-refresh.service",
    "smis-tui-crl-refresh.timer",
    "smis-tui-audit-verify.service",
    "smis-tui-audit-verify.timer",
    "smis-tui-kiosk.service",
)


def need(condition: bool, text: str) -> None:
    if condition:
        return
    if os.environ.get("CI") or os.environ.get("SMIS_REQUIRE_POSTGRES"):
        pytest.fail(text)
    pytest.skip(text)


def remove_accounts() -> None:
    subprocess.run(["pkill", "-KILL", "-u", SERVICE_USER], capture_output=True, check=False)
    subprocess.run(["userdel", "--force", SERVICE_USER], capture_output=True, check=False)
    subprocess.run(["groupdel", SERVICE_USER], capture_output=True, check=False)
    subprocess.run(["groupdel", STAFF_GROUP], capture_output=True, check=False)


@dataclass
class Target:
    root: Path
    wheel: Path

    @property
    def prefix(self) -> Path:
        return self.root / "opt"

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def data(self) -> Path:
        return self.root / "var"

    @property
    def units(self) -> Path:
        return self.root / "units"

    def options(self) -> list[str]:
        return [
            "--wheel", str(self.wheel), "--kiosk-seat", "--ssh", "--no-apt", "--no-systemctl",
            "--prefix", str(self.prefix), "--etc", str(self.etc), "--data", str(self.data),
            "--user", SERVICE_USER, "--staff-group", STAFF_GROUP,
            "--unit-dir", str(self.units), "--sshd-dir", str(self.root / "sshd"),
            "--sudoers-dir", str(self.root / "sudoers.d"),
            "--tmpfiles-dir", str(self.root / "tmpfiles.d"), "--pam-dir", str(self.root / "pam.d"),
            "--forward-dir", str(self.root / "agent"),
        ]  # fmt: skip

    def install(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SCRIPT), *self.options()],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
            env={k: v for k, v in os.environ.items() if not k.startswith("SMIS_")},
        )


@pytest.fixture(scope="module")
def target(installed_wheel: Installed) -> Iterator[Target]:
    need(os.geteuid() == 0, "the install script test needs root")
    for tool in ("systemd-analyze", "visudo", "cage", "foot"):
        need(shutil.which(tool) is not None, f"{tool} missing: run `make test`")
    remove_accounts()
    root = Path(tempfile.mkdtemp(prefix="smis-inst-"))
    root.chmod(0o755)
    made = Target(root, installed_wheel.wheel)
    first = made.install()
    assert first.returncode == 0, first.stdout + first.stderr
    try:
        yield made
    finally:
        remove_accounts()
        shutil.rmtree(root, ignore_errors=True)


def owner_and_mode(path: Path) -> tuple[str, int]:
    import pwd

    info = path.stat()
    return pwd.getpwuid(info.st_uid).pw_name, stat.S_IMODE(info.st_mode)


def test_only_the_service_account_reads_the_configuration_the_data_and_the_key(
    target: Target,
) -> None:
    assert owner_and_mode(target.etc / "config.toml") == (SERVICE_USER, 0o600)
    assert owner_and_mode(target.data) == (SERVICE_USER, 0o700)
    assert owner_and_mode(target.data / "smis.key") == (SERVICE_USER, 0o600)
    assert (target.data / "smis.sqlite3").is_file()  # `db init` ran, as the service account
    assert owner_and_mode(target.data / "smis.sqlite3")[0] == SERVICE_USER
    login = subprocess.run(
        ["getent", "passwd", SERVICE_USER], capture_output=True, text=True, check=True
    ).stdout
    assert login.strip().endswith("/usr/sbin/nologin")


def test_the_units_run_the_installed_program_as_the_service_account(target: Target) -> None:
    for name in UNITS:
        text = (target.units / name).read_text()
        if name.endswith(".service"):
            assert f"User={SERVICE_USER}\n" in text, name
            assert f"{target.prefix}/bin/smis-tui" in text, name
            assert f"SMIS_CONFIG={target.etc}/config.toml" in text, name
            assert "/opt/smis-tui" not in text and "/etc/smis-tui" not in text, name
    # systemd's own check, as the script runs it; it fails on a bad key, a missing
    # program or an unknown user.
    verify = subprocess.run(
        ["systemd-analyze", "verify", *(str(target.units / name) for name in UNITS)],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ, SYSTEMD_LOG_LEVEL="warning"),
    )
    assert verify.returncode == 0, verify.stderr


def test_the_sudo_rule_and_the_sshd_snippet_parse(target: Target) -> None:
    rule = target.root / "sudoers.d" / "smis-tui"
    assert owner_and_mode(rule) == ("root", 0o440)
    subprocess.run(["visudo", "-cqf", str(rule)], check=True)
    text = rule.read_text()
    assert f"%{STAFF_GROUP} ALL = ({SERVICE_USER}) NOPASSWD: {target.prefix}/bin/smis-tui" in text
    snippet = target.root / "sshd" / "smis-tui.conf"
    assert f"--run-as {SERVICE_USER} --config {target.etc}/config.toml" in snippet.read_text()
    host_key = target.root / "host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
    main = target.root / "sshd_config"
    main.write_text(f"HostKey {host_key}\nInclude {snippet}\n")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    checked = subprocess.run(
        ["/usr/sbin/sshd", "-t", "-f", str(main)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
    tmpfiles = (target.root / "tmpfiles.d" / "smis-tui.conf").read_text()
    assert tmpfiles.strip() == f"d {target.root / 'agent'} 1733 root root -"


def test_a_second_run_changes_nothing(target: Target) -> None:
    config = target.etc / "config.toml"
    before = {path: path.stat().st_mtime_ns for path in (config, target.data / "smis.key")}
    again = target.install()
    assert again.returncode == 0, again.stdout + again.stderr
    assert "wrote" not in again.stdout, again.stdout
    assert "created" not in again.stdout, again.stdout
    assert {path: path.stat().st_mtime_ns for path in before} == before


def test_a_misspelt_setting_stops_the_install_naming_it(target: Target) -> None:
    config = target.etc / "config.toml"
    original = config.read_text()
    try:
        config.write_text(original + 'databse_url = "postgresql:///smis"\n')
        broken = target.install()
        assert broken.returncode != 0
        assert "databse_url" in broken.stderr and "database_url" in broken.stderr
    finally:
        config.write_text(original)


def test_the_kiosk_seat_command_line_starts_the_kiosk_headless(target: Target) -> None:
    """The kiosk unit's ExecStart and Environment, run as its user on a headless
    wlroots output: cage starts foot, foot starts the installed kiosk, which logs that
    its login screen is up."""
    unit = (target.units / "smis-tui-kiosk.service").read_text().splitlines()
    command = shlex.split(
        next(line for line in unit if line.startswith("ExecStart=")).partition("=")[2]
    )
    env = dict(
        line.partition("=")[2].split("=", 1) for line in unit if line.startswith("Environment=")
    )
    # Xwayland's socket directory, as systemd-tmpfiles makes it at boot on a real seat.
    x11 = Path("/tmp/.X11-unix")
    if not x11.exists():
        x11.mkdir()
        x11.chmod(0o1777)
    runtime = Path(tempfile.mkdtemp(prefix="smis-seat-"))
    shutil.chown(runtime, SERVICE_USER, SERVICE_USER)
    runtime.chmod(0o700)
    log = target.data / "smis-tui.log"
    seen_before = log.read_text() if log.exists() else ""
    seat_env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(target.data),
        "XDG_RUNTIME_DIR": str(runtime),
        # wlroots without a screen or input devices (the seat has both).
        "WLR_BACKENDS": "headless",
        "WLR_LIBINPUT_NO_DEVICES": "1",
        "WLR_RENDERER": "pixman",
        **env,
    }
    seat = subprocess.Popen(
        [
            "setpriv",
            f"--reuid={SERVICE_USER}",
            f"--regid={SERVICE_USER}",
            "--init-groups",
            "--",
            "env",
            "-i",
            *(f"{k}={v}" for k, v in seat_env.items()),
            *command,
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        started = ""
        while time.monotonic() < deadline and seat.poll() is None:
            text = log.read_text() if log.exists() else ""
            if "login screen up after" in text[len(seen_before) :]:
                started = text[len(seen_before) :]
                break
            time.sleep(0.2)
        assert started, f"the kiosk did not show its login screen under cage:\n{seat_output(seat)}"
        # Drawn in foot: the kiosk's process is foot's child, and nothing it logs goes to
        # the terminal it draws on (JOURNAL_STREAM is not set here, the log is the file).
        foot = [p for p in children(seat.pid) if Path(f"/proc/{p}/exe").resolve().name == "foot"]
        assert foot, "foot is not running under cage"
        kiosk = [
            p for p in children(foot[0]) if b"smis-tui" in Path(f"/proc/{p}/cmdline").read_bytes()
        ]
        assert kiosk, "the kiosk is not running in foot"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(seat.pid, 15)
        try:
            seat.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(seat.pid, 9)
        shutil.rmtree(runtime, ignore_errors=True)


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def seat_output(seat: subprocess.Popen[bytes]) -> str:
    if seat.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(seat.pid, 15)
    out, _ = seat.communicate(timeout=10)
    return out.decode(errors="replace")[-3000:]
