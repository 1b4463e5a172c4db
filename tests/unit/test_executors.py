"""The Kubernetes executor's pure half, table by table: which change a request asks for, whether
the policy allows it, and the preview's diff."""

from typing import Any

import pytest
from handoff.domain.executors import (
    KubernetesChange,
    KubernetesScope,
    allowed,
    compile_scope,
    kubernetes_change,
    privileged,
    returned_problem,
)
from handoff.domain.kubediff import diff
from handoff.domain.kubenames import split_kind_key

DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
MANIFEST = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "cfg"},
    "data": {"a": "1"},
}


APPLY = (
    "kubernetes.apply needs parameters.manifest, an object with apiVersion, kind and metadata.name"
)
NULL_IN_APPLY = (
    "kubernetes.apply cannot remove a field: a null in parameters.manifest is no removal to the"
    " API server (a label set to null becomes an empty one); remove fields with kubernetes.patch"
)
OWNS_FIELDS = (
    "kubernetes.{} may not set metadata.managedFields (which manager owns which field is the"
    " API server's record)"
)


def spec(action: str, **parameters: Any) -> dict[str, Any]:
    return {"action": action, "parameters": parameters}


@pytest.mark.parametrize(
    ("request_spec", "expected"),
    [
        (spec("kubernetes.scale", **DEPLOYMENT, replicas=3),
         KubernetesChange("scale", "apps/v1", "Deployment", "agents", "web", {"spec": {"replicas": 3}})),
        (spec("kubernetes.scale", **DEPLOYMENT, replicas=0, namespace="web-prod"),
         KubernetesChange("scale", "apps/v1", "Deployment", "web-prod", "web", {"spec": {"replicas": 0}})),
        (spec("kubernetes.patch", **DEPLOYMENT, patch={"spec": {"paused": True}}),
         KubernetesChange("patch", "apps/v1", "Deployment", "agents", "web", {"spec": {"paused": True}})),
        (spec("kubernetes.delete", **DEPLOYMENT),
         KubernetesChange("delete", "apps/v1", "Deployment", "agents", "web", {})),
        (spec("kubernetes.apply", manifest=MANIFEST),
         KubernetesChange("apply", "v1", "ConfigMap", "agents", "cfg", MANIFEST)),
        (spec("kubernetes.apply", manifest=MANIFEST | {"metadata": {"name": "cfg", "namespace": "ops"}}),
         KubernetesChange("apply", "v1", "ConfigMap", "ops", "cfg",
                          MANIFEST | {"metadata": {"name": "cfg", "namespace": "ops"}})),
        (spec("kubernetes.apply", manifest={"apiVersion": "v1", "kind": "ConfigMap"}),
         f"{APPLY}; parameters.manifest.metadata is null"),
        (spec("kubernetes.scale", **DEPLOYMENT, replicas=-1),
         "kubernetes.scale needs parameters.replicas from 0 to 2147483647"),
        (spec("kubernetes.scale", **DEPLOYMENT, replicas="3"),
         "kubernetes.scale needs parameters.replicas, a whole number from 0"),
        (spec("kubernetes.scale", **DEPLOYMENT),
         "kubernetes.scale needs parameters.replicas, a whole number from 0"),
        (spec("kubernetes.patch", **DEPLOYMENT, patch="[]"),
         "kubernetes.patch needs parameters.patch, a JSON merge patch (an object)"),
        (spec("kubernetes.delete", kind="Deployment"),
         "kubernetes.delete needs parameters.apiVersion, parameters.name"),
        (spec("kubernetes.delete"),
         "kubernetes.delete needs parameters.apiVersion, parameters.kind, parameters.name"),
        ({"action": "kubernetes.delete"}, "kubernetes.delete needs parameters, an object"),
        (spec("kubernetes.apply", manifest=[MANIFEST]), f"{APPLY}; parameters.manifest is a list"),
        (spec("kubernetes.apply", manifest={"kind": "ConfigMap"}),
         f"{APPLY}; parameters.manifest.metadata is null"),
        (spec("kubernetes.apply", manifest={"apiVersion": "v1"}),
         f"{APPLY}; parameters.manifest.metadata is null"),
        # apiVersion, kind and metadata.name: each one missing alone is refused
        (spec("kubernetes.apply", manifest={"apiVersion": "v1", "metadata": {"name": "cfg"}}), APPLY),
        (spec("kubernetes.apply", manifest={"kind": "ConfigMap", "metadata": {"name": "cfg"}}), APPLY),
        (spec("kubernetes.apply", manifest=MANIFEST | {"metadata": {"namespace": "ops"}}), APPLY),
        # the largest int32 is a count of replicas; one more is not
        (spec("kubernetes.scale", **DEPLOYMENT, replicas=2**31 - 1),
         KubernetesChange("scale", "apps/v1", "Deployment", "agents", "web",
                          {"spec": {"replicas": 2**31 - 1}})),
        # a null anywhere in an applied manifest, however deep: no removal to server-side apply
        (spec("kubernetes.apply", manifest=MANIFEST | {"data": {"a": None}}), NULL_IN_APPLY),
        (spec("kubernetes.apply", manifest=MANIFEST | {"x": [{"y": [None]}]}), NULL_IN_APPLY),
        (spec("kubernetes.apply", manifest=MANIFEST | {"metadata": {"name": "cfg", "labels": None}}),
         NULL_IN_APPLY),
        (spec("kubernetes.patch", **DEPLOYMENT, patch={"metadata": {"labels": {"a": None}}}),
         KubernetesChange("patch", "apps/v1", "Deployment", "agents", "web",
                          {"metadata": {"labels": {"a": None}}})),
        # managedFields are the API server's record of who owns which field
        (spec("kubernetes.patch", **DEPLOYMENT, patch={"metadata": {"managedFields": []}}),
         OWNS_FIELDS.format("patch")),
        (spec("kubernetes.apply", manifest=MANIFEST | {"metadata": {"name": "cfg", "managedFields": []}}),
         OWNS_FIELDS.format("apply")),
        (spec("kubernetes.patch", **DEPLOYMENT, patch={"spec": {"managedFields": []}}),
         KubernetesChange("patch", "apps/v1", "Deployment", "agents", "web",
                          {"spec": {"managedFields": []}})),
        (spec("kubernetes.exec", **DEPLOYMENT),
         "the Kubernetes executor runs kubernetes.apply, kubernetes.delete, kubernetes.patch,"
         ' kubernetes.scale, not "kubernetes.exec"'),
        ({}, "the Kubernetes executor runs kubernetes.apply, kubernetes.delete, kubernetes.patch,"
             " kubernetes.scale, not null"),
    ],
)  # fmt: skip
def test_the_change_a_request_asks_for(
    request_spec: dict[str, Any], expected: KubernetesChange | str
) -> None:
    assert kubernetes_change(request_spec, "agents") == expected


def change(
    namespace: str = "agents", name: str = "web", kind: str = "Deployment"
) -> KubernetesChange:
    return KubernetesChange("scale", "apps/v1", kind, namespace, name)


KINDS = frozenset({"apps/v1/Deployment"})


@pytest.mark.parametrize(
    ("requested", "scope", "expected"),
    [
        (change(), KubernetesScope(KINDS), None),
        (change("web-prod"), KubernetesScope(KINDS, frozenset({"web-prod"})), None),
        (change(), KubernetesScope(KINDS, frozenset({"web-prod"})),
         "policy does not let Handoff change objects in namespace agents"),
        (change("web-prod"), KubernetesScope(KINDS),
         "policy does not let Handoff change objects in namespace web-prod"),
        (change(kind="StatefulSet"), KubernetesScope(KINDS),
         "the policy does not let Handoff change apps/v1/StatefulSet (executors.kubernetes.kinds)"),
        (change(), KubernetesScope(),
         "the policy does not let Handoff change apps/v1/Deployment (executors.kubernetes.kinds)"),
        # a scope built by hand that lists a privileged kind still changes none of it
        (KubernetesChange("patch", "v1", "ServiceAccount", "agents", "web"),
         KubernetesScope(frozenset({"v1/ServiceAccount"})),
         "Handoff never changes v1/ServiceAccount: ServiceAccounts are identities, the executor's"
         " own among them"),
        # the rollback's kept state is a ConfigMap of that prefix; anything else of either is fine
        (KubernetesChange("delete", "v1", "ConfigMap", "agents", "handoff-previous-u-1"),
         KubernetesScope(frozenset({"v1/ConfigMap"})),
         "handoff-previous-u-1 is where Handoff keeps an object's state for its rollback"),
        (KubernetesChange("delete", "v1", "ConfigMap", "agents", "settings"),
         KubernetesScope(frozenset({"v1/ConfigMap"})), None),
        (change(name="handoff-previous-u-1"), KubernetesScope(KINDS), None),
    ],
)  # fmt: skip
def test_what_a_policy_lets_handoff_change(
    requested: KubernetesChange, scope: KubernetesScope, expected: str | None
) -> None:
    assert allowed(requested, scope, "agents") == expected


def test_a_change_names_its_kind_with_its_api_version() -> None:
    assert change().kind_key == "apps/v1/Deployment"
    assert KubernetesChange("delete", "v1", "ConfigMap", "a", "b").kind_key == "v1/ConfigMap"


@pytest.mark.parametrize(
    ("old", "new", "lines"),
    [
        ({"a": 1}, {"a": 1}, []),
        ({"a": 1}, {"a": 2}, ["a: 1 -> 2"]),
        ({"b": {"c": "x"}, "a": None}, {"a": True, "b": {"c": "y", "d": [1]}},
         ["a: (none) -> true", 'b.c: "x" -> "y"', "b.d: (none) -> [1]"]),
        ({"l": [1, {"k": 1}]}, {"l": [1, {"k": 2}]}, ["l[1].k: 1 -> 2"]),
        ({"l": [1]}, {"l": [1, 2]}, ["l: [1] -> [1, 2]"]),
        ([1, 2], [1, 3], ["[1]: 2 -> 3"]),
        ([1, 2], [3, 4], ["[0]: 1 -> 3", "[1]: 2 -> 4"]),
        ("a", "b", [': "a" -> "b"']),
        ({"x": {"b": 1, "a": 2}}, {"x": 5}, ['x: {"a": 2, "b": 1} -> 5']),
        ({"s": "a" * 200}, {"s": "b"}, [f's: "{"a" * 116}... -> "b"']),
        ({"s": "a" * 118}, {"s": "b"}, [f's: "{"a" * 118}" -> "b"']),
        ({"s": "a" * 119}, {"s": "b"}, [f's: "{"a" * 116}... -> "b"']),
    ],
)  # fmt: skip
def test_the_preview_diff(old: Any, new: Any, lines: list[str]) -> None:
    assert diff(old, new) == lines


ASKED = KubernetesChange("patch", "apps/v1", "Deployment", "agents", "web")
NOTHING = "nothing was changed by Handoff after that answer"


# Each row: what the API server answered to a request for apps/v1 Deployment agents/web, and the
# whole problem (None: it is the object asked for).
@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"namespace": "agents", "name": "web"}},
         None),
        ({"apiVersion": "v1", "kind": "Secret", "metadata": {"namespace": "other", "name": "token"}},
         'asked for apps/v1/Deployment agents/web but the API server answered with "v1" "Secret"'
         f' "other"/"token": {NOTHING}'),
        ({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"namespace": "agents", "name": "api"}},
         'asked for apps/v1/Deployment agents/web but the API server answered with "apps/v1"'
         f' "Deployment" "agents"/"api": {NOTHING}'),
        ({"kind": "Status", "metadata": "oops"},
         "asked for apps/v1/Deployment agents/web but the API server answered with null"
         f' "Status" null/null: {NOTHING}'),
        ({"apiVersion": {"a": 1}, "kind": ["x"], "metadata": {"namespace": 3, "name": True}},
         "asked for apps/v1/Deployment agents/web but the API server answered with an object"
         f" a list 3/true: {NOTHING}"),
        ("text", "the API server answered with something that is not an object"),
        (None, "the API server answered with something that is not an object"),
        ([ASKED], "the API server answered with something that is not an object"),
    ],
)  # fmt: skip
def test_what_came_back_instead_of_the_object_asked_for(answer: Any, problem: str | None) -> None:
    assert returned_problem(ASKED, answer) == problem


def applied(**manifest: Any) -> dict[str, Any]:
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}} | manifest
    return spec("kubernetes.apply", manifest=body)


# Each row: a manifest to apply, and the whole problem with it, naming the field it is in.
@pytest.mark.parametrize(
    ("request_spec", "problem"),
    [
        (applied(metadata={"generateName": "web-", "name": "web"}),
         "kubernetes.apply needs a fixed metadata.name, not generateName"),
        (applied(apiVersion="apps/v1/x/y"),
         'parameters.manifest.apiVersion "apps/v1/x/y" is not an apiVersion: \'v1\' for the core'
         " group or 'group/version' (apps/v1)"),
        (applied(kind="Deploy ment"),
         'parameters.manifest.kind "Deploy ment" is not a kind: a kind is at most 63 letters and'
         " digits, starting with a capital letter (Deployment)"),
        (applied(metadata={"name": "web", "namespace": "../x"}),
         'parameters.manifest.metadata.namespace "../x" is not a namespace: a namespace is at most'
         " 63 lowercase letters, digits and '-', starting and ending with a letter or digit"),
        (applied(metadata={"name": "we/b"}),
         'parameters.manifest.metadata.name "we/b" is not an object name: an object name is at'
         " most 253 lowercase letters, digits, '-' and '.', starting and ending with a letter or"
         " digit"),
    ],
)  # fmt: skip
def test_what_is_wrong_with_a_manifest(request_spec: dict[str, Any], problem: str) -> None:
    assert kubernetes_change(request_spec, "agents") == problem


EXECUTOR = (
    "a Pod may not run as one of Handoff's executor ServiceAccounts (handoff-executor-*): it"
    " would act with the executor's rights without approval"
)
POD = {"containers": [{"name": "app", "image": "app:1"}]}


# Each row: a Deployment's pod template, and whether the change is refused for naming one of the
# executors' ServiceAccounts (anywhere, in lists too; only in the account fields).
@pytest.mark.parametrize(
    ("pod", "problem"),
    [
        (POD, None),
        (POD | {"serviceAccountName": "web"}, None),
        (POD | {"serviceAccount": "default"}, None),
        (POD | {"serviceAccountName": "handoff-executor-agents"}, EXECUTOR),
        (POD | {"serviceAccount": "handoff-executor-x"}, EXECUTOR),
        ({"containers": [{"name": "handoff-executor-agents", "image": "handoff-executor-x"}]}, None),
        ({"containers": [{"name": "a", "env": [{"name": "serviceAccountName",
                                               "value": "handoff-executor-x"}]}]}, None),
        ({"containers": [], "x": [[{"serviceAccountName": "handoff-executor-x"}]]}, EXECUTOR),
    ],
)  # fmt: skip
def test_no_pod_runs_as_an_executor(pod: dict[str, Any], problem: str | None) -> None:
    manifest = {**DEPLOYMENT_MANIFEST, "spec": {"template": {"spec": pod}}}
    change = kubernetes_change(spec("kubernetes.apply", manifest=manifest), "agents")
    assert isinstance(change, KubernetesChange)
    assert allowed(change, KubernetesScope(frozenset({"apps/v1/Deployment"})), "agents") == problem


DEPLOYMENT_MANIFEST = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}


MOVES = "kubernetes.patch may not change metadata.name, .namespace or .generateName"
REKINDS = "kubernetes.patch may not change apiVersion or kind"


# Each row: a JSON merge patch of apps/v1 Deployment agents/web, and the whole problem (None: it
# is the change asked for). A patch may change the object, never which object it is.
@pytest.mark.parametrize(
    ("patch", "problem"),
    [
        ({"metadata": {"labels": {"a": "b"}}}, None),
        ({"spec": {"replicas": 1}, "metadata": {"annotations": {"x": "y"}}}, None),
        ({"metadata": {"name": "other"}}, MOVES),
        ({"metadata": {"namespace": "other"}}, MOVES),
        ({"metadata": {"generateName": "web-"}}, MOVES),
        ({"metadata": {"labels": {}, "name": None}}, MOVES),
        ({"apiVersion": "v1"}, REKINDS),
        ({"kind": "Pod"}, REKINDS),
        ({"spec": {}, "kind": "Deployment"}, REKINDS),
    ],
)
def test_a_patch_may_not_move_rename_or_rekind(patch: dict[str, Any], problem: str | None) -> None:
    change = kubernetes_change(spec("kubernetes.patch", **DEPLOYMENT, patch=patch), "agents")
    if problem is None:
        assert change == KubernetesChange("patch", "apps/v1", "Deployment", "agents", "web", patch)
    else:
        assert change == problem


# Each row: an apiVersion and kind, and why Handoff never changes it (None: a policy may list it).
# The core group's privileged kinds are privileged there only: a custom resource may be named so.
@pytest.mark.parametrize(
    ("api_version", "kind", "why"),
    [
        ("v1", "Secret", "Secrets hold credentials (ServiceAccount tokens, the ones Handoff generates)"),
        ("v1", "ServiceAccount", "ServiceAccounts are identities, the executor's own among them"),
        ("v1", "ConfigMap", None),
        ("example.com/v1", "Secret", None),
        ("example.com/v1", "ServiceAccount", None),
        ("rbac.authorization.k8s.io/v1", "Role", "RBAC objects grant rights"),
        ("rbac.authorization.k8s.io/v1", "Secret", "RBAC objects grant rights"),
        ("apps/v1", "Deployment", None),
    ],
)  # fmt: skip
def test_what_handoff_never_changes(api_version: str, kind: str, why: str | None) -> None:
    assert privileged(api_version, kind) == why


NOT_A_KIND = (
    "is not a kind: write group/version/Kind (apps/v1/Deployment) or v1/Kind for the core group"
)


# Each row: an entry of executors.kubernetes.kinds, and what it reads as (or the whole problem).
@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("apps/v1/Deployment", ("apps/v1", "Deployment")),
        ("v1/ConfigMap", ("v1", "ConfigMap")),
        ("Deployment", f'kinds "Deployment" {NOT_A_KIND}'),
        (7, f"kinds 7 {NOT_A_KIND}"),
        (None, f"kinds null {NOT_A_KIND}"),
        # The apiVersion and the kind are each checked, and the problem names the entry's place.
        (
            "Apps/v1/Deployment",
            "kinds \"Apps/v1\" is not an apiVersion: 'v1' for the core group or 'group/version'"
            " (apps/v1)",
        ),
        (
            "apps/v1/deployment",
            'kinds "deployment" is not a kind: a kind is at most 63 letters and digits, starting'
            " with a capital letter (Deployment)",
        ),
        ("apps/v1/", "kinds is empty: it must be a kind"),
    ],
)
def test_a_kind_key(key: object, expected: object) -> None:
    assert split_kind_key(key, "kinds") == expected


API_RULE = "'v1' for the core group or 'group/version' (apps/v1)"


# Each row: a parameter of kubernetes.delete (apps/v1 Deployment web in agents, but for it), and
# the whole problem, naming the parameter and showing the value (or what sort of value it is).
@pytest.mark.parametrize(
    ("parameter", "problem"),
    [
        ({"apiVersion": "a/b/c"}, f'parameters.apiVersion "a/b/c" is not an apiVersion: {API_RULE}'),
        ({"apiVersion": "apps//v1"}, f'parameters.apiVersion "apps//v1" is not an apiVersion: {API_RULE}'),
        ({"apiVersion": 5}, f"parameters.apiVersion must be a string ({API_RULE}), not 5"),
        ({"kind": "x y"},
         'parameters.kind "x y" is not a kind: a kind is at most 63 letters and digits, starting'
         " with a capital letter (Deployment)"),
        ({"kind": 3}, "parameters.kind must be a string, a kind: not 3"),
        ({"namespace": "A_B"},
         'parameters.namespace "A_B" is not a namespace: a namespace is at most 63 lowercase'
         " letters, digits and '-', starting and ending with a letter or digit"),
        ({"name": ["x"]}, "parameters.name must be a string, an object name: not a list"),
        ({"name": True}, "parameters.name must be a string, an object name: not true"),
    ],
)  # fmt: skip
def test_what_is_wrong_with_a_named_object(parameter: dict[str, Any], problem: str) -> None:
    request_spec = spec("kubernetes.delete", **(DEPLOYMENT | parameter))
    assert kubernetes_change(request_spec, "agents") == problem


NAMESPACE_RULE = (
    "is not a namespace: a namespace is at most 63 lowercase letters, digits and '-', starting and"
    " ending with a letter or digit"
)


# Each row: a policy's executors.kubernetes, the scope compiled from it, and the exact errors
# (the policy's condition message, which its author reads).
@pytest.mark.parametrize(
    ("raw", "kinds", "namespaces", "errors"),
    [
        ({"kinds": ["apps/v1/Deployment", "v1/ConfigMap"], "namespaces": ["a", "b"]},
         {"apps/v1/Deployment", "v1/ConfigMap"}, {"a", "b"}, []),
        ({"kinds": "apps/v1/Deployment"}, set(), set(),
         ["executors.kubernetes.kinds must be a list of strings"]),
        ({"kinds": ["Deployment", "apps/v1/Deployment"]}, {"apps/v1/Deployment"}, set(),
         [f'executors.kubernetes.kinds "Deployment" {NOT_A_KIND}']),
        ({"kinds": ["v1/Secret"]}, set(), set(),
         ["executors.kubernetes.kinds lists v1/Secret, which Handoff never changes: Secrets hold"
          " credentials (ServiceAccount tokens, the ones Handoff generates). An approved action"
          " must not widen anyone's rights or rewrite the audit trail; remove it"]),
        ({"namespaces": "a"}, set(), set(), ["executors.kubernetes.namespaces must be a list of strings"]),
        ({"namespaces": ["A_B", "ok"]}, set(), {"ok"},
         [f'executors.kubernetes.namespaces "A_B" {NAMESPACE_RULE}']),
        ("nothing", set(), set(), []),
    ],
)  # fmt: skip
def test_a_policys_kubernetes_scope(
    raw: object, kinds: set[str], namespaces: set[str], errors: list[str]
) -> None:
    found: list[str] = []
    assert compile_scope(raw, found) == KubernetesScope(frozenset(kinds), frozenset(namespaces))
    assert found == errors
