"""Retention: decided requests are deleted after the retention period, and only once their
audit record is out; the record stays (Redis stream, JSON lines on the operator's log)."""

import json
from collections.abc import Iterator
from typing import Any

import pytest
from handoff.devenv.redis import RedisServer
from handoff.testing.cluster import Cluster, OperatorProcess, eventually, redis_client

from .helpers import apply_ready_policy, file, policy, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def short_retention(operator: OperatorProcess) -> Iterator[OperatorProcess]:
    operator.kill()
    operator.extra_args = ["--retention=6s"]
    operator.start()
    yield operator
    operator.kill()
    operator.extra_args = []
    operator.start()


def test_old_requests_go_and_their_audit_lines_stay(
    cluster: Cluster, short_retention: OperatorProcess, namespace: str, redis_server: RedisServer
) -> None:
    apply_ready_policy(cluster, policy(namespace))
    name = file(cluster, namespace, "db.query")
    decided = wait_for(cluster, namespace, name, "decision.reason", "AutoApproved")
    uid = decided["metadata"]["uid"]
    waiting = file(cluster, namespace, "payments.charge")  # undecided: never deleted by retention
    wait_for(cluster, namespace, waiting, "phase", "AwaitingApproval")

    eventually(
        lambda: cluster.kubectl("get", "actionrequest", name, "-n", namespace, check=False).returncode != 0,
        timeout=20, what="the decided request to be deleted",
    )  # fmt: skip
    assert cluster.get("actionrequest", waiting, namespace)["status"]["phase"] == "AwaitingApproval"
    audit = [
        fields
        for _, fields in redis_client(redis_server.url).xrange("handoff:audit")
        if fields[b"uid"].decode() == uid
    ]
    assert [fields[b"event"] for fields in audit] == [b"Approved"]
    lines = [
        audit_line
        for line in short_retention.log.read_text().splitlines()
        if line.startswith("{") and (audit_line := _json(line)) is not None
    ]
    assert any(
        line.get("uid") == uid and line.get("event") == "Approved"
        and line.get("reason") == "AutoApproved"
        for line in lines
    )  # fmt: skip


def _json(line: str) -> dict[str, Any] | None:
    """An audit line; None for another log line that happens to start with a brace."""
    try:
        found = json.loads(line)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None
