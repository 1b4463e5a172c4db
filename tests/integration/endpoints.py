"""Loopback HTTP endpoints the tests stand up for Handoff to call: a webhook receiver that records
what it gets, and an executor that checks the signature and dedups on the idempotency key."""

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

KEY = b"executor-s3cret"


class Executor:
    """A stand-in for the external system's executor: it dedups on the idempotency key, as the
    docs ask executors to, and can be slow to answer the first call."""

    def __init__(self, slow_first: float = 0.0) -> None:
        self.calls: list[dict[str, Any]] = []
        self.processed: dict[str, dict[str, Any]] = {}
        self.slow_first = slow_first
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                stamp = self.headers["X-Handoff-Timestamp"]
                good = hmac.new(KEY, stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
                call = {"key": self.headers["X-Handoff-Delivery"], "signed": self.headers["X-Handoff-Signature"] == f"sha256={good}",
                        "body": json.loads(raw)}  # fmt: skip
                outer.calls.append(call)
                if len(outer.calls) == 1 and outer.slow_first:
                    time.sleep(outer.slow_first)
                outer.processed.setdefault(call["key"], call["body"])
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/execute"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Receiver:
    """A webhook endpoint on loopback that records what it gets; it can fail on purpose."""

    def __init__(self, fail_first: int = 0) -> None:
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.fail_first = fail_first
        self.calls = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.calls += 1
                if outer.calls <= outer.fail_first:
                    self.send_response(503)
                    self.end_headers()
                    return
                outer.received.append(
                    (dict(self.headers), json.loads(body) | {"_raw": body.decode()})
                )
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[str]:
        return [body["event"] for _, body in self.received]
