"""LocalServer: start and stop (twice), free ports, no leaked threads or sockets, and a
loop that stays responsive while an engine call blocks."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import httpx
import pytest

from instantdb_local import LocalServer
from tests.local.app.fakes import FakeEngine


def _health(server: LocalServer) -> int:
    return httpx.get(server.api_uri + "/health", timeout=5).status_code


def _refuses_connections(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_serves_on_a_free_port_and_stops_cleanly():
    threads_before = set(threading.enumerate())
    server = LocalServer(engine_factory=FakeEngine)
    with server:
        assert server.running
        assert server.api_uri == f"http://127.0.0.1:{server.port}"
        assert _health(server) == 200
        data_dir = server.instance.data_dir
        port = server.port
    assert not server.running
    assert _refuses_connections(port)
    assert not data_dir.exists()  # the temporary data dir is removed
    assert set(threading.enumerate()) <= threads_before
    server.stop()  # a second stop is harmless


def test_restart_after_stop(tmp_path):
    server = LocalServer(data_dir=tmp_path / "data", engine_factory=FakeEngine)
    with server:
        first = (server.app_id, server.admin_token)
        assert _health(server) == 200
    with server:
        assert (server.app_id, server.admin_token) == first
        assert _health(server) == 200
    assert not server.running


def test_start_twice_is_a_no_op():
    with LocalServer(engine_factory=FakeEngine) as server:
        port = server.port
        assert server.start() is server
        assert server.port == port


def test_busy_port_is_a_clear_error():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        server = LocalServer(port=port, engine_factory=FakeEngine)
        with pytest.raises(OSError, match="--port 0"):
            server.start()
        assert not server.running


def test_bad_port_is_refused_before_io():
    with pytest.raises(ValueError, match="port"):
        LocalServer(port=70000)


def test_not_running_properties_say_how_to_start():
    server = LocalServer()
    with pytest.raises(RuntimeError, match="with LocalServer"):
        server.api_uri  # noqa: B018
    assert repr(server) == "LocalServer(stopped)"


def test_repr_and_credentials_hide_the_token():
    with LocalServer(engine_factory=FakeEngine) as server:
        token = server.admin_token
        assert token not in repr(server)
        assert token not in repr(server.credentials)
        assert server.env == {
            "INSTANT_APP_ID": server.app_id,
            "INSTANT_APP_ADMIN_TOKEN": token,
            "INSTANT_API_URI": server.api_uri,
        }


def test_create_app_gives_isolated_working_credentials():
    with LocalServer(engine_factory=FakeEngine) as server:
        app = server.create_app(title="mine", rules={"goals": {"allow": {"view": "true"}}})
        assert app.app_id != server.app_id
        headers = {"app-id": app.app_id, "authorization": f"Bearer {app.admin_token}"}
        response = httpx.post(
            app.api_uri + "/admin/query", json={"query": {}}, headers=headers, timeout=5
        )
        assert response.status_code == 200
        assert server.instance.engine(app.app_id).rules == {"goals": {"allow": {"view": "true"}}}
        with pytest.raises(ValueError, match="blank"):
            server.create_app(title=" ")


class BlockingEngine(FakeEngine):
    entered = threading.Event()
    release = threading.Event()

    def query(self, query, actor, *, inference=False):
        BlockingEngine.entered.set()
        BlockingEngine.release.wait(10)
        return {"done": True}


def test_a_blocked_engine_call_does_not_stall_other_requests():
    with LocalServer(engine_factory=BlockingEngine) as server:
        headers = {"app-id": server.app_id, "authorization": f"Bearer {server.admin_token}"}
        results: list[int] = []
        slow = threading.Thread(
            target=lambda: results.append(
                httpx.post(
                    server.api_uri + "/admin/query",
                    json={"query": {}},
                    headers=headers,
                    timeout=10,
                ).status_code
            )
        )
        slow.start()
        try:
            assert BlockingEngine.entered.wait(5)
            assert _health(server) == 200  # answered while the query is still blocked
        finally:
            BlockingEngine.release.set()
            slow.join(10)
        assert results == [200]


def test_project_dir_must_exist(tmp_path: Path):
    server = LocalServer(project_dir=tmp_path / "missing", engine_factory=FakeEngine)
    with pytest.raises(FileNotFoundError):
        server.start()
    assert not server.running


def test_listening_socket_disables_nagle():
    # Responses go out as two writes (headers, body); with Nagle on, the second waits
    # for the client's delayed ACK on every request.
    from instantdb_local.server import bind_socket

    sock = bind_socket("127.0.0.1", 0)
    try:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        sock.close()


def test_importing_the_package_loads_no_server_dependency():
    import subprocess
    import sys

    code = (
        "import sys, instantdb_local\n"
        "heavy = [m for m in ('starlette', 'uvicorn', 'instantdb') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "instantdb_local.LocalServer\n"
        "assert 'uvicorn' in sys.modules or 'starlette' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
