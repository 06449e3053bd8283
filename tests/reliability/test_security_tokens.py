"""Credentials go only where they belong: the admin token and a user's refresh token only
to the configured API host, never across a redirect, and never with a file download
(whose absolute URL may point anywhere, including the API host itself).

"Elsewhere" is a second proxy on 127.0.0.1 that records every request it gets.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from instantdb import InstantAPIError, InstantError, id
from instantdb_local.instance import AppCredentials
from tests.reliability._clients import ClientRunner
from tests.reliability._faults import FaultProxy, Respond

REFRESH_TOKEN = "7e000000-0000-4000-8000-00000000beef"
CREDENTIAL_HEADERS = ("authorization", "as-token", "as-email", "as-guest", "app-id")


@pytest.fixture
def elsewhere() -> Iterator[FaultProxy]:
    # Its upstream is a closed port: it records requests and answers 502.
    with FaultProxy("http://127.0.0.1:9") as recorder:
        yield recorder


def _redirect(code: int, location: str) -> Respond:
    return Respond(code, b"", (("location", location),))


CALLS = {
    "query": lambda db: db.query({"goals": {}}),
    "transact": lambda db: db.transact(db.tx.goals[id()].update({"t": 1})),
    "schema": lambda db: db.schema(),
    "auth.get_user": lambda db: db.auth.get_user(email="a@b.co"),
    "auth.create_token": lambda db: db.auth.create_token(email="a@b.co"),
    "rooms.get_presence": lambda db: db.rooms.get_presence("chat", "r1"),
    "as_user.query": lambda db: db.as_user(token=REFRESH_TOKEN).query({"goals": {}}),
}


@pytest.mark.parametrize("code", [301, 302, 307, 308])
@pytest.mark.parametrize("call", sorted(CALLS))
def test_redirects_are_never_followed(
    code: int,
    call: str,
    app: AppCredentials,
    proxy: FaultProxy,
    elsewhere: FaultProxy,
    clients: ClientRunner,
) -> None:
    proxy.plan(_redirect(code, elsewhere.url + "/admin/query"))
    db = clients.make(app, api_uri=proxy.url)
    with pytest.raises(InstantAPIError) as caught:
        clients.run(CALLS[call](db))
    assert caught.value.status == code
    assert "redirect" in str(caught.value)
    assert "api_uri" in str(caught.value)  # says what to fix
    assert elsewhere.exchanges == []


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_lent_client_that_follows_redirects_does_not_follow_ours(
    kind: str, app: AppCredentials, proxy: FaultProxy, elsewhere: FaultProxy
) -> None:
    proxy.plan(_redirect(307, elsewhere.url + "/admin/query"))
    runner = ClientRunner(kind)
    lent: Any = (
        httpx.Client(follow_redirects=True)
        if kind == "sync"
        else httpx.AsyncClient(follow_redirects=True)
    )
    try:
        db = runner.make(app, api_uri=proxy.url, http_client=lent)
        with pytest.raises(InstantAPIError) as caught:
            runner.run(db.query({"goals": {}}))
        assert caught.value.status == 307
    finally:
        # A lent client is the lender's to close, on the loop that used it.
        runner.run(lent.aclose() if kind == "async" else lent.close())
        runner.close()
    assert elsewhere.exchanges == []


# -- downloads --------------------------------------------------------------------------------


@pytest.fixture
def files() -> Iterator[FaultProxy]:
    """A file host on 127.0.0.1 that answers every request with the file's bytes."""
    with FaultProxy("http://127.0.0.1:9") as host:
        yield host


def _serve_file(host: FaultProxy, times: int = 1) -> None:
    host.plan(*[Respond(200, b"file-bytes", (("content-type", "text/plain"),))] * times)


def _assert_no_credentials(host: FaultProxy) -> None:
    assert host.exchanges, "the file host got no request"
    for exchange in host.exchanges:
        sent = {name.lower() for name in exchange.headers}
        assert sent.isdisjoint(CREDENTIAL_HEADERS), exchange.headers
        assert "app_id" not in exchange.target


@pytest.mark.parametrize("scoped", [False, True], ids=["admin", "as-user-token"])
def test_a_download_carries_no_credentials(
    scoped: bool,
    app: AppCredentials,
    files: FaultProxy,
    clients: ClientRunner,
    tmp_path: Path,
) -> None:
    _serve_file(files, times=2)
    db = clients.make(app)
    if scoped:
        db = db.as_user(token=REFRESH_TOKEN)
    url = files.url + "/bucket/f.txt?X-Amz-Signature=abc"
    assert clients.run(db.storage.download({"url": url})) == b"file-bytes"
    target = tmp_path / "f.txt"
    assert clients.run(db.storage.download(url, to=target)) == target
    assert target.read_bytes() == b"file-bytes"
    _assert_no_credentials(files)


def test_a_download_from_the_api_host_itself_carries_no_credentials(
    app: AppCredentials, proxy: FaultProxy, clients: ClientRunner
) -> None:
    # The same host and port as api_uri: still an absolute URL, still no token.
    _serve_file(proxy)
    db = clients.make(app, api_uri=proxy.url)
    assert clients.run(db.storage.download(proxy.url + "/storage/files/x")) == b"file-bytes"
    _assert_no_credentials(proxy)


def test_a_download_follows_a_storage_redirect_without_credentials(
    app: AppCredentials, files: FaultProxy, elsewhere: FaultProxy, clients: ClientRunner
) -> None:
    files.plan(_redirect(302, elsewhere.url + "/signed/f.txt?sig=1"))
    elsewhere.plan(Respond(200, b"moved-bytes"))
    db = clients.make(app)
    assert clients.run(db.storage.download(files.url + "/f.txt")) == b"moved-bytes"
    _assert_no_credentials(files)
    _assert_no_credentials(elsewhere)


def test_a_failed_download_does_not_show_the_signed_url(
    app: AppCredentials, files: FaultProxy, clients: ClientRunner, tmp_path: Path
) -> None:
    signature = "X-Amz-Signature=5ec12e7"
    files.plan(*[Respond(404, b"NoSuchKey")] * 2)
    db = clients.make(app)
    target = tmp_path / "f.txt"
    for kwargs in ({}, {"to": target}):
        with pytest.raises(InstantError) as caught:
            clients.run(db.storage.download(files.url + f"/f.txt?{signature}", **kwargs))
        assert signature not in str(caught.value)
        assert signature not in repr(caught.value)
    assert not target.exists()  # nothing half-written left behind
