"""What a red team found after issue 14's fixes, against the real API server, Redis and operator.

Each test is an attack that got through on ``handoff dev up``. Those fixed in place pass; those
that need a larger change are marked ``xfail(strict=True)`` with the fix they need:

- a failed dry run put the API server's answer in the preview, which quotes the stored object
  (fixed: hidden when the agent may not read the object);
- the preview of an object the agent may not read is still an equality oracle, and the values
  shown because the *filing* agent may read the object are readable by every agent of the
  namespace (xfail: previews of values belong where only reviewers read them);
- a Kubernetes rollback restores the whole kept object, undoing every later change (xfail);
- an agent made the operator post one Warning Event per outcome entry, without bound (fixed);
- the rollback of a Webhook action was filed as an Agent action, so the agent's word alone
  marked the original RolledBack and the webhook never saw the undo (fixed).
"""

import json
from collections.abc import Iterator
from typing import Any

import pytest
from handoff.devenv.redis import RedisServer
from handoff.testing.cluster import Cluster, OperatorProcess, eventually, redis_client

from .helpers import AGENT, apply_ready_policy, events, file, policy, request, wait_for
from .test_webhook_executor import Executor

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


def roll_back(cluster: Cluster, ns: str, name: str) -> None:
    """alice asks for a rollback, as ``kubectl handoff rollback`` does (on a request decided
    without reviews, status.reviews does not exist yet: a merge patch creates it)."""
    entry = {"reviewer": "alice", "decision": "Rollback", "comment": "undo it"}
    patch = json.dumps({"status": {"reviews": [entry]}})
    cluster.kubectl(
        "patch", "actionrequest", name, "-n", ns, "--subresource=status", "--type=merge",
        "-p", patch, who="alice",
    )  # fmt: skip


def env_patch(value: str) -> dict[str, Any]:
    container = {"name": "web", "image": "nginx:1.25", "env": [{"name": "API_KEY", "value": value}]}
    return {"patch": {"spec": {"template": {"spec": {"containers": [container]}}}}}


# -- the preview -----------------------------------------------------------------------------


def test_a_failed_dry_run_does_not_quote_an_object_the_agent_may_not_read(
    cluster: Cluster, scene: str
) -> None:
    # The selector is immutable, and the API server's refusal quotes the template's labels.
    filed = propose(cluster, scene, "kubernetes.patch",
                    {"patch": {"spec": {"selector": {"matchLabels": {"app": "other"}}}}})  # fmt: skip
    text = preview(cluster, scene, filed)
    assert text.startswith("the dry run failed")
    assert BAIT not in text
    assert f"which {AGENT} may not read" in text


@pytest.mark.xfail(
    strict=True,
    reason="the preview says which fields change, so a guess that matches reads 'no change':"
    " one request per guess tells whether a value the agent may not read equals it. Fix: keep"
    " previews of objects the agent may not read out of the agent-readable status (an Event,"
    " or the console reading the dry run with the reviewer's own token)",
)
def test_the_preview_is_no_equality_oracle_for_what_the_agent_may_not_read(
    cluster: Cluster, scene: str
) -> None:
    wrong = preview(cluster, scene, propose(cluster, scene, "kubernetes.patch", env_patch("guess")))
    right = preview(cluster, scene, propose(cluster, scene, "kubernetes.patch", env_patch(BAIT)))
    assert wrong == right


@pytest.mark.xfail(
    strict=True,
    reason="the preview shows values when the agent that filed it may get the object, but every"
    " agent (and every reviewer) of the namespace may list all requests. Fix: the same as the"
    " equality oracle: values only where the object's readers alone can see them",
)
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
        "get", "actionrequest", filed, "-n", scene, "-o", "jsonpath={.status.preview}",
        who=f"{scene}/{AGENT}",
    ).stdout  # fmt: skip
    assert BAIT not in seen


# -- rollback --------------------------------------------------------------------------------


@pytest.mark.xfail(
    strict=True,
    reason="a Kubernetes rollback PUTs the whole object kept before the action, so it also"
    " undoes every change made since (another approved request's, an administrator's fix)"
    " while the Event says only 'restored to its state before the action'. Fix: keep the"
    " object's resourceVersion after the change and refuse (RollbackFailed, saying what"
    " changed since) when it moved, or restore only the fields the action changed",
)
def test_a_rollback_does_not_undo_later_changes_to_the_object(cluster: Cluster, scene: str) -> None:
    scaled = propose(cluster, scene, "kubernetes.scale", {"replicas": 3})
    wait_for(cluster, scene, scaled, "phase", "Executed")
    cluster.kubectl("set", "image", "deployment/web", "web=nginx:1.27-fixed", "-n", scene)
    roll_back(cluster, scene, scaled)
    wait_for(cluster, scene, scaled, "rollback.done", True)
    web = cluster.get("deployment", "web", scene)
    assert web["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27-fixed"


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
