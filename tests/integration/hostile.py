"""What the hostile-agent tests share: filing as an agent or a person and reading the refusal,
reporting an outcome on the agent's own stream, and a cluster without the filing policy."""

import asyncio
import contextlib
import json
import subprocess
from collections.abc import Iterator
from typing import Any

from handoff import paths
from handoff.sdk import Agent, Decision
from handoff.testing.cluster import Cluster, eventually

from .helpers import AGENT, apply_ready_policy, events, policy

OTHER = "other-agent"
OPERATOR_USER = "system:serviceaccount:handoff-system:handoff-operator"
FILING = "handoff-filing"


def two_agents(cluster: Cluster) -> str:
    """A namespace with two agents governed by the payments policy."""
    name = cluster.new_namespace(agents=(AGENT, OTHER))
    apply_ready_policy(cluster, policy(name, agents={"serviceAccounts": [AGENT, OTHER]}))
    return name


def document(ns: str, *, name: str = "", agent: str = AGENT, meta: dict[str, Any] | None = None,
             **spec: Any) -> dict[str, Any]:  # fmt: skip
    metadata: dict[str, Any] = {
        "namespace": ns,
        **({"name": name} if name else {"generateName": "req-"}),
    }
    return {
        "apiVersion": "handoff.dev/v1alpha1",
        "kind": "ActionRequest",
        "metadata": metadata | (meta or {}),
        "spec": {"agent": agent, "action": "db.query", "target": "test:1", "summary": "hostile"} | spec,
    }  # fmt: skip


def create(cluster: Cluster, body: dict[str, Any], who: str) -> subprocess.CompletedProcess[str]:
    return cluster.create(body, who=who, check=False)


def created_name(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)["metadata"]["name"])


def refused(result: subprocess.CompletedProcess[str], *phrases: str) -> None:
    assert result.returncode != 0, result.stdout
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


def report(kubeconfig: str, ns: str, body: dict[str, Any], outcome: str = "Executed") -> None:
    """What a hostile agent appends to its own outcome stream: 'I carried it out'."""
    meta, spec = body["metadata"], body["spec"]
    decision = Decision(
        namespace=ns, name=meta["name"], uid=meta["uid"], action=spec["action"],
        target=spec.get("target", ""), outcome="Approved", reason="AutoApproved", by=[],
        message="", state=None, spec_digest="", state_ref="",
    )  # fmt: skip

    async def send() -> None:
        async with Agent(ns, spec["agent"], kubeconfig=kubeconfig, context=spec["agent"]) as agent:
            await agent.report(decision, outcome, "done, trust me")

    asyncio.run(send())


def event(cluster: Cluster, ns: str, name: str, reason: str, timeout: float = 15) -> dict[str, Any]:
    return eventually(
        lambda: next((e for e in events(cluster, ns, name) if e["reason"] == reason), None),
        timeout, f"a {reason} Event on {name}",
    )  # fmt: skip


def dry_run_admitted(cluster: Cluster, ns: str) -> bool:
    """Would the cluster take a request filed as another agent? (A server-side dry run runs
    admission and stores nothing.)"""
    probe = document(ns, agent=OTHER)
    return (
        cluster.kubectl(
            "create", "--dry-run=server", "-f", "-", who=f"{ns}/{AGENT}",
            input=json.dumps(probe), check=False,
        ).returncode == 0
    )  # fmt: skip


@contextlib.contextmanager
def without_filing_policy(cluster: Cluster, ns: str) -> Iterator[None]:
    """As on a cluster installed without the filing policy (the chart's admission.install=false),
    or before it existed: its binding is removed, and applied again afterwards."""
    cluster.kubectl("delete", "validatingadmissionpolicybinding", FILING)
    try:
        eventually(lambda: dry_run_admitted(cluster, ns), 30, "the filing policy to be off")
        yield
    finally:
        cluster.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f",
            str(paths.admission_dir() / "actionrequests.yaml"),
        )  # fmt: skip
        eventually(lambda: not dry_run_admitted(cluster, ns), 30, "the filing policy back on")
