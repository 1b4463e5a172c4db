"""The Webhook executor: Handoff posts the approved action, signed, with an idempotency key, and
the executor processes it once even when the operator is killed while it waits for the answer."""

import json
from collections.abc import Iterator

import pytest
from handoff.testing.cluster import Cluster, OperatorProcess, eventually

from .endpoints import KEY, Executor
from .helpers import AGENT, apply_ready_policy, policy, wait_for

pytestmark = pytest.mark.integration


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
