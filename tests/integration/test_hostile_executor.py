"""A hostile agent against the Kubernetes executor, on the real API server and operator.

What got through before (issue 14, items 1 and 7): names that climbed out of the object's path
read a Secret through the preview, scaled a Deployment in a namespace the policy does not list
and wrote another request's decision with the operator's own rights; a malformed manifest was
never decided. Now every part of a change must be a Kubernetes name, paths are built from
escaped segments, and the executor acts as its policy's ServiceAccount, which holds exactly the
listed kinds in the listed namespaces: so even a path bug could not exceed the policy.
"""

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from handoff.testing.cluster import Cluster, OperatorProcess, eventually

from .helpers import AGENT, apply_ready_policy, condition, file, policy, request, wait_for

pytestmark = pytest.mark.integration
SECRET_VALUE = "hunter2-do-not-leak"  # noqa: S105 - the bait this test makes sure never leaks
EXECUTOR = "handoff-executor-payments"
RBAC = "rbac.authorization.k8s.io/v1"


def deployment(ns: str, image: str = "nginx:1.25") -> dict[str, Any]:
    labels = {"app": "web"}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "web", "image": image}]}}},
    }  # fmt: skip


def executor_policy(ns: str, **kubernetes: Any) -> dict[str, Any]:
    return policy(
        ns,
        executors={"kubernetes": {"kinds": ["apps/v1/Deployment"], **kubernetes}},
        rules=[
            {"name": "scale", "actions": ["kubernetes.scale"], "tier": 2},
            {"name": "quick", "actions": ["kubernetes.patch"], "targets": ["quick:*"], "tier": 2},
            {"name": "change", "actions": ["kubernetes.*"], "tier": 4},
            {"name": "money", "actions": ["payments.*"], "tier": 4},
        ],
        tiers={"tier4": {"decisionWindow": "5m", "approvals": 2}},
    )


@pytest.fixture
def other(cluster: Cluster) -> str:
    """A namespace the policy does not list, with a Deployment and a Secret worth stealing."""
    ns = cluster.new_namespace(agents=())
    cluster.apply(deployment(ns))
    cluster.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "token", "namespace": ns},
                   "stringData": {"token": SECRET_VALUE}})  # fmt: skip
    return ns


@pytest.fixture
def scene(cluster: Cluster, operator: OperatorProcess, namespace: str, other: str) -> str:
    cluster.apply(deployment(namespace))
    apply_ready_policy(cluster, executor_policy(namespace))
    return namespace


def propose(
    cluster: Cluster, ns: str, action: str, parameters: dict[str, Any], target: str = "quick:1"
) -> str:
    document = {
        "apiVersion": "handoff.dev/v1alpha1", "kind": "ActionRequest",
        "metadata": {"generateName": "hostile-", "namespace": ns},
        "spec": {"agent": AGENT, "action": action, "execution": "Kubernetes", "target": target,
                 "parameters": parameters, "summary": f"{action}", "rollback": {"description": "undo"}},
    }  # fmt: skip
    return str(json.loads(cluster.create(document, who=f"{ns}/{AGENT}").stdout)["metadata"]["name"])


def settled(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    """The request once the operator decided it or wrote a preview, whichever comes first."""
    return eventually(
        lambda: (
            (body := request(cluster, ns, name))
            and ((body.get("status") or {}).get("decision") or (body.get("status") or {}).get("preview"))
            and body
        ),
        what=f"{name} decided or previewed",
    )  # fmt: skip


def replicas(cluster: Cluster, ns: str) -> int:
    return int(cluster.get("deployment", "web", ns)["spec"]["replicas"])


def can_i(cluster: Cluster, ns: str, verb: str, resource: str, where: str) -> bool:
    """May the policy's executor in ``ns`` do ``verb`` on ``resource`` (``plural.group``, or
    ``plural.group/subresource``) in ``where``?"""
    resource, _, subresource = resource.partition("/")
    answer = cluster.kubectl(
        "auth", "can-i", verb, resource, "-n", where,
        *([f"--subresource={subresource}"] if subresource else []),
        f"--as=system:serviceaccount:{ns}:{EXECUTOR}",
        f"--as-group=system:serviceaccounts:{ns}", "--as-group=system:serviceaccounts",
        "--as-group=system:authenticated", check=False,
    )  # fmt: skip
    return answer.stdout.strip() == "yes"


def test_a_name_that_climbs_to_a_secret_cannot_read_it_through_the_preview(
    cluster: Cluster, scene: str, other: str
) -> None:
    ns = scene
    name = f"../../../../../../api/v1/namespaces/{other}/secrets/token"
    parameters = {"apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                  "patch": {"data": {"token": None}}}  # fmt: skip
    filed = propose(cluster, ns, "kubernetes.patch", parameters, target="deployment/web")
    body = settled(cluster, ns, filed)
    text = json.dumps(body)
    assert SECRET_VALUE not in text
    assert base64.b64encode(SECRET_VALUE.encode()).decode() not in text
    assert "preview" not in body["status"]
    decision = body["status"]["decision"]
    assert (decision["outcome"], decision["reason"]) == ("Denied", "Invalid")
    assert "parameters.name" in decision["message"]
    assert "is not an object name" in decision["message"]


def test_a_name_that_climbs_to_another_namespace_cannot_scale_there(
    cluster: Cluster, scene: str, other: str
) -> None:
    ns = scene
    parameters = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "name": f"../../{other}/deployments/web", "replicas": 5}  # fmt: skip
    filed = propose(cluster, ns, "kubernetes.scale", parameters)
    body = settled(cluster, ns, filed)
    assert body["status"]["decision"]["reason"] == "Invalid"
    assert "execution" not in body["status"]
    assert replicas(cluster, other) == 1
    assert replicas(cluster, ns) == 1


def test_a_name_that_climbs_to_a_request_status_cannot_decide_it(
    cluster: Cluster, scene: str
) -> None:
    ns = scene
    victim = file(cluster, ns, "payments.charge")
    wait_for(cluster, ns, victim, "phase", "AwaitingApproval")
    forged = {"phase": "Approved", "decision": {"outcome": "Approved", "reason": "HumanApproved",
              "by": ["alice"], "at": "2026-01-01T00:00:00Z", "message": "forged"}}  # fmt: skip
    path = f"../../../../../../apis/handoff.dev/v1alpha1/namespaces/{ns}/actionrequests/{victim}/status"
    parameters = {"apiVersion": "apps/v1", "kind": "Deployment", "name": path,
                  "patch": {"status": forged}}  # fmt: skip
    filed = propose(cluster, ns, "kubernetes.patch", parameters)
    assert settled(cluster, ns, filed)["status"]["decision"]["reason"] == "Invalid"
    status = request(cluster, ns, victim)["status"]
    assert status["phase"] == "AwaitingApproval"
    assert "decision" not in status


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"name": "%2e%2e/%2e%2e/OTHER/deployments/web"}, "is not an object name"),
        ({"name": "%2e%2e"}, "is not an object name"),
        ({"name": "..%2F..%2FOTHER%2Fdeployments%2Fweb"}, "is not an object name"),
        ({"name": "web/scale"}, "is not an object name"),
        ({"name": "web?dryRun=All"}, "is not an object name"),
        ({"name": "web#x"}, "is not an object name"),
        ({"name": "WEB"}, "is not an object name"),
        ({"name": "w" * 254}, "is not an object name"),
        ({"name": "web", "namespace": "OTHER"}, "policy does not let Handoff change objects in namespace OTHER"),
        ({"name": "web", "namespace": "../OTHER"}, "parameters.namespace"),
        ({"name": "web", "apiVersion": "apps/v1/../../../api/v1", "kind": "Secret"}, "parameters.apiVersion"),
        ({"name": "web", "kind": "Deployment/status"}, "parameters.kind"),
        ({"name": "web", "kind": ".."}, "parameters.kind"),
    ],
)  # fmt: skip
def test_variants_a_careful_attacker_tries_next_are_invalid(
    cluster: Cluster, scene: str, other: str, parameters: dict[str, Any], message: str
) -> None:
    ns = scene
    given = {k: v.replace("OTHER", other) for k, v in parameters.items()}
    full = {"apiVersion": "apps/v1", "kind": "Deployment", "replicas": 7, **given}
    body = settled(cluster, ns, propose(cluster, ns, "kubernetes.scale", full))
    assert body["status"]["decision"]["reason"] == "Invalid"
    assert message.replace("OTHER", other) in body["status"]["decision"]["message"]
    assert replicas(cluster, other) == 1
    assert replicas(cluster, ns) == 1


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"name": "../../OTHER/deployments/web"}, "parameters.manifest.metadata.name"),
        ({"name": "web", "namespace": "OTHER"}, "namespace OTHER"),
        ({"name": "web", "namespace": "../OTHER"}, "parameters.manifest.metadata.namespace"),
        ({"generateName": "web-"}, "metadata.name"),
        ("oops", 'parameters.manifest.metadata is "oops"'),  # item 7
    ],
)  # fmt: skip
def test_manifest_metadata_tricks_are_invalid(
    cluster: Cluster, scene: str, other: str, metadata: Any, message: str
) -> None:
    ns = scene
    manifest = deployment(ns, image="evil:1")
    manifest["metadata"] = (
        {k: v.replace("OTHER", other) for k, v in metadata.items()}
        if isinstance(metadata, dict)
        else metadata
    )
    body = settled(cluster, ns, propose(cluster, ns, "kubernetes.apply", {"manifest": manifest}))
    decision = body["status"]["decision"]
    assert (decision["outcome"], decision["reason"]) == ("Denied", "Invalid")
    assert message.replace("OTHER", other) in decision["message"]
    assert "Traceback" not in decision["message"]
    for where in (ns, other):
        image = cluster.get("deployment", "web", where)["spec"]["template"]["spec"]
        assert image["containers"][0]["image"] == "nginx:1.25"


def test_a_pod_may_not_run_as_the_executor(cluster: Cluster, scene: str) -> None:
    ns = scene
    manifest = deployment(ns)
    manifest["spec"]["template"]["spec"]["serviceAccountName"] = EXECUTOR
    body = settled(cluster, ns, propose(cluster, ns, "kubernetes.apply", {"manifest": manifest}))
    assert body["status"]["decision"]["reason"] == "Invalid"
    assert "executor ServiceAccounts" in body["status"]["decision"]["message"]


def test_the_executor_holds_exactly_what_the_policy_lists(
    cluster: Cluster, scene: str, other: str
) -> None:
    ns = scene
    account = cluster.get("serviceaccount", EXECUTOR, ns)
    assert account["metadata"]["ownerReferences"][0]["kind"] == "AgentActionPolicy"
    for verb in ("get", "patch", "update", "create", "delete"):
        assert can_i(cluster, ns, verb, "deployments.apps", ns)
    assert not can_i(cluster, ns, "list", "deployments.apps", ns)
    assert not can_i(cluster, ns, "patch", "deployments.apps", other)
    assert not can_i(cluster, ns, "get", "secrets", other)
    assert not can_i(cluster, ns, "get", "secrets", ns)
    assert not can_i(cluster, ns, "create", "pods", ns)
    assert not can_i(cluster, ns, "patch", "actionrequests.handoff.dev/status", ns)
    assert not can_i(cluster, ns, "patch", "actionrequests.handoff.dev", ns)
    assert not can_i(cluster, ns, "create", "rolebindings.rbac.authorization.k8s.io", ns)


@pytest.fixture
def only_the_executor_writes(cluster: Cluster, scene: str) -> Iterator[str]:
    """An admission policy that lets only the policy's executor ServiceAccount change
    Deployments in the scene's namespace: the operator's own identity is refused."""
    ns, name = scene, f"only-the-executor-{scene}"
    user = f"system:serviceaccount:{ns}:{EXECUTOR}"
    admission = "admissionregistration.k8s.io/v1"
    cluster.apply({
        "apiVersion": admission, "kind": "ValidatingAdmissionPolicy", "metadata": {"name": name},
        "spec": {"failurePolicy": "Fail",
                 "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
                                                         "operations": ["UPDATE"], "resources": ["deployments"]}]},
                 "validations": [{"expression": f"request.userInfo.username == '{user}'",
                                  "messageExpression": "'only the executor, not ' + request.userInfo.username"}]},
    })  # fmt: skip
    cluster.apply({
        "apiVersion": admission, "kind": "ValidatingAdmissionPolicyBinding", "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"],
                 "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}},
    })  # fmt: skip
    eventually(  # in effect: even the admin's dry run is refused
        lambda: "only the executor" in cluster.kubectl(
            "patch", "deployment", "web", "-n", ns, "--type=merge", "--dry-run=server",
            "-p", '{"spec": {"replicas": 9}}', check=False,
        ).stderr,
        what="the admission policy in effect",
    )  # fmt: skip
    yield ns
    cluster.kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", name)


def test_the_executor_acts_as_its_service_account_not_as_the_operator(
    cluster: Cluster, only_the_executor_writes: str
) -> None:
    """The operator impersonates the policy's executor for the change itself: with its own
    identity, the admission policy above would refuse it (and RBAC bounds it to the policy)."""
    ns = only_the_executor_writes
    filed = propose(cluster, ns, "kubernetes.scale",
                    {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "replicas": 4})  # fmt: skip
    executed = wait_for(cluster, ns, filed, "phase", "Executed")
    assert "scale Deployment/web" in executed["status"]["execution"]["message"]
    assert replicas(cluster, ns) == 4


def executed_or_failed(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        body = request(cluster, ns, name)
        outcome = (body.get("status") or {}).get("execution", {}).get("outcome")
        return body if outcome in ("Executed", "Failed") else None

    return eventually(probe, what=f"{name} executed or failed")


def test_without_its_role_the_executor_cannot_act(cluster: Cluster, scene: str) -> None:
    """Take the executor's RoleBinding away: the operator's own rights do not carry the change."""
    ns, binding = scene, f"handoff-executor.{scene}.payments"
    parameters = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "replicas": 4}

    def taken_away() -> bool:
        cluster.kubectl("delete", "rolebinding", binding, "-n", ns, "--ignore-not-found")
        return not can_i(cluster, ns, "patch", "deployments.apps", ns)

    for _ in range(3):
        # The policy's last reconcile may still be putting the binding back: then try again.
        eventually(taken_away, what="the executor's RoleBinding gone")
        filed = propose(cluster, ns, "kubernetes.scale", parameters)
        done = executed_or_failed(cluster, ns, filed)
        if done["status"]["execution"]["outcome"] == "Failed":
            break
        assert can_i(cluster, ns, "patch", "deployments.apps", ns), "executed without the Role"
        cluster.kubectl("scale", "deployment", "web", "-n", ns, "--replicas=1")
    message = done["status"]["execution"]["message"]
    assert EXECUTOR in message
    assert "forbidden" in message
    assert replicas(cluster, ns) == 1


def test_previews_show_the_spec_s_change_whoever_may_read_the_object(
    cluster: Cluster, scene: str
) -> None:
    """status.preview is the same whether the agent may read the object or not: it comes from
    the spec alone, so it neither shows a live value nor says which fields would change."""
    ns = scene
    patch = {
        "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}
    }
    parameters = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "patch": patch}
    unread = settled(
        cluster, ns, propose(cluster, ns, "kubernetes.patch", parameters, "deployment/web")
    )["status"]["preview"]
    assert unread.splitlines() == [
        f"patch Deployment {ns}/web (a JSON merge patch), setting:",
        'spec.template.spec.containers = [{"image": "nginx:1.27", "name": "web"}]',
    ]
    cluster.apply(
        {
            "apiVersion": RBAC,
            "kind": "Role",
            "metadata": {"name": "read-web", "namespace": ns},
            "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}],
        }
    )
    cluster.apply({"apiVersion": RBAC, "kind": "RoleBinding", "metadata": {"name": "read-web", "namespace": ns},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-web"},
                   "subjects": [{"kind": "ServiceAccount", "name": AGENT, "namespace": ns}]})  # fmt: skip
    eventually(
        lambda: cluster.kubectl("get", "deployment", "web", "-n", ns, who=f"{ns}/{AGENT}", check=False).returncode == 0,
        what="the agent reads its Deployment",
    )  # fmt: skip
    read = settled(
        cluster, ns, propose(cluster, ns, "kubernetes.patch", parameters, "deployment/web")
    )["status"]["preview"]
    assert read == unread
    assert "nginx:1.25" not in read


@pytest.mark.parametrize(
    "kind",
    ["handoff.dev/v1alpha1/ActionRequest", "rbac.authorization.k8s.io/v1/RoleBinding", "v1/Secret",
     "v1/ServiceAccount", "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicyBinding"],
)  # fmt: skip
def test_a_policy_may_not_list_kinds_that_carry_privilege(
    cluster: Cluster, operator: OperatorProcess, namespace: str, kind: str
) -> None:
    document = executor_policy(namespace)
    document["spec"]["executors"]["kubernetes"]["kinds"].append(kind)
    cluster.apply(document)
    body = eventually(
        lambda: (p := cluster.get("agentactionpolicy", "payments", namespace)).get("status") and p,
        what="the policy's status",
    )
    ready = condition(body, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "CompileFailed")
    assert f"lists {kind}, which Handoff never changes" in ready["message"]
    assert can_i(cluster, namespace, "patch", "deployments.apps", namespace)  # what may be listed
    assert not can_i(cluster, namespace, "get", "secrets", namespace)
    assert not can_i(
        cluster, namespace, "create", "rolebindings.rbac.authorization.k8s.io", namespace
    )
    assert not can_i(cluster, namespace, "patch", "actionrequests.handoff.dev/status", namespace)


def test_the_executor_identity_follows_the_policys_namespaces_and_goes_with_it(
    cluster: Cluster, operator: OperatorProcess, namespace: str, other: str
) -> None:
    ns = namespace
    apply_ready_policy(cluster, executor_policy(ns, namespaces=[ns, other]))
    role = f"handoff-executor.{ns}.payments"
    assert cluster.get("role", role, other)["rules"][0]["resources"] == ["deployments"]
    assert can_i(cluster, ns, "patch", "deployments.apps", other)
    apply_ready_policy(cluster, executor_policy(ns, namespaces=[ns]))
    gone = cluster.kubectl("get", "role,rolebinding", "-n", other, "-o", "name", check=False).stdout
    assert role not in gone
    assert not can_i(cluster, ns, "patch", "deployments.apps", other)
    cluster.kubectl("delete", "agentactionpolicy", "payments", "-n", ns)
    eventually(
        lambda: cluster.kubectl("get", "serviceaccount", EXECUTOR, "-n", ns, check=False).returncode != 0
        and role not in cluster.kubectl("get", "role,rolebinding", "-n", ns, "-o", "name").stdout,
        what="the executor identity removed with its policy",
    )  # fmt: skip


def test_a_malformed_executor_request_is_decided_once_and_the_operator_goes_on(
    cluster: Cluster, scene: str
) -> None:
    """Item 7: it raised on every event, was never classified and never expired."""
    ns = scene
    for parameters in (
        {"manifest": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": "oops"}},
        {"manifest": "oops"},
        {
            "manifest": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": {"a": 1}},
            }
        },
    ):
        filed = propose(cluster, ns, "kubernetes.apply", parameters)
        decided = wait_for(cluster, ns, filed, "decision.reason", "Invalid")
        assert decided["status"]["phase"] == "Denied"
        assert "kubernetes.apply needs parameters.manifest" in decided["status"]["decision"][
            "message"
        ] or ("must be a string" in decided["status"]["decision"]["message"])
    ordinary = file(cluster, ns, "payments.charge")
    wait_for(cluster, ns, ordinary, "phase", "AwaitingApproval")
