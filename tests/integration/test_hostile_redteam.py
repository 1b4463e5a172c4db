"""What a red team found after issue 14's fixes, against the real API server, Redis and operator.

Each test is an attack that got through on ``handoff dev up``, and passes since its fix:

- a failed dry run put the API server's answer in the preview, which quotes the stored object;
- the preview of an object the agent may not read was an equality oracle ("no change" for a
  right guess), and the values it showed because the *filing* agent could read the object were
  readable by every agent of the namespace (fixed: ``status.preview`` is the change as the spec
  asks for it, nothing of the live object; reviewers' tools compute the live diff with the
  reviewer's own rights);
- a Kubernetes rollback restored the whole kept object, undoing every later change (fixed: it
  restores only the fields the action changed, and refuses when one changed since);
- an agent made the operator post one Warning Event per outcome entry, without bound;
- the rollback of a Webhook action was filed as an Agent action, so the agent's word alone
  marked the original RolledBack and the webhook never saw the undo.
"""

import json
from collections.abc import Iterator
from typing import Any

import pytest
from handoff.devenv.redis import RedisServer
from handoff.testing.cluster import Cluster, OperatorProcess, eventually, redis_client

from .endpoints import Executor
from .helpers import (
    AGENT,
    apply_ready_policy,
    events,
    file,
    policy,
    request,
    review,
    roll_back,
    wait_for,
)

pytestmark = pytest.mark.integration
OTHER = "other-agent"
BAIT = "k3y-4711"  # a value of the Deployment that the agent may not read


def deployment(ns: str) -> dict[str, Any]:
    labels = {"app": "web", "build": BAIT}
    env = [{"name": "API_KEY", "value": BAIT}]
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.25",
                                                       "env": env}]}}},
    }  # fmt: skip


def executor_policy(ns: str, agents: tuple[str, ...] = (AGENT,)) -> dict[str, Any]:
    return policy(
        ns,
        agents={"serviceAccounts": list(agents)},
        executors={"kubernetes": {"kinds": ["apps/v1/Deployment"]}},
        rules=[
            {"name": "scale", "actions": ["kubernetes.scale"], "tier": 2},
            {"name": "change", "actions": ["kubernetes.*"], "tier": 4},
        ],
        tiers={"tier4": {"decisionWindow": "5m", "approvals": 1}},
    )


@pytest.fixture
def scene(cluster: Cluster, operator: OperatorProcess) -> str:
    ns = cluster.new_namespace(agents=(AGENT, OTHER))
    cluster.apply(deployment(ns))
    apply_ready_policy(cluster, executor_policy(ns, (AGENT, OTHER)))
    return ns


def propose(cluster: Cluster, ns: str, action: str, parameters: dict[str, Any],
            agent: str = AGENT) -> str:  # fmt: skip
    document = {
        "apiVersion": "handoff.dev/v1alpha1", "kind": "ActionRequest",
        "metadata": {"generateName": "redteam-", "namespace": ns},
        "spec": {"agent": agent, "action": action, "execution": "Kubernetes", "target": "web",
                 "parameters": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                **parameters},
                 "summary": action, "rollback": {"description": "undo"}},
    }  # fmt: skip
    return str(json.loads(cluster.create(document, who=f"{ns}/{agent}").stdout)["metadata"]["name"])


def preview(cluster: Cluster, ns: str, name: str) -> str:
    body = eventually(
        lambda: (b := request(cluster, ns, name)) and (b.get("status") or {}).get("preview") and b,
        what=f"the preview of {name}",
    )  # fmt: skip
    return str(body["status"]["preview"])


def env_patch(value: str) -> dict[str, Any]:
    container = {"name": "web", "image": "nginx:1.25", "env": [{"name": "API_KEY", "value": value}]}
    return {"patch": {"spec": {"template": {"spec": {"containers": [container]}}}}}


# -- the preview -----------------------------------------------------------------------------
# status.preview is readable by every agent and reviewer of the namespace, so it is the change
# as the spec asks for it and nothing else; reviewers' tools compute the live diff with their
# own rights (test_kubernetes_executor.py).


def test_a_change_the_api_server_would_refuse_quotes_nothing_of_the_object(
    cluster: Cluster, scene: str
) -> None:
    # The selector is immutable; a dry run's refusal would quote the template's labels.
    filed = propose(cluster, scene, "kubernetes.patch",
                    {"patch": {"spec": {"selector": {"matchLabels": {"app": "other"}}}}})  # fmt: skip
    text = preview(cluster, scene, filed)
    assert text.splitlines() == [
        f"patch Deployment {scene}/web (a JSON merge patch), setting:",
        'spec.selector.matchLabels.app = "other"',
    ]
    assert BAIT not in json.dumps(request(cluster, scene, filed))


def test_the_preview_is_no_equality_oracle_for_what_the_agent_may_not_read(
    cluster: Cluster, scene: str
) -> None:
    """A guess that matches the live value previews exactly as a wrong one does, but for the
    guess itself (the agent's own words): never "no change"."""
    wrong = preview(cluster, scene, propose(cluster, scene, "kubernetes.patch", env_patch("guess")))
    right = preview(cluster, scene, propose(cluster, scene, "kubernetes.patch", env_patch(BAIT)))
    assert right == wrong.replace("guess", BAIT)
    assert "no change" not in right


def test_the_preview_says_nothing_of_the_live_object(cluster: Cluster, scene: str) -> None:
    """The next guesses: whether the object exists (a delete, a patch of a missing object),
    whether the API server would refuse the change, what the object holds when the preview is
    written. The same spec previews the same."""

    def seen(parameters: dict[str, Any], action: str = "kubernetes.patch") -> str:
        return preview(cluster, scene, propose(cluster, scene, action, parameters))

    exists, missing = seen({}, "kubernetes.delete"), seen({"name": "gone"}, "kubernetes.delete")
    assert missing == exists.replace("/web", "/gone")
    selector = {"patch": {"spec": {"selector": {"matchLabels": {"app": "other"}}}}}
    assert seen(selector | {"name": "gone"}) == seen(selector).replace("/web", "/gone")
    replicas = {"patch": {"spec": {"replicas": 2}}}
    first = seen(replicas)
    cluster.kubectl("scale", "deployment/web", "--replicas=2", "-n", scene)
    assert seen(replicas) == first
    for text in (exists, missing, first):
        assert BAIT not in text
        assert "nginx:1.25" not in text  # the live image: never read for the preview


def test_another_agent_cannot_read_values_through_a_preview(cluster: Cluster, scene: str) -> None:
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "reads-deployments", "namespace": scene},
            "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}]}  # fmt: skip
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "reads-deployments", "namespace": scene},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                           "name": "reads-deployments"},
               "subjects": [{"kind": "ServiceAccount", "name": OTHER, "namespace": scene}]}  # fmt: skip
    cluster.apply(role)
    cluster.apply(binding)
    filed = propose(cluster, scene, "kubernetes.patch", env_patch("rotated"), agent=OTHER)
    preview(cluster, scene, filed)
    seen = cluster.kubectl(
        "get", "actionrequest", filed, "-n", scene, "-o", "json", who=f"{scene}/{AGENT}",
    ).stdout  # fmt: skip
    assert BAIT not in seen


# -- rollback --------------------------------------------------------------------------------
# A Kubernetes rollback restores the fields the action changed, and only while they hold the
# values the action set (a JSON Patch of tests and restores, applied atomically).


def image(cluster: Cluster, ns: str) -> str:
    web = cluster.get("deployment", "web", ns)
    return str(web["spec"]["template"]["spec"]["containers"][0]["image"])


def test_a_rollback_does_not_undo_later_changes_to_the_object(cluster: Cluster, scene: str) -> None:
    scaled = propose(cluster, scene, "kubernetes.scale", {"replicas": 3})
    wait_for(cluster, scene, scaled, "phase", "Executed")
    cluster.kubectl("set", "image", "deployment/web", "web=nginx:1.27-fixed", "-n", scene)
    cluster.kubectl("label", "deployment/web", "fixed-by=admin", "-n", scene)
    roll_back(cluster, scene, scaled)
    done = wait_for(cluster, scene, scaled, "rollback.done", True)
    assert done["status"]["phase"] == "RolledBack"
    assert "restored spec.replicas as before the action" in done["status"]["rollback"]["message"]
    web = cluster.get("deployment", "web", scene)
    assert web["spec"]["replicas"] == 1
    assert image(cluster, scene) == "nginx:1.27-fixed"
    assert web["metadata"]["labels"]["fixed-by"] == "admin"


def test_a_later_change_to_the_same_field_refuses_the_rollback(
    cluster: Cluster, scene: str
) -> None:
    scaled = propose(cluster, scene, "kubernetes.scale", {"replicas": 3})
    wait_for(cluster, scene, scaled, "phase", "Executed")
    cluster.kubectl("scale", "deployment/web", "--replicas=5", "-n", scene)
    cluster.kubectl("set", "image", "deployment/web", "web=nginx:1.27-fixed", "-n", scene)
    before = cluster.get("deployment", "web", scene)
    roll_back(cluster, scene, scaled)
    refused = wait_for(cluster, scene, scaled, "rollback.done", False)
    message = refused["status"]["rollback"]["message"]
    assert "the rollback changed nothing: spec.replicas of Deployment/web changed since" in message
    assert refused["status"]["phase"] == "Executed"
    after = cluster.get("deployment", "web", scene)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["spec"]["replicas"] == 5
    reasons = [e["reason"] for e in events(cluster, scene, scaled)]
    assert "RollbackFailed" in reasons
    assert "RolledBack" not in reasons


def test_a_later_approved_request_on_the_same_field_is_not_undone_by_an_earlier_rollback(
    cluster: Cluster, scene: str
) -> None:
    first = propose(cluster, scene, "kubernetes.scale", {"replicas": 3})
    wait_for(cluster, scene, first, "phase", "Executed")
    second = propose(cluster, scene, "kubernetes.scale", {"replicas": 4})
    wait_for(cluster, scene, second, "phase", "Executed")
    roll_back(cluster, scene, first)
    refused = wait_for(cluster, scene, first, "rollback.done", False)
    assert (
        "spec.replicas of Deployment/web changed since" in refused["status"]["rollback"]["message"]
    )
    assert cluster.get("deployment", "web", scene)["spec"]["replicas"] == 4
    roll_back(cluster, scene, second)  # the latest one still rolls back, to the first's value
    wait_for(cluster, scene, second, "rollback.done", True)
    assert cluster.get("deployment", "web", scene)["spec"]["replicas"] == 3


def test_an_object_deleted_since_the_action_is_not_recreated(cluster: Cluster, scene: str) -> None:
    scaled = propose(cluster, scene, "kubernetes.scale", {"replicas": 3})
    wait_for(cluster, scene, scaled, "phase", "Executed")
    cluster.kubectl("delete", "deployment/web", "-n", scene)
    roll_back(cluster, scene, scaled)
    refused = wait_for(cluster, scene, scaled, "rollback.done", False)
    assert "was deleted since the action" in refused["status"]["rollback"]["message"]
    gone = cluster.kubectl("get", "deployment/web", "-n", scene, check=False)
    assert gone.returncode != 0


def approved(cluster: Cluster, ns: str, action: str, parameters: dict[str, Any]) -> str:
    name = propose(cluster, ns, action, parameters)
    wait_for(cluster, ns, name, "phase", "AwaitingApproval")
    review(cluster, ns, name, "alice")
    wait_for(cluster, ns, name, "phase", "Executed")
    return name


def test_the_rollback_of_a_delete_recreates_unless_it_exists_again(
    cluster: Cluster, scene: str
) -> None:
    deleted = approved(cluster, scene, "kubernetes.delete", {})
    roll_back(cluster, scene, deleted)
    wait_for(cluster, scene, deleted, "rollback.done", True)
    assert image(cluster, scene) == "nginx:1.25"
    again = approved(cluster, scene, "kubernetes.delete", {})
    cluster.apply(deployment(scene) | {"spec": deployment(scene)["spec"] | {"replicas": 4}})
    roll_back(cluster, scene, again)
    refused = wait_for(cluster, scene, again, "rollback.done", False)
    assert (
        "was created again since the action deleted it" in refused["status"]["rollback"]["message"]
    )
    assert cluster.get("deployment", "web", scene)["spec"]["replicas"] == 4


def test_the_rollback_of_a_creation_deletes_only_an_unchanged_object(
    cluster: Cluster, scene: str
) -> None:
    def create(name: str) -> str:
        manifest = deployment(scene) | {"metadata": {"name": name}}
        return approved(cluster, scene, "kubernetes.apply", {"manifest": manifest})

    created = create("fresh")
    roll_back(cluster, scene, created)
    wait_for(cluster, scene, created, "rollback.done", True)
    assert cluster.kubectl("get", "deployment/fresh", "-n", scene, check=False).returncode != 0
    changed = create("fresh2")
    cluster.kubectl("scale", "deployment/fresh2", "--replicas=2", "-n", scene)
    roll_back(cluster, scene, changed)
    refused = wait_for(cluster, scene, changed, "rollback.done", False)
    assert (
        "spec.replicas of Deployment/fresh2 changed since"
        in refused["status"]["rollback"]["message"]
    )
    assert cluster.get("deployment", "fresh2", scene)["spec"]["replicas"] == 2


def test_an_agent_cannot_plant_or_rewrite_the_state_a_rollback_restores(
    cluster: Cluster, scene: str
) -> None:
    """An agent that may write ConfigMaps (an administrator gave it the right) plants the state
    a rollback would restore before the action, or rewrites it after: refused by admission."""
    rbac = "rbac.authorization.k8s.io"
    cluster.apply({"apiVersion": f"{rbac}/v1", "kind": "Role",
                   "metadata": {"name": "configmaps", "namespace": scene},
                   "rules": [{"apiGroups": [""], "resources": ["configmaps"],
                              "verbs": ["get", "create", "update", "patch"]}]})  # fmt: skip
    cluster.apply({"apiVersion": f"{rbac}/v1", "kind": "RoleBinding",
                   "metadata": {"name": "configmaps", "namespace": scene},
                   "roleRef": {"apiGroup": rbac, "kind": "Role", "name": "configmaps"},
                   "subjects": [{"kind": "ServiceAccount", "name": AGENT, "namespace": scene}]})  # fmt: skip
    agent = f"{scene}/{AGENT}"
    eventually(
        lambda: cluster.kubectl("auth", "can-i", "create", "configmaps", "-n", scene, who=agent,
                                check=False).stdout.strip() == "yes",
        what="the agent may create ConfigMaps",
    )  # fmt: skip
    waiting = propose(cluster, scene, "kubernetes.patch", {"patch": {"spec": {"replicas": 2}}})
    body = request(cluster, scene, waiting)
    forged_before = deployment(scene) | {"spec": deployment(scene)["spec"] | {"replicas": 9}}
    for suffix, state in (("", forged_before), ("-after", None)):
        forged = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": f"handoff-previous-{body['metadata']['uid']}{suffix}",
                               "namespace": scene,
                               "ownerReferences": [{"apiVersion": "handoff.dev/v1alpha1",
                                                    "kind": "ActionRequest", "name": waiting,
                                                    "uid": body["metadata"]["uid"]}]},
                  "data": {"object": json.dumps(state),
                           "target": f"apps/v1/Deployment {scene}/web"}}  # fmt: skip
        planted = cluster.create(forged, who=agent, check=False)
        assert planted.returncode != 0
        assert "only the operator writes them" in planted.stderr
    ordinary = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "settings", "namespace": scene}, "data": {"a": "b"}}  # fmt: skip
    cluster.create(ordinary, who=agent)  # its other ConfigMaps are its own business

    scaled = propose(cluster, scene, "kubernetes.scale", {"replicas": 3})
    wait_for(cluster, scene, scaled, "phase", "Executed")
    kept = f"handoff-previous-{request(cluster, scene, scaled)['metadata']['uid']}"
    rewrite = json.dumps({"data": {"object": json.dumps(forged_before)}})
    for name in (kept, f"{kept}-after"):
        changed = cluster.kubectl("patch", "configmap", name, "-n", scene, "--type=merge",
                                  "-p", rewrite, who=agent, check=False)  # fmt: skip
        assert changed.returncode != 0
        assert "only the operator writes them" in changed.stderr
    roll_back(cluster, scene, scaled)
    wait_for(cluster, scene, scaled, "rollback.done", True)
    assert cluster.get("deployment", "web", scene)["spec"]["replicas"] == 1


@pytest.fixture
def webhook() -> Iterator[Executor]:
    endpoint = Executor()
    yield endpoint
    endpoint.close()


def test_the_rollback_of_a_webhook_action_is_carried_out_by_the_webhook(
    cluster: Cluster,
    operator: OperatorProcess,
    namespace: str,
    webhook: Executor,
    redis_server: RedisServer,
) -> None:
    rules = [{"name": "payouts", "actions": ["payments.payout", "payments.clawback"], "tier": 2}]
    apply_ready_policy(
        cluster, policy(namespace, executors={"webhook": {"url": webhook.url}}, rules=rules)
    )
    document = {
        "apiVersion": "handoff.dev/v1alpha1", "kind": "ActionRequest",
        "metadata": {"generateName": "payout-", "namespace": namespace},
        "spec": {"agent": AGENT, "action": "payments.payout", "execution": "Webhook",
                 "target": "bank:acct/9", "parameters": {"amount": 120}, "summary": "Pay out $120",
                 "rollback": {"description": "claw it back", "action": "payments.clawback",
                              "parameters": {"amount": 120}}},
    }  # fmt: skip
    created = cluster.create(document, who=f"{namespace}/{AGENT}")
    name = str(json.loads(created.stdout)["metadata"]["name"])
    wait_for(cluster, namespace, name, "phase", "Executed")
    roll_back(cluster, namespace, name)
    undo_name = eventually(
        lambda: (request(cluster, namespace, name)["status"].get("rollback") or {}).get("request"),
        what="the rollback filed",
    )  # fmt: skip
    # The agent claims it clawed the money back itself; only the webhook may say so.
    undo = wait_for(cluster, namespace, undo_name, "decision.outcome", "Approved")
    redis_client(redis_server.url).xadd(
        f"handoff:outcomes:{namespace}:{AGENT}",
        {"name": undo_name, "uid": undo["metadata"]["uid"], "outcome": "Executed"},
    )
    assert undo["spec"].get("execution") == "Webhook"
    eventually(
        lambda: any(c["body"]["action"] == "payments.clawback" for c in webhook.calls),
        what="the webhook to receive the clawback",
    )  # fmt: skip
    done = wait_for(cluster, namespace, undo_name, "phase", "Executed")
    assert "webhook executor accepted it" in done["status"]["execution"]["message"]
    wait_for(cluster, namespace, name, "phase", "RolledBack")
    claims = eventually(
        lambda: [e for e in events(cluster, namespace, undo_name) if e["reason"] == "RejectedOutcome"],
        what="the agent's claim rejected",
    )  # fmt: skip
    assert "Webhook executor carries it out, not the agent" in claims[0]["message"]


# -- the outcome stream ----------------------------------------------------------------------


def test_an_outcome_flood_does_not_make_the_operator_post_an_event_per_entry(
    cluster: Cluster, operator: OperatorProcess, namespace: str, redis_server: RedisServer
) -> None:
    apply_ready_policy(cluster, policy(namespace))
    waiting = file(cluster, namespace, "payments.charge")  # tier 4: waits for a person
    uid = wait_for(cluster, namespace, waiting, "phase", "AwaitingApproval")["metadata"]["uid"]
    last = file(cluster, namespace, "db.query")
    last_uid = wait_for(cluster, namespace, last, "phase", "Approved")["metadata"]["uid"]
    redis = redis_client(redis_server.url)  # what the agent's own user may append
    stream = f"handoff:outcomes:{namespace}:{AGENT}"
    for i in range(150):
        redis.xadd(stream, {"name": waiting, "uid": uid, "outcome": "Executed"})
        redis.xadd(stream, {"name": waiting, "uid": uid, "outcome": f"Approved by alice #{i}"})
    redis.xadd(stream, {"name": last, "uid": last_uid, "outcome": "Executed", "message": "done"})
    wait_for(cluster, namespace, last, "phase", "Executed", timeout=120)  # read in order
    posted = [e for e in events(cluster, namespace, waiting) if e["type"] == "Warning"]
    assert 1 <= len(posted) <= 16, len(posted)
    assert any("not approved" in e["message"] for e in posted)
    assert request(cluster, namespace, waiting)["status"]["phase"] == "AwaitingApproval"
