"""Memory of the kiosk's SSH sessions: `python -m bench.bench_ssh` (under
scripts/test-services.sh, which starts the private sshd, PostgreSQL and pcscd).

One card agent (`smis-tui card-agent`) on the "staff" side, no card in it; ``--sessions``
real `ssh -t -R …` clients in tmux panes, each forwarding the agent's socket to its own
server path. sshd starts one `smis-tui ssh-session` process per connection, all on the
same PostgreSQL database (schema, 5165 units and the demo accounts). Measured at the
login screen (請插入卡片 shown, boot finished: the process's RSS steady):

1. one session alone: RSS and PSS of its `smis-tui ssh-session` process;
2. ``--sessions`` (20) at once: the sum and per-session RSS and PSS of those processes
   (PSS from /proc/PID/smaps_rollup: shared pages — the interpreter, libraries — are
   divided among the processes sharing them, so PSS sums to what they really take),
   and beside it the per-session sshd processes (privileged monitor and user child).

Target: ≤ 80 MiB per session (the session process's PSS with 20 sessions).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

TARGET_MIB = 80.0
MIB = 1024 * 1024


@dataclass(frozen=True)
class Memory:
    rss: int
    pss: int | None


def memory(pid: int) -> Memory:
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    pss = None
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
    except OSError:
        pass
    return Memory(rss, pss)


def parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def sshd_chain(pid: int) -> list[int]:
    """The sshd processes above a session process (user child, privileged monitor),
    up to the listener (not included: it serves every session)."""
    chain = []
    current = parent(pid)
    while current > 1:
        name = Path(f"/proc/{current}/comm").read_text().strip()
        if name != "sshd" and not chain:
            current = parent(current)  # the login shell that ran ForceCommand
            continue
        if name != "sshd":
            break
        up = parent(current)
        if Path(f"/proc/{up}/comm").read_text().strip() != "sshd":
            break  # `current` is the listener
        chain.append(current)
        current = up
    return chain


def wait_steady(pids: list[int], timeout: float = 60.0) -> None:
    """Until no process's RSS changed by more than 1 % over a second (boot done)."""
    deadline = time.monotonic() + timeout
    before = [memory(p).rss for p in pids]
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = [memory(p).rss for p in pids]
        if all(abs(a - b) <= 0.01 * b for a, b in zip(now, before, strict=True)):
            return
        before = now


def mib(value: float | None) -> str:
    return "—" if value is None else f"{value / MIB:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    args = parser.parse_args(argv)
    for name in ("SMIS_TEST_SSH_CONFIG", "SMIS_TEST_POSTGRES_URL", "SMIS_TEST_PCSCD"):
        if not os.environ.get(name):
            print(f"bench_ssh: {name} unset: run under scripts/test-services.sh", file=sys.stderr)
            return 1

    from tests.integration import test_ssh_session as e2e

    admin_url = os.environ["SMIS_TEST_POSTGRES_URL"]
    with tempfile.TemporaryDirectory(prefix="smis-bench-ssh-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)
        print("Preparing the database (schema, 5165 units, demo accounts)…", file=sys.stderr)
        server = e2e.make_kiosk_server(admin_url, work)
        staff = Path(f"/tmp/smis-bs-{uuid.uuid4().hex[:6]}")
        staff.mkdir(mode=0o700)
        tmux = e2e.Tmux(staff)
        agent = e2e.CardAgent(tmux, "agent", staff / "agent.sock")
        try:
            agent.start()

            def open_sessions(count: int, prefix: str) -> list[int]:
                tags, panes = [], []
                for index in range(count):
                    tag = f"{prefix}{index}-{uuid.uuid4().hex[:6]}"
                    command = e2e.ssh_command(
                        server,
                        tag=tag,
                        remote_socket=staff / f"s-{prefix}{index}.sock",
                        agent_socket=agent.socket_path,
                    )
                    panes.append(tmux.open(f"{prefix}{index}", command, dict(os.environ)))
                    tags.append(tag)
                for pane in panes:
                    pane.wait_for(e2e.INSERT_MARK, timeout=120)
                pids = []
                for tag in tags:
                    found = e2e.session_pids(tag)
                    assert len(found) == 1, f"session {tag}: processes {found}"
                    pids.extend(found)
                wait_steady(pids)
                return pids

            def close_sessions(prefix: str, count: int) -> None:
                for index in range(count):
                    tmux.run("kill-session", "-t", f"{prefix}{index}", check=False)
                time.sleep(1.0)

            single = open_sessions(1, "one")
            one = memory(single[0])
            one_sshd = [memory(p) for p in sshd_chain(single[0])]
            close_sessions("one", 1)

            many = open_sessions(args.sessions, "many")
            mems = [memory(p) for p in many]
            sshd_mems = [memory(q) for p in many for q in sshd_chain(p)]
            close_sessions("many", args.sessions)
        finally:
            tmux.close()
            agent.stop()
            e2e.drop_kiosk_server(admin_url, server)
            for path in staff.iterdir():
                path.unlink()
            staff.rmdir()

    n = len(mems)
    rss_sum = sum(m.rss for m in mems)
    pss_values = [m.pss for m in mems if m.pss is not None]
    pss_sum = sum(pss_values) if len(pss_values) == n else None
    sshd_rss = sum(m.rss for m in sshd_mems)
    sshd_pss_values = [m.pss for m in sshd_mems if m.pss is not None]
    sshd_pss = sum(sshd_pss_values) if len(sshd_pss_values) == len(sshd_mems) else None
    per_session = (pss_sum if pss_sum is not None else rss_sum) / n
    verdict = "met" if per_session / MIB <= TARGET_MIB else "MISSED"

    print(f"## SSH sessions at the login screen ({n} concurrent, PostgreSQL, card agent)")
    print()
    print("| measure | RSS MiB | PSS MiB |")
    print("|---|---:|---:|")
    print(
        f"| one session alone: `smis-tui ssh-session` process | {mib(one.rss)} | {mib(one.pss)} |"
    )
    if one_sshd:
        print(
            f"| one session alone: its sshd processes ({len(one_sshd)}) | "
            f"{mib(sum(m.rss for m in one_sshd))} | "
            f"{mib(sum(m.pss or 0 for m in one_sshd) if all(m.pss is not None for m in one_sshd) else None)} |"
        )
    print(f"| {n} sessions: session processes, sum | {mib(rss_sum)} | {mib(pss_sum)} |")
    print(
        f"| {n} sessions: per session (mean) | {mib(rss_sum / n)} | "
        f"{mib(pss_sum / n if pss_sum is not None else None)} |"
    )
    print(
        f"| {n} sessions: per session (median) | {mib(statistics.median(m.rss for m in mems))} | "
        f"{mib(statistics.median(pss_values) if pss_values else None)} |"
    )
    if sshd_mems:
        print(
            f"| {n} sessions: sshd processes per session (mean) | {mib(sshd_rss / n)} | "
            f"{mib(sshd_pss / n if sshd_pss is not None else None)} |"
        )
    print()
    basis = "PSS" if pss_sum is not None else "RSS"
    print(
        f"Per session ({basis} of the session process, {n} at once): "
        f"{per_session / MIB:.1f} MiB; target ≤ {TARGET_MIB:.0f} MiB: {verdict}."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
