"""The Helm chart, rendered with the helm that `make helm` builds, against a real control plane.

The chart installs cluster-wide objects (CRDs, admission policies, ClusterRoles) that the session's
cluster already has from the dev environment, so this module starts a bare control plane of its
own and lets the chart install Handoff there. No pod can run (no nodes, no controllers), so the
operator runs here as a process, signed in with a token of the chart's ServiceAccount and with the
arguments of the chart's Deployment: what it manages to do, the chart's RBAC allows.
"""

import asyncio
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from handoff import paths
from handoff.adapters.redis_acl import GATEWAY_RULES, RedisAdmin
from handoff.devenv import processes
from handoff.devenv.manifests import (
    console_objects,
    gateway_objects,
    operator_objects,
    slack_objects,
)
from handoff.devenv.redis import RedisServer
from handoff.testing.cluster import Cluster, eventually

from tests.unit.test_chart_sources import dashboard_queries_list, defined_metrics, series_names

from .helpers import apply_ready_policy, file, policy, review, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "handoff"
HELM = paths.bin_dir() / "helm"
RELEASE, NAMESPACE = "oversight", "oversight-system"  # not the defaults: names must follow them
FULLNAME = f"{RELEASE}-handoff"
OPERATOR_SA, CONSOLE_SA = f"{FULLNAME}-operator", f"{FULLNAME}-console"
OPERATOR_USER = f"system:serviceaccount:{NAMESPACE}:{OPERATOR_SA}"
GATEWAY_SA = f"{FULLNAME}-gateway"
# helm's HOME (its cache, the API server's discovery cache): one per pytest-xdist worker.
HELM_HOME = ROOT / ".handoff" / f"helm-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
GATEWAY_USER = f"system:serviceaccount:{NAMESPACE}:{GATEWAY_SA}"
EVERYTHING_ON = [
    "metrics.serviceMonitor.enabled=true",
    "metrics.prometheusRule.enabled=true",
    "metrics.grafanaDashboard.enabled=true",
    "networkPolicy.enabled=true",
    "console.ingress.enabled=true",
    "console.ingress.host=handoff.example.com",
    "console.ingress.tlsSecretName=handoff-tls",
]


def helm(*args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    if not HELM.exists():
        pytest.fail(f"no helm in {HELM}: run 'make helm' first")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(HELM_HOME),
        "HELM_CACHE_HOME": str(HELM_HOME / "helm-cache"),
    }
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    result = subprocess.run(
        [str(HELM), *args], capture_output=True, text=True, check=False, env=env, timeout=120
    )
    assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def render(
    *settings: str,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    chart: Path = CHART,
    values: Path | None = None,
) -> list[dict[str, Any]]:
    flags = [f"--set={s}" for s in settings] + ([f"--values={values}"] if values else [])
    out = helm("template", release, str(chart), f"--namespace={namespace}", *flags).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def rule_set(rules: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    """RBAC rules as (group, resource, verb, name) tuples: equal sets grant the same."""
    return {
        (group, resource, verb, name)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule["verbs"]
        for name in rule.get("resourceNames") or ["*"]
    }


def without_chart_metadata(document: dict[str, Any]) -> dict[str, Any]:
    """A rendered object minus the labels and keep annotation the chart adds."""
    copy = json.loads(json.dumps(document))
    metadata = copy["metadata"]
    metadata["labels"] = {
        k: v
        for k, v in metadata.get("labels", {}).items()
        if not k.startswith(("app.kubernetes.io/", "helm.sh/"))
    }
    metadata["annotations"] = {
        k: v for k, v in metadata.get("annotations", {}).items() if k != "helm.sh/resource-policy"
    }
    for key in ("labels", "annotations"):
        if not metadata[key]:
            del metadata[key]
    return dict(copy)


def source_documents(*globs: str) -> list[dict[str, Any]]:
    return [
        d
        for pattern in globs
        for path in sorted((ROOT / "crds").glob(pattern))
        for d in yaml.safe_load_all(path.read_text())
        if d
    ]


# --- rendering, no cluster needed ---------------------------------------------------------------


@pytest.mark.parametrize(
    "settings", [[], EVERYTHING_ON, ["redis.mode=external", "redis.external.existingSecret=r"]]
)
def test_helm_lint_is_clean(settings: list[str]) -> None:
    result = helm("lint", "--strict", str(CHART), *(f"--set={s}" for s in settings))
    assert "0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout
    assert "[ERROR]" not in result.stdout


def test_the_rendered_crds_and_admission_policies_are_those_of_crds() -> None:
    rendered = render()
    for source in source_documents("*.yaml", "thirdparty/*.yaml"):
        chart_copy = find(rendered, source["kind"], source["metadata"]["name"])
        assert chart_copy["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert without_chart_metadata(chart_copy) == source
    for source in source_documents("admission/*.yaml"):
        chart_copy = without_chart_metadata(
            find(rendered, source["kind"], source["metadata"]["name"])
        )
        expected = json.loads(
            json.dumps(source)
            .replace("system:serviceaccount:handoff-system:handoff-operator", OPERATOR_USER)
            .replace("system:serviceaccount:handoff-system:handoff-gateway", GATEWAY_USER)
        )
        assert chart_copy == expected
    text = json.dumps(rendered)
    assert "handoff-system:handoff-operator" not in text
    assert "handoff-system:handoff-gateway" not in text
    assert text.count(GATEWAY_USER) >= 2  # the reviews matchCondition and the gateway's policy
    assert (
        text.count(OPERATOR_USER) >= 2
    )  # at least the filing exception and the reviews matchCondition


def test_crds_and_admission_can_be_left_to_another_tool() -> None:
    kinds = {
        o["kind"]
        for o in render("crds.install=false", "crds.policyReports=false", "admission.install=false")
    }
    assert "CustomResourceDefinition" not in kinds
    assert not any("AdmissionPolicy" in k for k in kinds)
    assert "Deployment" in kinds


def test_the_slack_bridge_may_impersonate_only_the_listed_identities() -> None:
    """Rendered from values, the Slack RBAC is manifests.slack_objects's; no list, no rule."""
    rendered = render(
        "console.slack.enabled=true", "console.slack.impersonate.users={alice,carol}",
        "console.slack.impersonate.groups={payments-approvers}",
    )  # fmt: skip
    dev = {o["kind"]: o for o in slack_objects(["alice", "carol"], ["payments-approvers"])}
    for kind in ("ClusterRole", "Role"):
        chart = find(rendered, kind, f"{FULLNAME}-console-slack")
        assert rule_set(chart["rules"]) == rule_set(dev[kind]["rules"])
        assert ("", "users", "impersonate", "*") not in rule_set(chart["rules"])
    none = render("console.slack.enabled=true", "console.slack.impersonate.users={alice}")
    rules = find(none, "ClusterRole", f"{FULLNAME}-console-slack")["rules"]
    assert rule_set(rules) == {("", "users", "impersonate", "alice")}  # no groups rule at all
    console = find(rendered, "Deployment", f"{FULLNAME}-console")["spec"]["template"]["spec"]
    env = {e["name"]: e for e in console["containers"][0]["env"]}
    assert (
        env["HANDOFF_SLACK_SIGNING_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == "handoff-slack"
    )
    assert not any("xox" in a or "secret" in a for a in console["containers"][0]["args"])
    assert not any("slack" in o["metadata"]["name"] for o in render() if o["kind"].endswith("Role"))


def test_the_operators_and_consoles_rbac_is_the_dev_environments() -> None:
    """The chart and operator/handoff/devenv/manifests.py must not drift apart."""
    rendered = render()
    dev = {(o["kind"], o["metadata"]["name"]): o for o in operator_objects() + console_objects()}
    dev_operator_role = dev[("ClusterRole", "handoff-operator")]
    assert rule_set(find(rendered, "ClusterRole", f"{FULLNAME}-operator")["rules"]) == rule_set(
        dev_operator_role["rules"]
    )
    dev_leases = next(o for o in dev.values() if o["kind"] == "Role")
    chart_leases = next(o for o in rendered if o["kind"] == "Role")
    assert chart_leases["metadata"]["namespace"] == NAMESPACE
    assert rule_set(chart_leases["rules"]) == rule_set(dev_leases["rules"])
    assert rule_set(find(rendered, "ClusterRole", f"{FULLNAME}-console")["rules"]) == rule_set(
        dev[("ClusterRole", "handoff-console")]["rules"]
    )
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        for binding in (o for o in rendered if o["kind"] == kind):
            account = OPERATOR_SA if "operator" in binding["metadata"]["name"] else CONSOLE_SA
            assert binding["subjects"] == [
                {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}
            ]
    # The executor's kinds are a value: another list changes exactly those rules.
    custom = render(
        "operator.executor.rules[0].apiGroups={batch}",
        "operator.executor.rules[0].resources={cronjobs}",
    )
    custom_rules = rule_set(find(custom, "ClusterRole", f"{FULLNAME}-operator")["rules"])
    assert ("batch", "cronjobs", "patch", "*") in custom_rules
    assert ("apps", "deployments", "patch", "*") not in custom_rules


def test_the_gateways_rbac_is_the_dev_environments_and_only_when_enabled() -> None:
    assert not [o for o in render() if "gateway" in o["metadata"]["name"] and o["kind"] != "ValidatingAdmissionPolicy"
                and o["kind"] != "ValidatingAdmissionPolicyBinding"]  # fmt: skip
    rendered = render("gateway.enabled=true")
    dev = {(o["kind"], o["metadata"]["name"]): o for o in gateway_objects()}
    assert rule_set(find(rendered, "ClusterRole", f"{FULLNAME}-gateway")["rules"]) == rule_set(
        dev[("ClusterRole", "handoff-gateway")]["rules"]
    )
    binding = find(rendered, "ClusterRoleBinding", f"{FULLNAME}-gateway")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": GATEWAY_SA, "namespace": NAMESPACE}
    ]
    (gateway,) = [w for w in workloads(rendered) if w["metadata"]["name"] == f"{FULLNAME}-gateway"]
    assert gateway["spec"]["template"]["spec"]["serviceAccountName"] == GATEWAY_SA


def test_without_leader_election_one_replica_is_recreated_not_rolled() -> None:
    operator = find(
        render("operator.leaderElection.enabled=false"), "Deployment", f"{FULLNAME}-operator"
    )
    assert operator["spec"]["replicas"] == 1
    assert operator["spec"]["strategy"]["type"] == "Recreate"
    assert "--leader-election" not in operator["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [
        o
        for o in render("operator.leaderElection.enabled=false")
        if o["kind"] == "PodDisruptionBudget"
    ]


def test_a_drain_leaves_a_standby_operator() -> None:
    rendered = render()
    budget = find(rendered, "PodDisruptionBudget", f"{FULLNAME}-operator")
    pods = find(rendered, "Deployment", f"{FULLNAME}-operator")["spec"]["template"]["metadata"]
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"].items() <= pods["labels"].items()
    assert not [o for o in render("operator.replicas=1") if o["kind"] == "PodDisruptionBudget"]


def test_shards_share_the_service_account_and_each_has_its_own_lease(tmp_path: Path) -> None:
    values = tmp_path / "shards.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "operator": {
                    "shards": [
                        {"name": "a", "namespaceSelector": "handoff.dev/shard=a"},
                        {"name": "b", "namespaceSelector": "handoff.dev/shard in (b,c)"},
                    ]
                }
            }
        )
    )
    rendered = render(values=values)
    deployments = {
        o["metadata"]["name"]: o["spec"]
        for o in rendered
        if o["kind"] == "Deployment" and "operator" in o["metadata"]["name"]
    }
    assert set(deployments) == {f"{FULLNAME}-operator-a", f"{FULLNAME}-operator-b"}
    args = {
        name: spec["template"]["spec"]["containers"][0]["args"]
        for name, spec in deployments.items()
    }
    assert "--namespace-selector=handoff.dev/shard=a" in args[f"{FULLNAME}-operator-a"]
    assert "--namespace-selector=handoff.dev/shard in (b,c)" in args[f"{FULLNAME}-operator-b"]
    leases = {
        next(a for a in argv if a.startswith("--leader-election-name=")) for argv in args.values()
    }
    assert leases == {
        "--leader-election-name=handoff-operator-a",
        "--leader-election-name=handoff-operator-b",
    }
    accounts = {spec["template"]["spec"]["serviceAccountName"] for spec in deployments.values()}
    assert accounts == {OPERATOR_SA}  # the one user the admission policies let write status
    selectors = [spec["selector"]["matchLabels"] for spec in deployments.values()]
    assert selectors[0] != selectors[1]  # each Deployment owns only its own pods
    single = find(
        render("operator.namespaces={agents,billing}"), "Deployment", f"{FULLNAME}-operator"
    )
    single_args = single["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=agents" in single_args
    assert "--namespace=billing" in single_args
    assert not any(a.startswith("--namespace-selector") for a in single_args)


def workloads(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]


def test_every_container_is_restricted_with_resources_and_probes() -> None:
    found = workloads(render("gateway.enabled=true"))
    assert {o["metadata"]["name"] for o in found} == {
        f"{FULLNAME}-operator",
        f"{FULLNAME}-console",
        f"{FULLNAME}-gateway",
        f"{FULLNAME}-redis",
    }
    for workload in found:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] > 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert set(container["resources"]) == {"requests", "limits"}
            assert {"cpu", "memory"} <= set(container["resources"]["limits"])
            assert container["livenessProbe"]
            assert container["readinessProbe"]


def test_the_operator_probes_its_own_health_endpoint() -> None:
    """/healthz fails when the watches stop or the Lease goes unrenewed (the operator's own check):
    the probes must point at the port --liveness serves."""
    operator = find(render(), "Deployment", f"{FULLNAME}-operator")
    container = operator["spec"]["template"]["spec"]["containers"][0]
    liveness = next(a for a in container["args"] if a.startswith("--liveness="))
    port = int(liveness.rsplit(":", 1)[1].split("/")[0])
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named[container["livenessProbe"]["httpGet"]["port"]] == port
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_secrets_come_from_secret_references_never_from_values() -> None:
    rendered = render("redis.mode=external", "redis.external.existingSecret=my-redis")
    assert not [o for o in rendered if o["kind"] == "Secret"], "the chart must not create any"
    operator = find(rendered, "Deployment", f"{FULLNAME}-operator")
    env = {e["name"]: e for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["HANDOFF_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "my-redis",
        "key": "url",
    }
    assert not any(o["kind"] == "StatefulSet" for o in rendered)
    bundled = render()
    first = find(bundled, "Secret", f"{FULLNAME}-redis")["stringData"]
    second = find(render(), "Secret", f"{FULLNAME}-redis")["stringData"]
    assert first["password"] != second["password"], "random, not a default password"
    assert len(first["password"]) >= 32
    redis = find(bundled, "ConfigMap", f"{FULLNAME}-redis")["data"]["redis.conf"]
    start = find(bundled, "ConfigMap", f"{FULLNAME}-redis")["data"]["start.sh"]
    assert f'user handoff-gateway on >${{GATEWAY_PASSWORD}} {" ".join(GATEWAY_RULES)}"' in start
    gateway = find(render("gateway.enabled=true"), "Deployment", f"{FULLNAME}-gateway")
    env = {e["name"]: e for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["HANDOFF_GATEWAY_REDIS_URL"]["valueFrom"]["secretKeyRef"]["key"] == "gateway-url"
    assert "appendonly yes" in redis
    assert "aclfile /data/users.acl" in redis
    statefulset = find(bundled, "StatefulSet", f"{FULLNAME}-redis")
    assert statefulset["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"


def test_monitoring_objects_only_when_asked_and_consistent() -> None:
    assert not {"ServiceMonitor", "PrometheusRule", "NetworkPolicy", "Ingress"} & {
        o["kind"] for o in render()
    }
    rendered = render(*EVERYTHING_ON)
    monitor = find(rendered, "ServiceMonitor", f"{FULLNAME}-operator")
    service = find(rendered, "Service", f"{FULLNAME}-operator-metrics")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    rules = find(rendered, "PrometheusRule", f"{FULLNAME}-operator")["spec"]["groups"][0]["rules"]
    alerts = {r["alert"]: r for r in rules}
    assert set(alerts) >= {
        "HandoffRequestsNearDeadlineUnreviewed", "HandoffExpiryRateRising",
        "HandoffNotificationsFailing", "HandoffFastApprovalRateHigh",
    }  # fmt: skip
    for name, alert in alerts.items():
        assert alert["annotations"]["runbook_url"].endswith(f"docs/runbooks.md#{name.lower()}")
        assert (
            "{{ $labels" in alert["annotations"]["summary"]
            or "$" not in alert["annotations"]["summary"]
        )
    ingress = find(rendered, "Ingress", f"{FULLNAME}-console")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    console_service = find(rendered, "Service", backend["name"])
    assert backend["port"]["name"] in {p["name"] for p in console_service["spec"]["ports"]}
    assert ingress["spec"]["tls"] == [
        {"hosts": ["handoff.example.com"], "secretName": "handoff-tls"}
    ]
    dashboard = find(rendered, "ConfigMap", f"{FULLNAME}-dashboard")
    assert json.loads(dashboard["data"]["handoff.json"])["uid"] == "handoff-overview"


GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$namespace": ".*"}


def promql_check(expressions: list[str]) -> list[dict[str, Any]]:
    binary = paths.bin_dir() / "promql-check"
    if not binary.exists():
        pytest.fail(f"no {binary}: run 'make promql-check' first")
    result = subprocess.run(
        [str(binary)], input=json.dumps(expressions), capture_output=True, text=True, check=True
    )
    return list(json.loads(result.stdout))


def test_the_alerts_and_the_dashboard_are_valid_promql_on_defined_metrics() -> None:
    """Prometheus's own parser reads every query; the metric names come from its syntax tree."""
    rules = find(render(*EVERYTHING_ON), "PrometheusRule", f"{FULLNAME}-operator")
    expressions = [rule["expr"] for rule in rules["spec"]["groups"][0]["rules"]]
    for query in dashboard_queries_list():
        if query.startswith("label_values("):  # Grafana's own function around a metric name
            continue
        expression = query
        for variable, value in GRAFANA_VARIABLES.items():
            expression = expression.replace(variable, value)
        expressions.append(expression)
    assert len(expressions) > 10
    results = promql_check(expressions)
    assert [(r["expr"], r["error"]) for r in results if r["error"]] == []
    used = {name for r in results for name in r["metrics"]}
    assert used - series_names(defined_metrics()) == set()
    # The checker does reject what Prometheus would.
    broken = promql_check(["rate(handoff_pending_requests[5m]", 'sum({tier="4"})'])
    assert all(r["error"] for r in broken)


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


@dataclass
class ChartRedis:
    """The bundled Redis's command, environment and URLs, with the pod's paths and port local."""

    command: list[str]
    env: dict[str, str]
    admin_url: str
    console_url: str
    gateway_url: str
    data: Path
    port: int


def chart_redis(folder: Path) -> ChartRedis:
    rendered = render()
    config = find(rendered, "ConfigMap", f"{FULLNAME}-redis")["data"]
    secret = find(rendered, "Secret", f"{FULLNAME}-redis")["stringData"]
    statefulset = find(rendered, "StatefulSet", f"{FULLNAME}-redis")
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    data, etc = folder / "data", folder / "etc"
    data.mkdir()
    etc.mkdir()
    port = processes.free_port()

    def local(text: str) -> str:
        text = text.replace(mounts["config"], str(etc)).replace(mounts["data"], str(data))
        return text.replace("port 6379", f"port {port}").replace("bind * -::*", "bind 127.0.0.1")

    for name, text in config.items():
        (etc / name).write_text(local(text))
    service = f"{FULLNAME}-redis.{NAMESPACE}.svc:6379"
    return ChartRedis(
        command=[local(part) for part in container["command"]],
        env={
            "PATH": os.environ["PATH"],
            "REDIS_PASSWORD": secret["password"],
            "CONSOLE_PASSWORD": secret["console-password"],
            "GATEWAY_PASSWORD": secret["gateway-password"],
        },
        admin_url=secret["url"].replace(service, f"127.0.0.1:{port}"),
        console_url=secret["console-url"].replace(service, f"127.0.0.1:{port}"),
        gateway_url=secret["gateway-url"].replace(service, f"127.0.0.1:{port}"),
        data=data,
        port=port,
    )


def test_the_bundled_redis_keeps_its_data_and_users_across_restarts(tmp_path: Path) -> None:
    """The chart's redis.conf and start script, run with this machine's redis-server: the
    passwords come from the Secret, the append-only file and the ACL file are on the volume, and
    the agents' users the operator saves survive a restart."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is missing: bash scripts/services.sh")
    chart = chart_redis(tmp_path)

    def start() -> subprocess.Popen[bytes]:
        server = subprocess.Popen(
            chart.command, env=chart.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        with redis.Redis.from_url(chart.admin_url) as probe:
            eventually(lambda: server.poll() is None and _pings(probe), 15, "the chart's Redis")
        return server

    server = start()
    try:
        with redis.Redis.from_url(chart.admin_url) as admin:
            admin.xadd("handoff:audit", {"event": "Approved"})
        agent_url = asyncio.run(_ensure_agent(RedisAdmin(chart.admin_url)))
        with redis.Redis.from_url(chart.console_url) as console:
            assert len(console.xrange("handoff:audit")) == 1
            with pytest.raises(redis.exceptions.NoPermissionError):
                console.set("handoff:audit:x", "1")
        with redis.Redis.from_url(chart.gateway_url) as gateway:  # its own keys, nothing else
            gateway.set("handoff:gateway:salt", "x", nx=True)
            for command in (("XRANGE", "handoff:audit", "-", "+"), ("GET", "handoff:state:a:b:c"),
                            ("ACL", "LIST")):  # fmt: skip
                with pytest.raises(redis.exceptions.NoPermissionError):
                    gateway.execute_command(*command)
    finally:
        server.terminate()
        server.wait(15)
    assert list(chart.data.glob("appendonly*")), "no append-only file on the volume"

    server = start()
    try:
        with redis.Redis.from_url(chart.admin_url) as admin:
            assert admin.xlen("handoff:audit") == 1
        with redis.Redis.from_url(agent_url) as agent:
            agent.execute_command(
                "SETEX", "handoff:state:agents:payments-agent:1", 60, "x"
            )  # its user is back
            with pytest.raises(redis.exceptions.NoPermissionError):
                agent.xrange("handoff:audit")
        with (
            redis.Redis(host="127.0.0.1", port=chart.port) as anonymous,
            pytest.raises(redis.exceptions.AuthenticationError),
        ):
            anonymous.ping()
    finally:
        server.terminate()
        server.wait(15)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except (OSError, redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError):
        return False


async def _ensure_agent(admin: RedisAdmin) -> str:
    user, saved = await admin.ensure_agent("agents", "payments-agent", "agent-password")
    assert saved, "ACL SAVE failed: the chart's Redis has no aclfile"
    return admin.url_for(user, "agent-password")


def _after_stamp(line: str) -> str:
    """A log line without its leading "2026-11-29 23:03:58,403" (the logging module's asctime)."""
    return re.sub(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} ", "", line)
