"""A local fake of Slack's Web API, and Slack's side of an interactivity callback, for tests.

:class:`FakeSlack` answers ``chat.postMessage``, ``chat.update``, ``chat.postEphemeral`` and
``views.open`` on loopback and records each call; a call without the bot token (``Authorization:
Bearer <token>``) is answered ``invalid_auth`` and recorded as refused. Blocks and views are held
to Block Kit's documented limits (:func:`block_kit_errors`), lengths counted in UTF-16 code units
(the stricter count: an emoji is two), and refused ``invalid_blocks`` as Slack would; ``refuse``
makes the next calls of a method fail with an error code. :func:`callback` posts a payload to the
console the way Slack does: form-encoded, signed with the signing secret.
"""

import contextlib
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from handoff.adapters.slack import sign
from handoff.devenv.manifests import OPERATOR_NAMESPACE, SLACK_USERS
from handoff.testing.cluster import Cluster, ConsoleProcess, OperatorProcess


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
    refuse: dict[str, list[str]] = field(default_factory=dict)  # method -> next errors

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
            errors = block_kit_errors(method, body)
            if not authorized:
                answer = {"ok": False, "error": "invalid_auth"}
            elif self.refuse.get(method):
                answer = {"ok": False, "error": self.refuse[method].pop(0)}
            elif errors:
                answer = {"ok": False, "error": "invalid_blocks", "errors": errors}
            elif method == "chat.postMessage":
                self._ts += 1
                answer |= {"channel": body.get("channel"), "ts": f"1700000000.{self._ts:06d}"}
            elif method == "chat.update":
                answer |= {"channel": body.get("channel"), "ts": body.get("ts")}
            elif method == "views.open":
                answer |= {"view": {"id": f"V{len(self.calls):08d}"}}
            self.calls.append(Call(method, body, authorized, answer))
            return answer

    def of(self, method: str) -> list[dict[str, Any]]:
        """The bodies of the calls of one method that Slack accepted, in order."""
        with self._lock:
            return [c.body for c in self.calls if c.method == method and c.answer.get("ok")]

    def refused(self, method: str) -> list[Call]:
        """The calls of one method that were answered with an error."""
        with self._lock:
            return [c for c in self.calls if c.method == method and not c.answer.get("ok")]

    def posted(self, words: str) -> list[tuple[dict[str, Any], str]]:
        """The messages posted whose JSON contains ``words``, with the ts Slack gave each."""
        with self._lock:
            return [
                (c.body, str(c.answer.get("ts")))
                for c in self.calls
                if c.method == "chat.postMessage"
                and c.answer.get("ok")
                and words in json.dumps(c.body)
            ]

    def updates(self, ts: str) -> list[dict[str, Any]]:
        """The chat.update calls of the message with this ts."""
        return [u for u in self.of("chat.update") if u.get("ts") == ts]


def _units(text: str) -> int:
    """Length in UTF-16 code units, as JavaScript counts: characters beyond U+FFFF are two."""
    return len(text.encode("utf-16-le")) // 2


# Block Kit's documented maximum lengths: (object type, field) -> limit.
_LIMITS = {
    ("header", "text"): 150, ("section", "text"): 3000, ("section", "field"): 2000,
    ("button", "text"): 75, ("button", "value"): 2000, ("button", "url"): 3000,
    ("input", "label"): 2000, ("option", "text"): 75, ("option", "description"): 75,
    ("option", "value"): 150, ("modal", "title"): 24, ("modal", "submit"): 24,
    ("modal", "close"): 24, ("modal", "private_metadata"): 3000, ("any", "action_id"): 255,
    ("any", "block_id"): 255, ("any", "callback_id"): 255,
}  # fmt: skip


def _text_errors(where: str, value: Any, limit: int) -> list[str]:
    text = value.get("text") if isinstance(value, dict) else value
    if not isinstance(text, str) or not text:
        return [f"{where}: must be a non-empty string"]
    if _units(text) > limit:
        return [f"{where}: {_units(text)} > {limit}"]
    return []


def _element_errors(where: str, element: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    kind = element.get("type")
    for key in ("action_id",):
        if key in element and _units(str(element[key])) > _LIMITS[("any", key)]:
            errors.append(f"{where}.{key}: too long")
    if kind == "button":
        errors += _text_errors(f"{where}.text", element.get("text"), _LIMITS[("button", "text")])
        for key in ("value", "url"):
            if key in element:
                errors += _text_errors(f"{where}.{key}", element[key], _LIMITS[("button", key)])
    if kind == "checkboxes":
        options = element.get("options") or []
        if not 1 <= len(options) <= 10:
            errors.append(f"{where}.options: {len(options)} not in 1..10")
        for i, option in enumerate(options):
            for key in ("text", "description", "value"):
                if key in option:
                    errors += _text_errors(
                        f"{where}.options[{i}].{key}", option[key], _LIMITS[("option", key)]
                    )
    return errors


def _block_errors(where: str, block: Any) -> list[str]:
    if not isinstance(block, dict):
        return [f"{where}: not an object"]
    errors: list[str] = []
    kind = block.get("type")
    if "block_id" in block and _units(str(block["block_id"])) > _LIMITS[("any", "block_id")]:
        errors.append(f"{where}.block_id: too long")
    if kind == "header":
        errors += _text_errors(f"{where}.text", block.get("text"), _LIMITS[("header", "text")])
    elif kind == "section":
        fields = block.get("fields") or []
        if "text" not in block and not fields:
            errors.append(f"{where}: a section needs text or fields")
        if "text" in block:
            errors += _text_errors(f"{where}.text", block["text"], _LIMITS[("section", "text")])
        if len(fields) > 10:
            errors.append(f"{where}.fields: {len(fields)} > 10")
        for i, f in enumerate(fields):
            errors += _text_errors(f"{where}.fields[{i}]", f, _LIMITS[("section", "field")])
    elif kind == "actions":
        elements = block.get("elements") or []
        if not 1 <= len(elements) <= 25:
            errors.append(f"{where}.elements: {len(elements)} not in 1..25")
        for i, e in enumerate(elements):
            errors += _element_errors(f"{where}.elements[{i}]", e)
    elif kind == "input":
        errors += _text_errors(f"{where}.label", block.get("label"), _LIMITS[("input", "label")])
        errors += _element_errors(f"{where}.element", block.get("element") or {})
    return errors


def block_kit_errors(method: str, body: dict[str, Any]) -> list[str]:
    """What Slack would refuse in this call's blocks or view (empty: nothing)."""
    errors: list[str] = []
    if method in ("chat.postMessage", "chat.update", "chat.postEphemeral") and "blocks" in body:
        blocks = body["blocks"]
        if not isinstance(blocks, list) or len(blocks) > 50:
            return ["blocks: more than 50, or not a list"]
        for i, block in enumerate(blocks):
            errors += _block_errors(f"blocks[{i}]", block)
    if method == "views.open":
        view = body.get("view") or {}
        for key in ("title", "submit", "close"):
            if key in view:
                errors += _text_errors(f"view.{key}", view[key], _LIMITS[("modal", key)])
        if _units(str(view.get("private_metadata", ""))) > _LIMITS[("modal", "private_metadata")]:
            errors.append("view.private_metadata: too long")
        blocks = view.get("blocks") or []
        if len(blocks) > 100:
            errors.append("view.blocks: more than 100")
        for i, block in enumerate(blocks):
            errors += _block_errors(f"view.blocks[{i}]", block)
    return errors


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


def submission(
    who: str, view: dict[str, Any], acks: list[str], comment: str | None
) -> dict[str, Any]:
    """A modal's ``view_submission`` as Slack posts it: the checked boxes and the comment."""
    options = [{"value": a} for a in acks]
    values: dict[str, Any] = {
        "ack": {"ack": {"type": "checkboxes", "selected_options": options}},
        "comment": {"comment": {"type": "plain_text_input", "value": comment}},
    }
    return {
        "type": "view_submission",
        "user": {"id": who},
        "team": {"id": "T0TEAM"},
        "view": {**view, "state": {"values": values}},
    }


@contextlib.contextmanager
def operator_with_slack(operator: OperatorProcess, api_url: str, token: str) -> Iterator[None]:
    """The operator started again with the Slack app's bot token, then again without it."""
    operator.stop()
    operator.extra_env = {"HANDOFF_SLACK_BOT_TOKEN": token, "HANDOFF_SLACK_API_URL": api_url}
    operator.start()
    try:
        yield
    finally:
        operator.stop()
        operator.extra_env = {}
        operator.start()


def slack_console(
    cluster: Cluster, folder: Path, namespaces: list[str], api_url: str, *, secret: str, token: str
) -> ConsoleProcess:
    """A console with Slack's interactivity endpoint (the mapping in the operator's namespace),
    started."""
    process = ConsoleProcess(cluster, folder, namespaces, None)
    process.extra_args = ["--slack", f"--slack-api-url={api_url}",
                          f"--slack-users={OPERATOR_NAMESPACE}/{SLACK_USERS}"]  # fmt: skip
    process.extra_env = {"HANDOFF_SLACK_SIGNING_SECRET": secret, "HANDOFF_SLACK_BOT_TOKEN": token}
    return process.start()
