"""The Kubernetes executor: Handoff changes Deployments for agents that may not, shows reviewers
a dry-run diff first, and puts things back on rollback (from the console and from kubectl)."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from handoff.devenv.environment import console_reader
from handoff.devenv.redis import RedisServer
from handoff.testing.cluster import Cluster, ConsoleProcess, OperatorProcess, eventually
from playwright.sync_api import Browser

from .helpers import AGENT, apply_ready_policy, policy, wait_for

pytestmark = pytest.mark.integration
PLUGIN = str(Path(sys.executable).parent / "kubectl-handoff")


def deployment(ns: str) -> dict[str, Any]:
    labels = {"app": "web"}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}},
    }  # fmt: skip


@pytest.fixture
def scene(cluster: Cluster, operator: OperatorProcess, namespace: str) -> str:
    cluster.apply(deployment(namespace))
    # alice may read (not change) the Deployment: her tools show her the live diff. bob may
    # not: his show the change as the request asks for it. The agent may read neither.
    rbac = "rbac.authorization.k8s.io"
    cluster.apply(
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "Role",
            "metadata": {"name": "read-web", "namespace": namespace},
            "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}],
        }
    )
    cluster.apply({"apiVersion": f"{rbac}/v1", "kind": "RoleBinding", "metadata": {"name": "read-web", "namespace": namespace},
                   "roleRef": {"apiGroup": rbac, "kind": "Role", "name": "read-web"},
                   "subjects": [{"kind": "User", "apiGroup": rbac, "name": "alice"}]})  # fmt: skip
    document = policy(
        namespace,
        executors={"kubernetes": {"kinds": ["apps/v1/Deployment"]}},
        rules=[
            {"name": "scale", "actions": ["kubernetes.scale"], "tier": 2},
            {"name": "change", "actions": ["kubernetes.patch"], "tier": 4},
        ],
        tiers={"tier4": {"decisionWindow": "5m", "approvals": 1}},  # time to read it twice
    )
    apply_ready_policy(cluster, document)
    return namespace


def propose(
    cluster: Cluster, ns: str, action: str, parameters: dict[str, Any], rollback: str
) -> str:
    document = {
        "apiVersion": "handoff.dev/v1alpha1", "kind": "ActionRequest",
        "metadata": {"generateName": "kube-", "namespace": ns},
        "spec": {"agent": AGENT, "action": action, "execution": "Kubernetes", "target": "deployment/web",
                 "parameters": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", **parameters},
                 "summary": f"{action} web", "rollback": {"description": rollback}},
    }  # fmt: skip
    return str(json.loads(cluster.create(document, who=f"{ns}/{AGENT}").stdout)["metadata"]["name"])


def web(cluster: Cluster, ns: str) -> dict[str, Any]:
    return cluster.get("deployment", "web", ns)


def test_scale_is_applied_by_handoff_and_rolled_back_from_the_console(
    cluster: Cluster, scene: str, redis_server: RedisServer, browser: Browser, tmp_path: Path
) -> None:
    ns = scene
    direct = cluster.kubectl(
        "scale", "deployment", "web", "--replicas=5", "-n", ns, who=f"{ns}/{AGENT}", check=False
    )
    assert direct.returncode != 0
    assert "forbidden" in direct.stderr

    name = propose(cluster, ns, "kubernetes.scale", {"replicas": 3}, "scale back to 1")
    wait_for(cluster, ns, name, "decision.reason", "Logged")
    executed = wait_for(cluster, ns, name, "phase", "Executed")
    assert "scale Deployment/web" in executed["status"]["execution"]["message"]
    assert web(cluster, ns)["spec"]["replicas"] == 3

    console = ConsoleProcess(
        cluster, tmp_path, [ns], console_reader(redis_server, tmp_path)
    ).start()
    try:
        page = browser.new_page()
        page.goto(f"{console.url}/login")
        page.fill("#token", cluster.token("alice"))
        page.click("button[type=submit]")
        page.wait_for_url("**/queue")
        page.goto(f"{console.url}/requests/{ns}/{name}")
        page.click("button:has-text('Roll back')")
        page.wait_for_selector("p.notice")
        assert "Your rollback is recorded" in page.inner_text("p.notice")
        page.close()
    finally:
        console.stop()
    rolled = wait_for(cluster, ns, name, "phase", "RolledBack")
    assert rolled["status"]["rollback"]["by"] == "alice"
    assert web(cluster, ns)["spec"]["replicas"] == 1


WIDE = os.environ | {"COLUMNS": "200"}  # the plugin wraps long lines at the terminal's width
LIVE_DIFF = 'spec.template.spec.containers[0].image: "nginx:1.25" -> "nginx:1.27"'
IMAGE_PATCH = {
    "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}
}


def test_image_change_shows_its_live_diff_to_reviewers_then_is_applied_and_rolled_back(
    cluster: Cluster, scene: str, tmp_path: Path
) -> None:
    ns = scene
    name = propose(
        cluster, ns, "kubernetes.patch", {"patch": IMAGE_PATCH}, "put the old image back"
    )
    waiting = wait_for(cluster, ns, name, "phase", "AwaitingApproval")
    preview = wait_for(cluster, ns, name, "preview", _any_preview(cluster, ns, name))["status"][
        "preview"
    ]
    # What every reader of the request sees: the change as the spec asks for it, no live value.
    assert preview.splitlines() == [
        f"patch Deployment {ns}/web (a JSON merge patch), setting:",
        'spec.template.spec.containers = [{"image": "nginx:1.27", "name": "web"}]',
    ]
    assert waiting["status"]["tier"] == 4
    assert web(cluster, ns)["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.25"

    people = str(
        cluster.control_plane.write_kubeconfig(
            tmp_path / "people.kubeconfig",
            {"alice": cluster.token("alice"), "bob": cluster.token("bob")},
            ns,
        )
    )
    shown = subprocess.run(
        [PLUGIN, "--kubeconfig", people, "--context", "alice", "show", name],
        capture_output=True, text=True, check=True, env=WIDE,
    )  # fmt: skip
    assert LIVE_DIFF in shown.stdout  # read as alice, who may get the Deployment
    unseen = subprocess.run(
        [PLUGIN, "--kubeconfig", people, "--context", "bob", "show", name],
        capture_output=True, text=True, check=True, env=WIDE,
    )  # fmt: skip
    assert f"You may not read Deployment {ns}/web, so its current values are not shown" in (
        unseen.stdout
    )
    assert "nginx:1.25" not in unseen.stdout
    assert "nginx:1.27" in unseen.stdout
    approve = subprocess.run([PLUGIN, "--kubeconfig", people, "--context", "alice", "approve", name,
                              "--ack", "what,impact,rollback"],
                             capture_output=True, text=True, check=False, env=WIDE)  # fmt: skip
    assert approve.returncode == 0, approve.stderr
    assert LIVE_DIFF in approve.stdout  # shown before it asks
    wait_for(cluster, ns, name, "phase", "Executed")
    assert web(cluster, ns)["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"

    undo = subprocess.run(
        [PLUGIN, "--kubeconfig", people, "--context", "alice", "rollback", name],
        capture_output=True,
        text=True,
        check=False,
    )
    assert undo.returncode == 0, undo.stderr
    rolled = wait_for(cluster, ns, name, "phase", "RolledBack")
    assert web(cluster, ns)["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.25"
    assert (
        "restored spec.template.spec.containers[0].image as before"
        in rolled["status"]["rollback"]["message"]
    )


def test_the_console_shows_the_live_diff_to_the_reviewer_only(
    cluster: Cluster, scene: str, redis_server: RedisServer, browser: Browser, tmp_path: Path
) -> None:
    ns = scene
    name = propose(
        cluster, ns, "kubernetes.patch", {"patch": IMAGE_PATCH}, "put the old image back"
    )
    wait_for(cluster, ns, name, "preview", _any_preview(cluster, ns, name))
    as_agent = cluster.kubectl("get", "actionrequest", name, "-n", ns, "-o", "json",
                               who=f"{ns}/{AGENT}").stdout  # fmt: skip
    assert "nginx:1.25" not in as_agent  # the agent reads its request: no live value in it
    console = ConsoleProcess(
        cluster, tmp_path, [ns], console_reader(redis_server, tmp_path)
    ).start()
    try:
        seen = {}
        for who in ("alice", "bob"):
            page = browser.new_page()
            page.goto(f"{console.url}/login")
            page.fill("#token", cluster.token(who))
            page.click("button[type=submit]")
            page.wait_for_url("**/queue")
            page.goto(f"{console.url}/requests/{ns}/{name}")
            seen[who] = page.inner_text("pre.change")
            page.close()
    finally:
        console.stop()
    assert LIVE_DIFF in seen["alice"]
    assert (
        f"bob may not read Deployment {ns}/web, so its current values are not shown" in seen["bob"]
    )
    assert "nginx:1.25" not in seen["bob"]
    assert "nginx:1.27" in seen["bob"]


def _any_preview(cluster: Cluster, ns: str, name: str) -> str:
    """wait_for compares with a value: poll until a preview exists, then compare it with itself."""
    return str(
        eventually(
            lambda: cluster.get("actionrequest", name, ns)["status"].get("preview"),
            what="a preview",
        )
    )


def test_kinds_the_policy_does_not_allow_are_refused(cluster: Cluster, scene: str) -> None:
    document = {
        "apiVersion": "handoff.dev/v1alpha1", "kind": "ActionRequest",
        "metadata": {"generateName": "kube-", "namespace": scene},
        "spec": {"agent": AGENT, "action": "kubernetes.delete", "execution": "Kubernetes",
                 "parameters": {"apiVersion": "v1", "kind": "ConfigMap", "name": "settings"},
                 "summary": "delete settings"},
    }  # fmt: skip
    name = json.loads(cluster.create(document, who=f"{scene}/{AGENT}").stdout)["metadata"]["name"]
    denied = wait_for(cluster, scene, name, "decision.reason", "Invalid")
    assert "does not let Handoff change v1/ConfigMap" in denied["status"]["decision"]["message"]
