"""What the hostile-agent tests share: filing as an agent or a person and reading the refusal,
reporting an outcome on the agent's own stream, and a cluster without the filing policy."""

import asyncio
import contextlib
import http.client
import json
import re
import ssl
import subprocess
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from handoff import paths
from handoff.sdk import Agent, Decision
from handoff.testing.cluster import Cluster, ConsoleProcess, OperatorProcess, eventually

from .helpers import AGENT, apply_ready_policy, events, file, policy, wait_for

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


@dataclass(frozen=True)
class Answer:
    status: int
    message: str  # the Status message, or the created object's name
    warnings: str
    body: dict[str, Any]


def call(
    cluster: Cluster, method: str, path: str, body: bytes, who: str = "admin", query: str = ""
) -> Answer:
    """One raw HTTP call to the API server, bytes as given: what kubectl would not send."""
    control = cluster.control_plane
    context = ssl.create_default_context(cafile=str(control.ca_file))
    server = urllib.parse.urlsplit(control.server)
    connection = http.client.HTTPSConnection(
        server.hostname or "127.0.0.1", server.port, context=context, timeout=120
    )
    headers = {"Authorization": f"Bearer {cluster.token(who)}",
               "Content-Type": "application/json", "Content-Length": str(len(body))}  # fmt: skip
    try:
        connection.putrequest(method, f"{path}{query}", skip_accept_encoding=True)
        for key, value in headers.items():
            connection.putheader(key, value)
        connection.endheaders()
        # The API server may answer (413) and close before a large body is all sent: its
        # answer is still there to read, so a write that fails then is no failure of the call.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, ssl.SSLError):
            connection.send(body)
        answer = connection.getresponse()
        text = answer.read().decode()
        status, warnings = answer.status, answer.getheader("Warning") or ""
    finally:
        connection.close()
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = {}
    created = re.search(r'"name":"(hostile-[a-z0-9]+)"', text) if status == 201 else None
    message = parsed.get("message") or (created.group(1) if created else "")
    return Answer(status, str(message), warnings, parsed)


def still_running(cluster: Cluster, operator: OperatorProcess, ns: str) -> None:
    """The operator survived: alive, and an ordinary tier 1 request is still decided."""
    assert operator.process is not None
    assert operator.process.poll() is None, f"the operator exited: see {operator.log}"
    name = file(cluster, ns, "db.query")
    decided = wait_for(cluster, ns, name, "decision.reason", "AutoApproved", timeout=60)
    assert decided["status"]["phase"] == "Approved"
    assert operator.process.poll() is None


def requests_path(ns: str) -> str:
    return f"/apis/handoff.dev/v1alpha1/namespaces/{ns}/actionrequests"


def policies_path(ns: str) -> str:
    return f"/apis/handoff.dev/v1alpha1/namespaces/{ns}/agentactionpolicies"


class Web:
    """A browser reduced to what an attacker controls: headers, cookies and form fields."""

    def __init__(self, console: ConsoleProcess) -> None:
        self.port = console.port
        self.cookie: str | None = None

    def send(
        self, method: str, path: str, form: dict[str, Any] | None = None, **headers: str
    ) -> tuple[int, dict[str, str], str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        sent = {k.replace("_", "-"): v for k, v in headers.items()}
        if self.cookie:
            sent["Cookie"] = f"handoff_session={self.cookie}"
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form, doseq=True)
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            connection.request(method, path, body=body, headers=sent)
            answer = connection.getresponse()
            text = answer.read().decode()
            return answer.status, {k.lower(): v for k, v in answer.getheaders()}, text
        finally:
            connection.close()

    def sign_in(self, token: str) -> tuple[int, dict[str, str], str]:
        status, headers, text = self.send("POST", "/login", {"token": token})
        cookie = re.search(r"handoff_session=([^;]+)", headers.get("set-cookie", ""))
        self.cookie = cookie.group(1) if cookie else None
        return status, headers, text

    def csrf(self, path: str) -> str:
        status, _, text = self.send("GET", path)
        assert status == 200, text
        found = re.search(r'name="csrf" value="([^"]+)"', text)
        assert found, text
        return found.group(1)
