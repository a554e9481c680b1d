"""The control socket's plumbing on real sockets in this process: where it is, framing limits,
binding over stale and foreign files, long paths, crowding and the final line at close."""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path

import pytest

from b2bd.cli import UsageError
from b2bd.cli.client import DaemonError, find_daemon
from b2bd.config.model import Settings
from b2bd.daemon.control import MAX_CONNECTIONS, ControlError, ControlServer, Reply
from b2bd.daemon.protocol import (
    SOCKET_NAME,
    LineReader,
    ProtocolError,
    client_sockets,
    daemon_socket,
)


def settings(state_dir: Path, control_socket: Path | None = None) -> Settings:
    from zoneinfo import ZoneInfo

    from b2bd.config.model import Endpoint, Policy

    return Settings(
        la_code="881", la_name="Testshire", one_version="3.83",
        timezone=ZoneInfo("Europe/London"), academic_year_start=(8, 1), state_dir=state_dir,
        la_store=Endpoint("directory", state_dir / "la"), concurrency=1, defaults=Policy(),
        control_socket=control_socket,
    )  # fmt: skip


def test_where_the_socket_is() -> None:
    plain = settings(Path("/var/lib/b2bd"))
    assert daemon_socket(plain, {}) == Path("/var/lib/b2bd/b2bd.sock")
    assert daemon_socket(plain, {"RUNTIME_DIRECTORY": "/run/b2bd:/run/x"}) == Path(
        "/run/b2bd/b2bd.sock"
    )
    assert client_sockets(plain, {}) == [
        Path("/var/lib/b2bd/b2bd.sock"),
        Path("/run/b2bd/b2bd.sock"),
    ]
    assert client_sockets(plain, {"RUNTIME_DIRECTORY": "/run/b2bd"}) == [
        Path("/run/b2bd/b2bd.sock"),
        Path("/var/lib/b2bd/b2bd.sock"),
    ]
    named = settings(Path("/var/lib/b2bd"), Path("/srv/ctl.sock"))
    assert daemon_socket(named, {"RUNTIME_DIRECTORY": "/run/b2bd"}) == Path("/srv/ctl.sock")
    assert client_sockets(named, {}) == [Path("/srv/ctl.sock")]


def test_line_reader_limits_and_deadline() -> None:
    a, b = socket.socketpair()
    with a, b:
        reader = LineReader(a, 16)
        b.sendall(b'{"op":"x"}\n{"op"')
        assert reader.message() == {"op": "x"}
        b.sendall(b":1}\nnot json\n")
        assert reader.message() == {"op": 1}  # a line split across two sends
        with pytest.raises(ProtocolError, match="not a JSON line"):
            reader.message()
    a, b = socket.socketpair()
    with a, b:
        b.sendall(b"x" * 40)
        with pytest.raises(ProtocolError, match="longer than 16 bytes"):
            LineReader(a, 16).line()
    a, b = socket.socketpair()
    with a, b:
        b.sendall(b"[1, 2]\n")
        with pytest.raises(ProtocolError, match="not a JSON object"):
            LineReader(a, 16).message()
    a, b = socket.socketpair()
    with a, b:
        with pytest.raises(ProtocolError, match="timed out"):
            LineReader(a, 16).line(deadline=0.0)
        b.close()
        assert LineReader(a, 16).line() is None


def serve(path: Path, handlers: dict | None = None) -> ControlServer:
    hello = {"type": "hello", "protocol": 1, "state_dir": str(path.parent)}
    return ControlServer.bind(path, hello, handlers or {})


def test_binding_replaces_a_stale_socket_and_refuses_anything_else(tmp_path: Path) -> None:
    path = tmp_path / SOCKET_NAME
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    server = serve(path)
    try:
        with pytest.raises(ControlError, match="in use by another running daemon"):
            serve(path)
    finally:
        server.close("test over")
    assert not path.exists()
    path.write_text("not a socket")
    with pytest.raises(ControlError, match="not a socket is in the way"):
        serve(path)
    assert path.read_text() == "not a socket"
    with pytest.raises(ControlError, match="no such directory"):
        serve(tmp_path / "missing" / SOCKET_NAME)


def test_a_path_longer_than_sun_path_works_both_ways(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    path = deep / SOCKET_NAME
    assert len(str(path)) > 108
    server = serve(path, {"status": lambda request, reply: reply.result({"ok": True})})
    try:
        link = find_daemon(settings(deep))
        assert link is not None
        assert link.ask("status") == {"ok": True}
    finally:
        server.close("test over")


def test_crowding_and_the_final_line_at_close(tmp_path: Path) -> None:
    path = tmp_path / SOCKET_NAME
    waiting: list[Reply] = []
    arrived = threading.Event()

    def slow(request: dict, reply: Reply) -> None:
        reply.subject = "run t/manual-1"
        reply.send({"type": "accepted", "run": "t/manual-1"})
        waiting.append(reply)
        arrived.set()

    server = serve(path, {"trigger": slow})
    try:
        link = find_daemon(settings(tmp_path))
        assert link is not None
        lines = link.request("trigger", task="t")
        assert next(lines)["type"] == "accepted"
        assert arrived.wait(10)
        crowd = []
        for _ in range(MAX_CONNECTIONS):
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(str(path))
            crowd.append(sock)
        last = crowd[-1]
        last.settimeout(10)
        busy = json.loads(last.recv(4096).splitlines()[0])
        assert busy["code"] == "busy"
        for sock in crowd:
            sock.close()
        server.close("signal SIGTERM")
        final = next(lines)
        assert final["type"] == "error" and final["code"] == "stopped"
        assert "stopped (signal SIGTERM) before run t/manual-1 finished" in final["message"]
        with pytest.raises(StopIteration):
            next(lines)
    finally:
        server.close("test over")
    assert not path.exists()


def test_a_handler_error_is_a_final_error_line_not_a_dead_server(tmp_path: Path) -> None:
    path = tmp_path / SOCKET_NAME

    def broken(request: dict, reply: Reply) -> None:
        raise KeyError("oops")

    server = serve(path, {"status": broken, "ping": lambda r, reply: reply.result("pong")})
    try:
        link = find_daemon(settings(tmp_path))
        assert link is not None
        with pytest.raises(DaemonError, match="KeyError while answering"):
            link.ask("status")
        again = find_daemon(settings(tmp_path))
        assert again is not None and again.ask("ping") == "pong"
    finally:
        server.close("test over")


# -- hostile peers on either side ----------------------------------------------------------------


def deep(n: int = 100_000) -> bytes:
    """A JSON line nested deeper than Python's recursion limit (within MAX_REQUEST)."""
    return b'{"op":"status","x":' + b"[" * n + b"\n"


def test_a_line_nested_too_deep_is_a_protocol_error() -> None:
    a, b = socket.socketpair()
    with a, b:
        b.sendall(deep(60_000))
        with pytest.raises(ProtocolError, match="not a JSON line"):
            LineReader(a, 1 << 20).message()


def test_a_request_nested_too_deep_ends_its_connection_not_the_server(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / SOCKET_NAME
    server = serve(path, {"ping": lambda r, reply: reply.result("pong")})
    try:
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(deep(60_000))
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
        sock.close()
        assert [json.loads(x)["type"] for x in got.splitlines()] == ["hello"]  # no answer
        link = find_daemon(settings(tmp_path))
        assert link is not None and link.ask("ping") == "pong"
    finally:
        server.close("test over")
    _, err = capfd.readouterr()
    assert "Traceback" not in err and "RecursionError" not in err


def test_a_greeting_nested_too_deep_is_one_line_for_the_cli(tmp_path: Path) -> None:
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / SOCKET_NAME))
    listener.listen(1)

    def greet() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(deep(200_000))

    thread = threading.Thread(target=greet)
    thread.start()
    try:
        with pytest.raises(UsageError, match="did not greet: not a JSON line"):
            find_daemon(settings(tmp_path))
    finally:
        thread.join()
        listener.close()


def test_an_answer_that_is_not_json_ends_its_connection_without_a_traceback(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / SOCKET_NAME
    handlers = {
        "status": lambda r, reply: reply.result({"when": object()}),  # a handler's bug
        "ping": lambda r, reply: reply.result("pong"),
    }
    server = serve(path, handlers)
    try:
        link = find_daemon(settings(tmp_path))
        assert link is not None
        with pytest.raises(UsageError, match="closed the connection without an answer"):
            link.ask("status")
        again = find_daemon(settings(tmp_path))
        assert again is not None and again.ask("ping") == "pong"
    finally:
        server.close("test over")
    out, err = capfd.readouterr()
    assert "Traceback" not in err
    assert "control-connection-failed" in out + err and "TypeError" in out + err


@pytest.mark.parametrize(
    ("mode", "owner", "why"),
    [
        (0o777, 0, "other users may write in its folder"),
        (0o1777, 0, "other users may write in its folder"),  # sticky: they can still squat
        (0o770, 0, "other users may write in its folder"),
        (0o755, 65534, "belongs to uid 65534"),
    ],
)
def test_a_socket_folder_others_may_write_is_refused(
    tmp_path: Path, mode: int, owner: int, why: str
) -> None:
    """Whoever may write in the folder could swap the socket for a symlink between its bind
    and its chmod (the daemon, often root, would chmod the symlink's target) or replace it."""
    folder = tmp_path / "run"
    folder.mkdir()
    folder.chmod(mode)
    os.chown(folder, owner, owner)
    with pytest.raises(ControlError, match=why):
        serve(folder / SOCKET_NAME)
    assert os.listdir(folder) == []
    folder.chmod(0o750)
    os.chown(folder, 0, 0)
    serve(folder / SOCKET_NAME).close("test over")
