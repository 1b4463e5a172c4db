"""A local fake of Slack's Web API, and Slack's side of an interactivity callback, for tests.

:class:`FakeSlack` answers ``chat.postMessage``, ``chat.update``, ``chat.postEphemeral`` and
``views.open`` on loopback and records each call; a call without the bot token (``Authorization:
Bearer <token>``) is answered ``invalid_auth`` and recorded as refused. :func:`callback` posts a
payload to the console the way Slack does: form-encoded, signed with the signing secret.
"""

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from handoff.adapters.slack import sign


@dataclass
class Call:
    method: str
    body: dict[str, Any]
    authorized: bool
    answer: dict[str, Any] = field(default_factory=dict)


@dataclass
class FakeSlack:
    token: str
    calls: list[Call] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ts: int = 0

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/api"

    def start(self) -> "FakeSlack":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                authorized = self.headers.get("Authorization") == f"Bearer {fake.token}"
                answer = fake.answer(self.path.rsplit("/", 1)[-1], raw, authorized)
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def answer(self, method: str, raw: bytes, authorized: bool) -> dict[str, Any]:
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {"unparsed": raw.decode("utf-8", "replace")}
        with self._lock:
            answer: dict[str, Any] = {"ok": True}
            if not authorized:
                answer = {"ok": False, "error": "invalid_auth"}
            elif method == "chat.postMessage":
                self._ts += 1
                answer |= {"channel": body.get("channel"), "ts": f"1700000000.{self._ts:06d}"}
            elif method == "chat.update":
                answer |= {"channel": body.get("channel"), "ts": body.get("ts")}
            self.calls.append(Call(method, body, authorized, answer))
            return answer

    def of(self, method: str) -> list[dict[str, Any]]:
        """The bodies of the authorized calls of one method, in order."""
        with self._lock:
            return [c.body for c in self.calls if c.method == method and c.authorized]

    def posted(self, words: str) -> list[tuple[dict[str, Any], str]]:
        """The messages posted whose JSON contains ``words``, with the ts Slack gave each."""
        with self._lock:
            return [
                (c.body, str(c.answer.get("ts")))
                for c in self.calls
                if c.method == "chat.postMessage" and c.authorized and words in json.dumps(c.body)
            ]

    def updates(self, ts: str) -> list[dict[str, Any]]:
        """The chat.update calls of the message with this ts."""
        return [u for u in self.of("chat.update") if u.get("ts") == ts]


def callback(
    url: str,
    secret: str,
    payload: dict[str, Any],
    *,
    timestamp: int | None = None,
    signature: str | None = None,
) -> tuple[int, str]:
    """POST a signed interactivity payload as Slack would: (status, response body)."""
    body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": signature or sign(secret, stamp, body),
    }
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=20) as response:  # noqa: S310 - loopback
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
