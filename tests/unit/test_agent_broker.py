"""The broker between a staff member's agent socket and the kiosk run as the service
account (card.agent.broker): what it hands over, and what it refuses."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from card.agent.broker import BrokeredConnector, serve_broker
from card.agent.protocol import AgentUnavailable


@pytest.fixture
def agent_socket(tmp_path: Path) -> Iterator[tuple[Path, socket.socket]]:
    path = tmp_path / "agent.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    path.chmod(0o600)
    server.listen(4)
    yield path, server
    server.close()


def brokered(agent_path: Path) -> tuple[BrokeredConnector, threading.Thread]:
    ours, theirs = socket.socketpair()
    thread = threading.Thread(target=serve_broker, args=(ours, agent_path), daemon=True)
    thread.start()
    return BrokeredConnector(os.dup(theirs.fileno())), thread


def test_each_request_is_a_new_connection_to_the_agent(
    agent_socket: tuple[Path, socket.socket],
) -> None:
    path, server = agent_socket
    connector, _ = brokered(path)
    for word in (b"first", b"second"):
        conn = connector()
        accepted, _ = server.accept()
        conn.sendall(word)
        assert accepted.recv(16) == word
        accepted.close()
        conn.close()
    connector.close()


def test_a_socket_others_may_open_is_refused_with_the_reason(
    agent_socket: tuple[Path, socket.socket],
) -> None:
    path, _ = agent_socket
    path.chmod(0o666)  # not the staff member's alone: someone may stand in for the agent
    connector, _ = brokered(path)
    with pytest.raises(AgentUnavailable, match="0666"):
        connector()
    connector.close()


def test_no_agent_is_refused_and_the_broker_keeps_serving(
    agent_socket: tuple[Path, socket.socket], tmp_path: Path
) -> None:
    path, server = agent_socket
    moved = tmp_path / "moved.sock"
    path.rename(moved)
    connector, _ = brokered(path)
    with pytest.raises(AgentUnavailable):
        connector()
    moved.rename(path)  # the agent is back (restarted on the staff computer)
    conn = connector()
    server.accept()[0].close()
    conn.close()
    connector.close()


def test_the_kiosk_closing_its_end_stops_the_broker(
    agent_socket: tuple[Path, socket.socket],
) -> None:
    connector, thread = brokered(agent_socket[0])
    connector.close()
    thread.join(5)
    assert not thread.is_alive()


def test_the_broker_stops_at_anything_but_a_request(
    agent_socket: tuple[Path, socket.socket],
) -> None:
    ours, theirs = socket.socketpair()
    thread = threading.Thread(target=serve_broker, args=(ours, agent_socket[0]), daemon=True)
    thread.start()
    theirs.sendall(b"/etc/shadow")  # a kiosk asking for a path of its choosing
    thread.join(5)
    assert not thread.is_alive()
    try:  # it got nothing: end of file, or a reset (the broker left bytes unread)
        assert theirs.recv(16) == b""
    except ConnectionResetError:
        pass


def test_a_descriptor_that_is_not_a_unix_stream_socket_is_refused(tmp_path: Path) -> None:
    ours, theirs = socket.socketpair()
    secret = tmp_path / "file"
    secret.write_text("x")

    def hand_over_a_file() -> None:
        ours.recv(1)
        with secret.open() as handle:
            socket.send_fds(ours, [b"\x00"], [handle.fileno()])

    thread = threading.Thread(target=hand_over_a_file, daemon=True)
    thread.start()
    connector = BrokeredConnector(os.dup(theirs.fileno()))
    with pytest.raises(AgentUnavailable):
        connector()
    thread.join(5)


def test_the_channel_must_be_a_unix_socket(tmp_path: Path) -> None:
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(AgentUnavailable):
        BrokeredConnector(os.dup(tcp.fileno()))
    tcp.close()
