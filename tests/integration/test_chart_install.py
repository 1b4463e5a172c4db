"""The Helm chart installed in a real control plane, with the helm that `make helm` builds.

The chart installs cluster-wide objects (CRDs, admission policies, ClusterRoles) that the session's
cluster already has from the dev environment, so this module starts a bare control plane of its
own and lets the chart install Handoff there. No pod can run (no nodes, no controllers), so the
operator runs here as a process, signed in with a token of the chart's ServiceAccount and with the
arguments of the chart's Deployment: what it manages to do, the chart's RBAC allows.
"""

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from handoff import paths
from handoff.devenv import processes
from handoff.devenv.redis import RedisServer
from handoff.testing.cluster import Cluster, eventually

from .chart import (
    CHART,
    CONSOLE_SA,
    EVERYTHING_ON,
    FULLNAME,
    GATEWAY_SA,
    GATEWAY_USER,
    NAMESPACE,
    OPERATOR_SA,
    OPERATOR_USER,
    RELEASE,
    helm,
    render,
    workloads,
)
from .helpers import apply_ready_policy, file, policy, review, wait_for

pytestmark = pytest.mark.integration

# --- the real control plane ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def bare_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A control plane with nothing of Handoff's in it: the chart installs all of it."""
    if not (paths.bin_dir() / "kube-apiserver").exists():
        pytest.fail(f"no control plane in {paths.bin_dir()}: run 'make controlplane' first")
    cluster = Cluster(tmp_path_factory.mktemp("chart-controlplane"))
    cluster.control_plane.start()
    yield cluster
    cluster.control_plane.stop()


def admin_kubeconfig(cluster: Cluster) -> Path:
    return cluster.control_plane.folder / "admin.kubeconfig"


def test_the_rendered_chart_applies_with_a_server_side_dry_run(
    bare_cluster: Cluster, tmp_path: Path
) -> None:
    cluster = bare_cluster
    namespace = "dry-run-system"
    cluster.kubectl("create", "namespace", namespace)
    # Everything but the ServiceMonitor and PrometheusRule, whose CRDs this cluster lacks.
    objects = render(*EVERYTHING_ON[2:], namespace=namespace, release="dry")
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(yaml.safe_dump_all(objects))
    result = cluster.kubectl(
        "apply", "--server-side", "--dry-run=server", "-f", str(manifest), check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == len(objects)
    assert "Warning" not in result.stderr, result.stderr


def test_the_pods_pass_the_restricted_pod_security_standard(bare_cluster: Cluster) -> None:
    """The API server's own PodSecurity admission judges each pod template."""
    cluster = bare_cluster
    namespace = "restricted-pods"
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    for account in ("default", OPERATOR_SA, CONSOLE_SA):  # no controller makes them here
        cluster.kubectl("create", "serviceaccount", account, "-n", namespace)

    def admitted(spec: dict[str, Any], name: str) -> subprocess.CompletedProcess[str]:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
        return cluster.kubectl(
            "create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False
        )

    loose = admitted({"containers": [{"name": "c", "image": "busybox"}]}, "loose")
    assert loose.returncode != 0
    assert (
        "violates PodSecurity" in loose.stderr
    )  # the check is on, so a pass below means something
    for workload in workloads(render()):
        spec = workload["spec"]["template"]["spec"]
        for claim in workload["spec"].get(
            "volumeClaimTemplates", []
        ):  # as the StatefulSet controller does
            name = claim["metadata"]["name"]
            spec["volumes"].append(
                {
                    "name": name,
                    "persistentVolumeClaim": {
                        "claimName": f"{name}-{workload['metadata']['name']}-0"
                    },
                }
            )
        result = admitted(spec, workload["metadata"]["name"])
        assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def installed(bare_cluster: Cluster) -> Cluster:
    helm(
        "install", RELEASE, str(CHART), f"--namespace={NAMESPACE}", "--create-namespace",
        "--set=console.namespaces={agents}", "--set=gateway.enabled=true",
        kubeconfig=admin_kubeconfig(bare_cluster),
    )  # fmt: skip
    return bare_cluster


def test_helm_installs_every_object(installed: Cluster) -> None:
    cluster = installed
    for crd in (
        "actionrequests.handoff.dev",
        "agentactionpolicies.handoff.dev",
        "policyreports.wgpolicyk8s.io",
    ):
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{crd}")
    reviews = json.loads(
        cluster.kubectl("get", "validatingadmissionpolicy", "handoff-reviews", "-o", "json").stdout
    )
    assert OPERATOR_USER in reviews["spec"]["matchConditions"][0]["expression"]
    cluster.kubectl("get", "mutatingadmissionpolicy", "handoff-requested-by")
    for kind, name in [
        ("deployment", f"{FULLNAME}-operator"), ("deployment", f"{FULLNAME}-console"),
        ("statefulset", f"{FULLNAME}-redis"), ("secret", f"{FULLNAME}-redis"),
        ("serviceaccount", OPERATOR_SA), ("serviceaccount", CONSOLE_SA),
        ("deployment", f"{FULLNAME}-gateway"), ("serviceaccount", GATEWAY_SA),
        ("role", f"{FULLNAME}-operator-leases"),
    ]:  # fmt: skip
        cluster.kubectl("get", kind, name, "-n", NAMESPACE)
    for role in (
        "handoff-reviewer",
        "handoff-agent",
        f"{FULLNAME}-operator",
        f"{FULLNAME}-console",
    ):
        cluster.kubectl("get", "clusterrole", role)
    status = helm(
        "status",
        RELEASE,
        f"--namespace={NAMESPACE}",
        "-o",
        "json",
        kubeconfig=admin_kubeconfig(cluster),
    )
    assert json.loads(status.stdout)["info"]["status"] == "deployed"


def can_i(cluster: Cluster, user: str, *args: str) -> bool:
    result = cluster.kubectl("auth", "can-i", *args, f"--as={user}", check=False)
    return result.stdout.strip() == "yes"


def test_the_console_may_review_tokens_and_nothing_else(installed: Cluster) -> None:
    cluster = installed
    console = f"system:serviceaccount:{NAMESPACE}:{CONSOLE_SA}"
    assert can_i(cluster, console, "create", "tokenreviews.authentication.k8s.io")
    for verb_resource in [
        ("get", "secrets", "-A"), ("list", "actionrequests.handoff.dev", "-A"),
        ("patch", "actionrequests.handoff.dev", "--subresource=status", "-n", "agents"),
        ("list", "agentactionpolicies.handoff.dev", "-A"), ("create", "subjectaccessreviews.authorization.k8s.io"),
        ("get", "leases.coordination.k8s.io", "-n", NAMESPACE), ("list", "events", "-A"),
    ]:  # fmt: skip
        assert not can_i(cluster, console, *verb_resource), verb_resource
    # And the one right works, with a token of the chart's ServiceAccount.
    token = cluster.control_plane.service_account_token(NAMESPACE, CONSOLE_SA, hours=1)
    review_object = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": cluster.token("alice")},
    }
    out = cluster.control_plane.kubectl(
        "create",
        "--validate=false",
        "-o",
        "json",
        "-f",
        "-",
        token=token,
        input=json.dumps(review_object),
    )
    assert json.loads(out.stdout)["status"]["user"]["username"] == "alice"


def test_the_operator_holds_its_lease_rights_in_its_namespace_only(installed: Cluster) -> None:
    cluster = installed
    for verb in ("get", "create", "update"):
        assert can_i(cluster, OPERATOR_USER, verb, "leases.coordination.k8s.io", "-n", NAMESPACE)
        assert not can_i(
            cluster, OPERATOR_USER, verb, "leases.coordination.k8s.io", "-n", "kube-system"
        )
    assert not can_i(
        cluster, OPERATOR_USER, "delete", "leases.coordination.k8s.io", "-n", NAMESPACE
    )
    assert not can_i(cluster, OPERATOR_USER, "escalate", "clusterroles.rbac.authorization.k8s.io")
    assert not can_i(cluster, OPERATOR_USER, "bind", "clusterroles.rbac.authorization.k8s.io")


def test_the_team_roles_aggregate_what_reviewers_and_agents_need(installed: Cluster) -> None:
    """No controller manager runs here, so nothing fills the aggregated roles: check that their
    selectors pick the base roles, and what the base roles grant, bound as a team would."""
    cluster = installed
    namespace = cluster.new_namespace()
    for role in ("reviewer", "agent"):
        aggregated = json.loads(
            cluster.kubectl("get", "clusterrole", f"handoff-{role}", "-o", "json").stdout
        )
        selector = aggregated["aggregationRule"]["clusterRoleSelectors"][0]["matchLabels"]
        base = json.loads(
            cluster.kubectl("get", "clusterrole", f"handoff-{role}-base", "-o", "json").stdout
        )
        assert selector.items() <= base["metadata"]["labels"].items()
    agent = f"system:serviceaccount:{namespace}:payments-agent"
    cluster.kubectl(
        "create",
        "rolebinding",
        "agents",
        "-n",
        namespace,
        "--clusterrole=handoff-agent-base",
        f"--serviceaccount={namespace}:payments-agent",
    )
    cluster.kubectl(
        "create",
        "rolebinding",
        "reviewers",
        "-n",
        namespace,
        "--clusterrole=handoff-reviewer-base",
        "--user=carol",
    )
    assert can_i(cluster, agent, "create", "actionrequests.handoff.dev", "-n", namespace)
    assert not can_i(
        cluster,
        agent,
        "patch",
        "actionrequests.handoff.dev",
        "--subresource=status",
        "-n",
        namespace,
    )
    assert not can_i(cluster, agent, "delete", "actionrequests.handoff.dev", "-n", namespace)
    assert can_i(
        cluster,
        "carol",
        "patch",
        "actionrequests.handoff.dev",
        "--subresource=status",
        "-n",
        namespace,
    )
    assert not can_i(
        cluster, "carol", "approve", "agentactionpolicies.handoff.dev", "-n", namespace
    )
    assert not can_i(cluster, "carol", "create", "actionrequests.handoff.dev", "-n", namespace)


@pytest.fixture
def chart_operator(installed: Cluster, redis_server: RedisServer, tmp_path: Path) -> Iterator[Path]:
    """``handoff operator`` with the chart's Deployment arguments, as the chart's ServiceAccount."""
    cluster = installed
    token = cluster.control_plane.service_account_token(NAMESPACE, OPERATOR_SA, hours=1)
    kubeconfig = cluster.control_plane.write_kubeconfig(
        tmp_path / "operator.kubeconfig", {"operator": token}
    )
    deployment = json.loads(
        cluster.kubectl(
            "get", "deployment", f"{FULLNAME}-operator", "-n", NAMESPACE, "-o", "json"
        ).stdout
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    health_port = processes.free_port()
    local = {  # the pod's addresses, on loopback
        "--metrics-address": f"127.0.0.1:{processes.free_port()}",
        "--liveness": f"http://127.0.0.1:{health_port}/healthz",
    }
    args = [
        f"{a.split('=')[0]}={local[a.split('=')[0]]}" if a.split("=")[0] in local else a
        for a in container["args"]
    ]
    assert args[0] == "operator"
    assert "--leader-election" in args
    env = os.environ | {
        "POD_NAMESPACE": NAMESPACE,  # from the downward API in the pod
        "HANDOFF_REDIS_URL": redis_server.url,  # the bundled Redis cannot run without nodes
        "PYTHONUNBUFFERED": "1",
    }
    process = processes.spawn(
        "chart-operator",
        [sys.executable, "-m", "handoff", *args, f"--kubeconfig={kubeconfig}"],
        tmp_path,
        env=env,
    )
    log = tmp_path / "chart-operator.log"

    def healthy() -> bool:
        if process.poll() is not None:
            raise RuntimeError(
                f"the operator exited with {process.returncode}: {log.read_text()[-2000:]}"
            )
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/readyz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    processes.wait_until(healthy, 60, "the operator", log)
    yield log
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def test_the_operator_works_with_nothing_but_the_charts_rbac(
    installed: Cluster, chart_operator: Path
) -> None:
    cluster = installed
    namespace = cluster.new_namespace()
    lease = eventually(
        lambda: cluster.kubectl("get", "lease", "handoff-operator", "-n", NAMESPACE, "-o", "json", check=False),
        timeout=30, what="the Lease",
    )  # fmt: skip
    assert json.loads(lease.stdout)["spec"]["holderIdentity"]
    apply_ready_policy(cluster, policy(namespace))  # it generated the agent's and reviewers' Roles
    tier1 = file(cluster, namespace, "db.query")
    decided = wait_for(cluster, namespace, tier1, "decision.reason", "AutoApproved", timeout=30)
    assert decided["status"]["tier"] == 1
    tier4 = file(cluster, namespace, "payments.charge")
    wait_for(cluster, namespace, tier4, "phase", "AwaitingApproval", timeout=30)
    result = review(cluster, namespace, tier4, "alice")
    assert result.returncode == 0, result.stderr  # the chart's admission policies let alice review
    wait_for(cluster, namespace, tier4, "decision.reason", "HumanApproved", timeout=30)
    eventually(  # written every few seconds, after transitions
        lambda: json.loads(cluster.kubectl("get", "policyreports", "-n", namespace, "-o", "json").stdout)["items"],
        timeout=30, what="the agent's PolicyReport",
    )  # fmt: skip
    # Each line after its "date time,ms" stamp: a stamp's milliseconds can read 403 too.
    forbidden = [
        line
        for line in chart_operator.read_text().splitlines()
        if "forbidden" in (text := _after_stamp(line)).lower() or "403" in text
    ]
    assert forbidden == []


def test_the_console_signs_reviewers_in_with_nothing_but_the_charts_rbac(
    installed: Cluster, tmp_path: Path
) -> None:
    """``handoff console`` with the installed Deployment's arguments, as the chart's console
    ServiceAccount: it checks a reviewer's token with a TokenReview and sets a Secure cookie."""
    cluster = installed
    token = cluster.control_plane.service_account_token(NAMESPACE, CONSOLE_SA, hours=1)
    kubeconfig = cluster.control_plane.write_kubeconfig(
        tmp_path / "console.kubeconfig", {"console": token}
    )
    deployment = json.loads(
        cluster.kubectl(
            "get", "deployment", f"{FULLNAME}-console", "-n", NAMESPACE, "-o", "json"
        ).stdout
    )
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    port = processes.free_port()
    assert "--listen=0.0.0.0:8080" in args
    args = [f"--listen=127.0.0.1:{port}" if a.startswith("--listen=") else a for a in args]
    process = processes.spawn(
        "chart-console", [sys.executable, "-m", "handoff", *args, f"--kubeconfig={kubeconfig}"], tmp_path,
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        processes.wait_until(
            lambda: _http_status(port, "GET", "/healthz")[0] == 200,
            30,
            "the console",
            tmp_path / "chart-console.log",
        )
        status, headers = _http_status(port, "POST", "/login", {"token": cluster.token("alice")})
        assert status == 303, (status, (tmp_path / "chart-console.log").read_text()[-2000:])
        cookie = headers.get("Set-Cookie", "")
        assert "Secure" in cookie
        assert "HttpOnly" in cookie
        assert _http_status(port, "POST", "/login", {"token": "not-a-token"})[0] == 401
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(15)


def test_the_gateway_serves_agents_with_nothing_but_the_charts_rbac(
    installed: Cluster, redis_server: RedisServer, tmp_path: Path
) -> None:
    """``handoff gateway`` with the installed Deployment's arguments, as the chart's gateway
    ServiceAccount: it lists the MCPServers and requests (healthy), checks an agent's token with
    a TokenReview, and may not read what the operator or reviewers may."""
    cluster = installed
    token = cluster.control_plane.service_account_token(NAMESPACE, GATEWAY_SA, hours=1)
    kubeconfig = cluster.control_plane.write_kubeconfig(
        tmp_path / "gateway.kubeconfig", {"gateway": token}
    )
    deployment = json.loads(cluster.kubectl(
        "get", "deployment", f"{FULLNAME}-gateway", "-n", NAMESPACE, "-o", "json").stdout)  # fmt: skip
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    port = processes.free_port()
    assert args[:2] == ["gateway", "--listen=0.0.0.0:8090"]
    args = [f"--listen=127.0.0.1:{port}" if a.startswith("--listen=") else a for a in args]
    process = processes.spawn(
        "chart-gateway", [sys.executable, "-m", "handoff", *args, f"--kubeconfig={kubeconfig}"], tmp_path,
        env=os.environ | {"PYTHONUNBUFFERED": "1", "HANDOFF_GATEWAY_REDIS_URL": redis_server.url},
    )  # fmt: skip
    try:
        processes.wait_until(lambda: _http_status(port, "GET", "/healthz")[0] == 200, 30,
                             "the gateway", tmp_path / "chart-gateway.log")  # fmt: skip
        namespace = cluster.new_namespace()
        agent = cluster.token(f"{namespace}/payments-agent")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}})
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                   "Authorization": f"Bearer {agent}", "MCP-Protocol-Version": "2025-11-25"}  # fmt: skip
        try:
            connection.request("POST", "/mcp", body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read().decode()
        finally:
            connection.close()
        assert response.status == 200, answer
        assert '"tools":[]' in answer.replace(" ", "")
        assert _http_status(port, "GET", "/mcp")[0] == 401
        log = (tmp_path / "chart-gateway.log").read_text().lower()
        assert "forbidden" not in log
        assert " 403" not in log
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(15)
    gateway = GATEWAY_USER
    for verb_resource in [
        ("create", "actionrequests.handoff.dev", "-n", "agents"), ("list", "secrets", "-A"),
        ("get", "secrets", "-A"), ("get", "secrets", "-n", NAMESPACE),
        ("patch", "agentactionpolicies.handoff.dev", "-n", "agents"), ("update", "actionrequests.handoff.dev", "-n", "agents"),
        ("create", "subjectaccessreviews.authorization.k8s.io"), ("impersonate", "serviceaccounts", "-A"),
    ]:  # fmt: skip
        assert not can_i(cluster, gateway, *verb_resource), verb_resource


def _http_status(
    port: int, method: str, path: str, form: dict[str, str] | None = None
) -> tuple[int, dict[str, str]]:
    """One request, no redirect followed: the status and the headers (0 when nobody answers)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        body = urllib.parse.urlencode(form) if form is not None else None
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if form is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status, dict(response.getheaders())
    except OSError:
        return 0, {}
    finally:
        connection.close()


def test_helm_upgrade_updates_the_crds_and_uninstall_keeps_them(
    installed: Cluster, tmp_path: Path
) -> None:
    """Helm never upgrades a chart's crds/ folder; these CRDs are templates, so it does."""
    cluster = installed
    chart = tmp_path / "handoff"
    shutil.copytree(CHART, chart)
    crd_file = chart / "files" / "crds" / "handoff.dev_actionrequests.yaml"
    crd = yaml.safe_load(crd_file.read_text())
    crd["spec"]["versions"][0]["additionalPrinterColumns"].append(
        {"name": "Upgraded", "type": "string", "jsonPath": ".spec.summary", "priority": 1}
    )
    crd_file.write_text(yaml.safe_dump(crd))
    kubeconfig = admin_kubeconfig(cluster)
    helm(
        "upgrade",
        RELEASE,
        str(chart),
        f"--namespace={NAMESPACE}",
        "--reuse-values",
        kubeconfig=kubeconfig,
    )
    live = json.loads(
        cluster.kubectl("get", "crd", "actionrequests.handoff.dev", "-o", "json").stdout
    )
    assert "Upgraded" in [
        c["name"] for c in live["spec"]["versions"][0]["additionalPrinterColumns"]
    ]
    password = cluster.kubectl(
        "get", "secret", f"{FULLNAME}-redis", "-n", NAMESPACE, "-o", "jsonpath={.data.password}"
    ).stdout

    helm("uninstall", RELEASE, f"--namespace={NAMESPACE}", kubeconfig=kubeconfig)
    for crd_name in ("actionrequests.handoff.dev", "agentactionpolicies.handoff.dev"):
        cluster.kubectl("get", "crd", crd_name)  # kept, and with them every request and policy
    assert (
        cluster.kubectl(
            "get", "deployment", f"{FULLNAME}-operator", "-n", NAMESPACE, check=False
        ).returncode
        != 0
    )
    kept = cluster.kubectl(
        "get", "secret", f"{FULLNAME}-redis", "-n", NAMESPACE, "-o", "jsonpath={.data.password}"
    ).stdout
    assert kept == password  # a reinstall keeps Redis's password (and the agents' users in it)


def _after_stamp(line: str) -> str:
    """A log line without its leading "2026-11-29 23:03:58,403" (the logging module's asctime)."""
    return re.sub(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} ", "", line)
