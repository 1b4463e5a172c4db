"""The Webhook executor: Handoff posts the approved action, signed, with an idempotency key, and
the executor processes it once even when the operator is killed while it waits for the answer."""

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from handoff.testing.cluster import Cluster, OperatorProcess, eventually

from .helpers import AGENT, apply_ready_policy, policy, wait_for

pytestmark = pytest.mark.integration
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


@pytest.fixture
def executor() -> Iterator[Executor]:
    endpoint = Executor(slow_first=6)
    yield endpoint
    endpoint.close()


def test_signed_call_processed_once_across_an_operator_restart(
    cluster: Cluster, operator: OperatorProcess, namespace: str, executor: Executor
) -> None:
    cluster.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "executor", "namespace": namespace},
                   "stringData": {"key": KEY.decode()}})  # fmt: skip
    document = policy(
        namespace,
        executors={
            "webhook": {"url": executor.url, "hmacSecretRef": {"name": "executor", "key": "key"}}
        },
        rules=[{"name": "payouts", "actions": ["payments.payout"], "tier": 2}],
    )
    apply_ready_policy(cluster, document)
    request = {
        "apiVersion": "handoff.dev/v1alpha1", "kind": "ActionRequest",
        "metadata": {"generateName": "payout-", "namespace": namespace},
        "spec": {"agent": AGENT, "action": "payments.payout", "execution": "Webhook", "target": "bank:acct/9",
                 "parameters": {"amount": 120}, "summary": "Pay out $120",
                 "rollback": {"description": "claw it back", "action": "payments.clawback"}},
    }  # fmt: skip
    name = json.loads(cluster.create(request, who=f"{namespace}/{AGENT}").stdout)["metadata"][
        "name"
    ]
    eventually(lambda: executor.calls, what="the first call to the executor")
    assert (
        cluster.get("actionrequest", name, namespace)["status"]["execution"]["outcome"]
        == "Executing"
    )
    operator.kill()  # while the executor is still answering
    operator.start()
    done = wait_for(cluster, namespace, name, "phase", "Executed", timeout=30)
    uid = done["metadata"]["uid"]
    assert len(executor.calls) == 2  # the killed operator's call, and the restarted one's
    assert {call["key"] for call in executor.calls} == {uid}
    assert all(call["signed"] for call in executor.calls)
    assert list(executor.processed) == [uid]
    body = executor.processed[uid]
    assert body["idempotencyKey"] == uid
    assert body["action"] == "payments.payout"
    assert body["parameters"] == {"amount": 120}
    assert "accepted it" in done["status"]["execution"]["message"]


def test_a_policy_without_a_webhook_executor_refuses_webhook_requests(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    apply_ready_policy(cluster, policy(namespace))
    request = {
        "apiVersion": "handoff.dev/v1alpha1", "kind": "ActionRequest",
        "metadata": {"generateName": "payout-", "namespace": namespace},
        "spec": {"agent": AGENT, "action": "db.query", "execution": "Webhook", "summary": "read"},
    }  # fmt: skip
    name = json.loads(cluster.create(request, who=f"{namespace}/{AGENT}").stdout)["metadata"][
        "name"
    ]
    denied = wait_for(cluster, namespace, name, "decision.reason", "Invalid")
    assert "names no webhook executor" in denied["status"]["decision"]["message"]
