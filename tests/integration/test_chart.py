"""The Helm chart, rendered with the helm that `make helm` builds: what it renders equals the
sources (crds/, the dev environment's RBAC), every workload is restricted, secrets come from
references, the alerts and dashboard are valid PromQL, and the bundled Redis's own start script
keeps its data and users across restarts. test_chart_install.py installs it in a control plane.
"""

import asyncio
import json
import os
import shutil
import subprocess
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
from handoff.testing.cluster import eventually

from tests.unit.test_chart_sources import dashboard_queries_list, defined_metrics, series_names

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
    find,
    helm,
    render,
    rule_set,
    source_documents,
    without_chart_metadata,
    workloads,
)

pytestmark = pytest.mark.integration

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
    second = find(render(fresh=True), "Secret", f"{FULLNAME}-redis")["stringData"]
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
