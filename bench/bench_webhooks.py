"""Webhooks: receiving with a cached signing key, and what a webhook costs a transaction.

Figures, each a ratio measured in this run against the local server on loopback:

- time of ``db.webhooks.validate`` with the process-wide JWKS cache / the same call when
  the JWKS is fetched every time, as the official SDK does (target <= 0.5);
- time of an admin transaction on an app with one active webhook (its change records
  read and stored, the event queued, each delivered in the background to a receiver in
  another process on loopback, competing for the same two cores) / the same transaction
  on an app without webhooks: the median (target <= 3) and the best of the interleaved
  single transactions, which is the work done on the transaction's own thread (target
  <= 2).
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for entry in (str(HERE), str(ROOT)):
    if entry not in sys.path:
        sys.path.insert(0, entry)

from _harness import Result, best_of, median  # noqa: E402

from instantdb import Instant  # noqa: E402
from instantdb._protocol import webhooks as protocol  # noqa: E402
from instantdb_local import LocalServer  # noqa: E402
from instantdb_local.engine import Actor  # noqa: E402
from instantdb_local.webhooks import service_for  # noqa: E402

SCHEMA = {"attrs": {"goals": {"title": {"type": "string"}}}, "links": {}}

# A receiver in its own process, as a real one would be: answers 200 to every POST.
RECEIVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_port, flush=True)
server.serve_forever()
"""


def run(quick: bool) -> list[Result]:
    number = 20 if quick else 300
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout is not None
        url = f"http://127.0.0.1:{receiver.stdout.readline().strip()}/hook"
        return _measure(url, number)
    finally:
        receiver.terminate()
        receiver.wait(10)


def _measure(url: str, number: int) -> list[Result]:
    results: list[Result] = []
    with LocalServer() as server:
        service = service_for(server.instance)
        plain_app = server.create_app(title="plain", schema=SCHEMA)
        hooked_app = server.create_app(title="hooked", schema=SCHEMA)
        db = Instant(
            app_id=hooked_app.app_id, admin_token=hooked_app.admin_token, api_uri=server.api_uri
        )
        hook = db.webhooks.manager.create(url=url, namespaces=["goals"], actions=["create"])

        body = b'{"payloadUrl":"x","token":"y"}'
        now = int(time.time())
        header = service.signing_key.signature_header(now, body)

        def validate() -> None:
            db.webhooks.validate(signature_header=header, body=body)

        def validate_refetching() -> None:
            protocol.JWKS_CACHE.clear()
            db.webhooks.validate(signature_header=header, body=body)

        validate()
        baseline = best_of(validate_refetching, repeat=3, number=number)
        cached = best_of(validate, repeat=3, number=number)
        results.append(
            Result("validate, cached key vs JWKS fetch per call", cached, baseline, "s", 0.5)
        )

        plain = server.instance.engine(plain_app.app_id)
        hooked = server.instance.engine(hooked_app.app_id)
        admin = Actor.admin()

        def write(engine: object) -> None:
            steps = [["update", "goals", str(uuid.uuid4()), {"title": "x"}]]
            engine.transact(steps, admin)  # type: ignore[attr-defined]

        write(plain)
        write(hooked)
        # Interleaved single transactions, so disk and CPU noise hits both sides alike.
        # The order flips every round: the transaction right after a hooked one shares
        # the cores with that event's delivery, and each side is that one equally often.
        samples: dict[str, list[float]] = {"plain": [], "hooked": []}
        sides = [("plain", plain), ("hooked", hooked)]
        for round_number in range(number):
            for name, engine in sides if round_number % 2 else reversed(sides):
                started = time.perf_counter()
                write(engine)
                samples[name].append(time.perf_counter() - started)
        results.append(
            Result(
                "transact with an active webhook vs without, median",
                median(samples["hooked"]),
                median(samples["plain"]),
                "s",
                3.0,
                note="deliveries run meanwhile",
            )
        )
        results.append(
            Result(
                "transact with an active webhook vs without, best",
                min(samples["hooked"]),
                min(samples["plain"]),
                "s",
                2.0,
                note="the work on the transaction's own thread",
            )
        )
        delivered = db.webhooks.manager.list_events(hook["id"])["events"]
        if not any(event["status"] == "success" for event in delivered):
            raise AssertionError("no event was delivered during the benchmark")
        db.close()
    return results
