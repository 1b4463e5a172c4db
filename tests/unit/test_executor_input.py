"""The Kubernetes executor's reading of agent-written parameters: every part of a change is a
valid Kubernetes name or the request is refused with a sentence, paths are built from escaped
segments, status.preview comes from the spec alone and never shows a Secret's data, and policies cannot list kinds that carry
privilege. Table-driven, pure."""

from dataclasses import replace
from typing import Any

import pytest
from handoff.adapters.kube import NotFound, resource_path, service_account_review
from handoff.controller.executor_access import executor_account, executor_objects
from handoff.domain.decide import decide
from handoff.domain.executors import (
    KubernetesChange,
    KubernetesScope,
    allowed,
    compile_scope,
    kubernetes_change,
    returned_problem,
)
from handoff.domain.kubediff import comparable, preview, requested
from handoff.domain.kubenames import (
    api_version_problem,
    kind_problem,
    name_problem,
    namespace_problem,
    quoted,
)
from handoff.domain.policy import compile_policy
from handoff.domain.reasons import Reason

from .helpers import AGENT, CREATED, NS, request

TRAVERSALS = [
    "../../../../../../api/v1/namespaces/other/secrets/token",
    "../../other/deployments/web",
    "../../../../../../apis/handoff.dev/v1alpha1/namespaces/agents/actionrequests/victim/status",
    "%2e%2e/%2e%2e/other/deployments/web",
    "%2E%2E",
    "..",
    ".",
    "web/status",
    "web?dryRun=All",
    "web#fragment",
    "Web",
    "web ",
    " web",
    "web\n",
    "-web",
    "web-",
    "web..prod",
    "w" * 254,
    "",
    "web\u202e",
    "wéb",
]


@pytest.mark.parametrize(
    ("value", "valid"),
    [("web", True), ("web-1", True), ("web.prod", True), ("a", True), ("1", True),
     ("w" * 253, True), *((t, False) for t in TRAVERSALS), (None, False), (3, False),
     ({"a": 1}, False), (["web"], False), (True, False)],
)  # fmt: skip
def test_names_are_dns_1123_subdomains_and_nothing_else(value: Any, valid: bool) -> None:
    problem = name_problem(value, "parameters.name")
    assert (problem is None) is valid
    if problem is not None:
        assert problem.startswith("parameters.name")
        assert "\n" not in problem
        assert "\u202e" not in problem


@pytest.mark.parametrize(
    ("value", "valid"),
    [("agents", True), ("t-1a", True), ("a" * 63, True), ("a" * 64, False), ("a.b", False),
     ("Agents", False), ("../kube-system", False), ("", False), ("-a", False), (7, False)],
)  # fmt: skip
def test_namespaces_are_dns_1123_labels(value: Any, valid: bool) -> None:
    assert (namespace_problem(value, "parameters.namespace") is None) is valid


@pytest.mark.parametrize(
    ("value", "valid"),
    [("v1", True), ("apps/v1", True), ("handoff.dev/v1alpha1", True), ("apps/v1beta2", True),
     ("apps/../v1", False), ("../v1", False), ("apps/v1/", False), ("/v1", False),
     ("apps//v1", False), ("a/b/v1", False), ("Apps/v1", False), ("apps/V1", False),
     ("apps/v1?x", False), ("", False), ("%2e%2e/v1", False), (1, False)],
)  # fmt: skip
def test_api_versions(value: Any, valid: bool) -> None:
    assert (api_version_problem(value, "parameters.apiVersion") is None) is valid


@pytest.mark.parametrize(
    ("value", "valid"),
    [("Deployment", True), ("ConfigMap", True), ("deployment", False), ("Deploy/ment", False),
     ("..", False), ("Deployment/status", False), ("D" * 64, False), ("", False)],
)  # fmt: skip
def test_kinds(value: Any, valid: bool) -> None:
    assert (kind_problem(value, "parameters.kind") is None) is valid


def test_quoted_values_are_short_escaped_and_never_walk_nested_data() -> None:
    assert quoted("a\nb\u202ec") == '"a\\nb\\u202ec"'
    assert len(quoted("x" * 10_000)) <= 80
    deep: Any = {}
    for _ in range(5000):
        deep = {"a": deep}
    assert quoted(deep) == "an object"
    assert quoted([deep]) == "a list"


# Each row: a value, and the literal a sentence quotes (80 characters at most: a longer one is
# cut to 76 and closed with an ellipsis and its quote, at exactly 80).
@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("x" * 78, '"' + "x" * 78 + '"'),  # 80 with its quotes: whole
        ("x" * 79, '"' + "x" * 75 + '..."'),  # 81: cut
        ("x" * 500, '"' + "x" * 75 + '..."'),
        ("\n" * 40, '"' + "\\n" * 37 + "\\" + '..."'),  # escapes count as what they are
        (None, "null"),
        (True, "true"),
        (7, "7"),
        (1.5, "1.5"),
        ((1, 2), "a list"),
    ],
)  # fmt: skip
def test_quoted_is_at_most_80_characters(value: object, literal: str) -> None:
    assert quoted(value) == literal
    assert len(literal) <= 80


def _spec(action: str, **parameters: Any) -> dict[str, Any]:
    return {"action": action, "parameters": parameters}


DEPLOY = {"apiVersion": "apps/v1", "kind": "Deployment"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        # Item 7: a manifest whose metadata is not an object raised on every event.
        (_spec("kubernetes.apply", manifest={**DEPLOY, "metadata": "oops"}),
         'parameters.manifest.metadata is "oops"'),
        (_spec("kubernetes.apply", manifest="oops"), 'parameters.manifest is "oops"'),
        (_spec("kubernetes.apply", manifest=[1]), "parameters.manifest is a list"),
        (_spec("kubernetes.apply", manifest={**DEPLOY, "metadata": ["x"]}),
         "parameters.manifest.metadata is a list"),
        (_spec("kubernetes.apply", manifest={**DEPLOY, "metadata": {}}), "metadata.name"),
        (_spec("kubernetes.apply", manifest={**DEPLOY, "metadata": {"name": {"x": 1}}}),
         "parameters.manifest.metadata.name must be a string"),
        (_spec("kubernetes.apply", manifest={**DEPLOY, "metadata": {"name": "web", "generateName": "w-"}}),
         "not generateName"),
        (_spec("kubernetes.apply", manifest={**DEPLOY, "metadata": {"name": "../../x"}}),
         'parameters.manifest.metadata.name "../../x" is not an object name'),
        (_spec("kubernetes.apply", manifest={**DEPLOY, "metadata": {"name": "web", "namespace": "../x"}}),
         "parameters.manifest.metadata.namespace"),
        (_spec("kubernetes.apply", manifest={"apiVersion": "apps/../v1", "kind": "Deployment",
                                             "metadata": {"name": "web"}}),
         "parameters.manifest.apiVersion"),
        (_spec("kubernetes.apply", manifest={"apiVersion": "apps/v1", "kind": "Deployment/status",
                                             "metadata": {"name": "web"}}),
         "parameters.manifest.kind"),
        (_spec("kubernetes.scale", **DEPLOY, name="web", replicas=True), "a whole number"),
        (_spec("kubernetes.scale", **DEPLOY, name="web", replicas="3"), "a whole number"),
        (_spec("kubernetes.scale", **DEPLOY, name="web", replicas=-1), "from 0"),
        (_spec("kubernetes.scale", **DEPLOY, name="web", replicas=2**31), "from 0"),
        (_spec("kubernetes.scale", **DEPLOY, name="../../other/deployments/web", replicas=3),
         "is not an object name"),
        (_spec("kubernetes.scale", **DEPLOY, name="web", namespace="Other", replicas=3),
         "parameters.namespace"),
        (_spec("kubernetes.patch", **DEPLOY, name="web", patch=[1]), "a JSON merge patch"),
        (_spec("kubernetes.patch", **DEPLOY, name="web", patch={"metadata": {"name": "x"}}),
         "may not change metadata.name"),
        (_spec("kubernetes.patch", **DEPLOY, name="web", patch={"kind": "Secret"}),
         "may not change apiVersion or kind"),
        (_spec("kubernetes.patch", **DEPLOY, name={"a": 1}, patch={}),
         "parameters.name must be a string"),
        (_spec("kubernetes.delete", apiVersion="apps/v1", name="web"), "parameters.kind"),
        (_spec("kubernetes.delete", **DEPLOY, name="web?x"), "is not an object name"),
        ({"action": "kubernetes.delete", "parameters": "oops"}, "needs parameters, an object"),
        ({"action": ["kubernetes.delete"]}, "not a list"),
        ({"action": "kubernetes.exec"}, 'not "kubernetes.exec"'),
    ],
)  # fmt: skip
def test_malformed_and_hostile_changes_are_sentences_never_exceptions(
    spec: dict[str, Any], message: str
) -> None:
    result = kubernetes_change(spec, NS)
    assert isinstance(result, str), result
    assert message in result


@pytest.mark.parametrize("name", TRAVERSALS)
def test_every_operation_refuses_every_traversal(name: str) -> None:
    for action, extra in [("kubernetes.scale", {"replicas": 1}), ("kubernetes.delete", {}),
                          ("kubernetes.patch", {"patch": {"data": {"token": None}}})]:  # fmt: skip
        assert isinstance(kubernetes_change(_spec(action, **DEPLOY, name=name, **extra), NS), str)
    manifest = {**DEPLOY, "metadata": {"name": name}}
    assert isinstance(kubernetes_change(_spec("kubernetes.apply", manifest=manifest), NS), str)


def test_a_valid_change_keeps_its_parts() -> None:
    change = kubernetes_change(_spec("kubernetes.scale", **DEPLOY, name="web", replicas=3), NS)
    assert change == KubernetesChange("scale", "apps/v1", "Deployment", NS, "web",
                                      {"spec": {"replicas": 3}})  # fmt: skip
    assert isinstance(change, KubernetesChange)
    assert (change.group, change.version) == ("apps", "v1")
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}}
    applied = kubernetes_change(_spec("kubernetes.apply", manifest=manifest), NS)
    assert isinstance(applied, KubernetesChange)
    assert (applied.group, applied.namespace) == ("", NS)


SCOPE = KubernetesScope(frozenset({"apps/v1/Deployment", "v1/ConfigMap"}), frozenset({NS}))


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (KubernetesChange("scale", "apps/v1", "Deployment", NS, "web"), None),
        (KubernetesChange("scale", "apps/v1", "Deployment", "other", "web"), "namespace other"),
        (KubernetesChange("delete", "v1", "Secret", NS, "token"), "does not let Handoff change v1/Secret"),
        (KubernetesChange("delete", "v1", "ConfigMap", NS, "handoff-previous-1234"), "keeps an object's state"),
        (KubernetesChange("apply", "apps/v1", "Deployment", NS, "web",
                          {"spec": {"template": {"spec": {"serviceAccountName": "handoff-executor-payments"}}}}),
         "executor ServiceAccounts"),
    ],
)  # fmt: skip
def test_what_the_policy_allows(change: KubernetesChange, problem: str | None) -> None:
    answer = allowed(change, SCOPE, NS)
    assert answer is None if problem is None else problem in str(answer)


@pytest.mark.parametrize(
    "kind",
    ["handoff.dev/v1alpha1/ActionRequest", "handoff.dev/v1alpha1/AgentActionPolicy",
     "rbac.authorization.k8s.io/v1/Role", "rbac.authorization.k8s.io/v1/RoleBinding",
     "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy", "v1/Secret",
     "v1/ServiceAccount", "v1/Event", "events.k8s.io/v1/Event",
     "coordination.k8s.io/v1/Lease", "certificates.k8s.io/v1/CertificateSigningRequest",
     "wgpolicyk8s.io/v1alpha2/PolicyReport", "apiextensions.k8s.io/v1/CustomResourceDefinition"],
)  # fmt: skip
def test_policies_may_not_list_kinds_that_carry_privilege(kind: str) -> None:
    errors: list[str] = []
    scope = compile_scope({"kinds": [kind, "apps/v1/Deployment"]}, errors)
    assert scope.kinds == {"apps/v1/Deployment"}
    assert len(errors) == 1
    assert f"lists {kind}, which Handoff never changes" in errors[0]


@pytest.mark.parametrize(
    ("raw", "message"),
    [({"kinds": ["Deployment"]}, "is not a kind"), ({"kinds": ["apps/../v1/Deployment"]}, "apiVersion"),
     ({"kinds": ["apps/v1/deployments"]}, "is not a kind"), ({"kinds": "apps/v1/Deployment"}, "a list"),
     ({"namespaces": ["Other"]}, "is not a namespace"), ({"namespaces": ["../x"]}, "namespace")],
)  # fmt: skip
def test_malformed_scopes_do_not_compile(raw: dict[str, Any], message: str) -> None:
    errors: list[str] = []
    compile_scope(raw, errors)
    assert errors
    assert message in errors[0]


def test_a_policy_listing_a_privileged_kind_is_not_ready() -> None:
    compiled = compile_policy(NS, "p", {"agents": {"serviceAccounts": [AGENT]},  # type: ignore[typeddict-unknown-key]
                                        "executors": {"kubernetes": {"kinds": ["v1/Secret"]}}})  # fmt: skip
    assert not compiled.ready
    assert "v1/Secret, which Handoff never changes" in compiled.errors[0]


def test_a_malformed_executor_request_is_decided_invalid() -> None:
    """Item 7: decided once, Denied with reason Invalid, instead of raising on every event."""
    compiled = compile_policy(NS, "payments", {  # type: ignore[typeddict-unknown-key]
        "agents": {"serviceAccounts": [AGENT]},
        "executors": {"kubernetes": {"kinds": ["apps/v1/Deployment"]}},
        "rules": [{"name": "apply", "actions": ["kubernetes.*"], "tier": 2}],
    })  # fmt: skip
    state = request("kubernetes.apply", parameters={"manifest": {**DEPLOY, "metadata": "oops"}})
    state = replace(state, spec={**state.spec, "execution": "Kubernetes",
                                 "rollback": {"description": "undo"}})  # fmt: skip
    step = decide([compiled], state, CREATED)
    assert step.decision is not None
    assert step.decision.reason == Reason.INVALID
    assert 'parameters.manifest.metadata is "oops"' in step.decision.message


@pytest.mark.parametrize(
    ("answer", "ok"),
    [({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"namespace": NS, "name": "web"}}, True),
     ({"apiVersion": "v1", "kind": "Secret", "metadata": {"namespace": "other", "name": "token"}}, False),
     ({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"namespace": "other", "name": "web"}}, False),
     ({"apiVersion": "handoff.dev/v1alpha1", "kind": "ActionRequest", "metadata": {"namespace": NS, "name": "web"}}, False),
     ({"kind": "Status", "status": "Failure"}, False), ("text", False), (None, False)],
)  # fmt: skip
def test_the_object_that_comes_back_must_be_the_one_asked_for(answer: Any, ok: bool) -> None:
    change = KubernetesChange("patch", "apps/v1", "Deployment", NS, "web")
    assert (returned_problem(change, answer) is None) is ok


@pytest.mark.parametrize(
    ("parts", "path"),
    [(("", "v1", "secrets", "a", "../../x"), "/api/v1/namespaces/a/secrets/..%2F..%2Fx"),
     (("apps", "v1", "deployments", "a", "%2e%2e"), "/apis/apps/v1/namespaces/a/deployments/%252e%252e"),
     (("apps", "v1", "deployments", "a", "w?x#y"), "/apis/apps/v1/namespaces/a/deployments/w%3Fx%23y"),
     (("apps", "v1", "deployments", "../b", "web"), "/apis/apps/v1/namespaces/..%2Fb/deployments/web"),
     (("", "v1", "configmaps", "a", None), "/api/v1/namespaces/a/configmaps"),
     (("handoff.dev", "v1alpha1", "actionrequests", None, None), "/apis/handoff.dev/v1alpha1/actionrequests")],
)  # fmt: skip
def test_paths_are_built_from_escaped_segments(parts: tuple[Any, ...], path: str) -> None:
    assert resource_path(*parts) == path


@pytest.mark.parametrize("name", [".", ".."])
def test_dot_segments_name_nothing(name: str) -> None:
    with pytest.raises(NotFound):
        resource_path("", "v1", "configmaps", "a", name)


def test_a_service_accounts_access_review_asks_with_the_groups_every_service_account_has() -> None:
    attributes = {"verb": "create", "group": "handoff.dev", "resource": "actionrequests",
                  "namespace": "a"}  # fmt: skip
    assert service_account_review("a", "bot", attributes) == {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": "system:serviceaccount:a:bot",
            "groups": [
                "system:serviceaccounts",
                "system:serviceaccounts:a",
                "system:authenticated",
            ],
            "resourceAttributes": attributes,
        },
    }


SECRET = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "t", "annotations": {
    "kubectl.kubernetes.io/last-applied-configuration": '{"data":{"token":"c2VjcmV0"}}'}},
    "data": {"token": "c2VjcmV0"}, "stringData": {"x": "secret"}}  # fmt: skip


def test_previews_never_show_a_secrets_data() -> None:
    view = comparable(SECRET)
    assert view is not None
    assert "data" not in view
    assert "stringData" not in view
    after = {**SECRET, "data": {}}
    text = preview(SECRET, after)
    assert "c2VjcmV0" not in text
    assert "secret" not in text.replace("Secret", "")
    asked = KubernetesChange("patch", "v1", "Secret", NS, "t", {"data": {"token": "c2VjcmV0"},
                             "stringData": {"x": "secret"}, "metadata": {"labels": {"a": "b"}}})  # fmt: skip
    text = requested(asked)
    assert "c2VjcmV0" not in text
    assert "secret" not in text.replace("Secret", "")
    assert 'metadata.labels.a = "b"' in text


def test_the_live_preview_names_each_changed_value() -> None:
    before = {"kind": "Deployment", "spec": {"replicas": 1, "image": "a:1"}}
    after = {"kind": "Deployment", "spec": {"replicas": 3, "image": "a:2", "paused": True}}
    assert preview(before, after).splitlines() == [
        'spec.image: "a:1" -> "a:2"', "spec.paused: (none) -> true", "spec.replicas: 1 -> 3",
    ]  # fmt: skip
    assert preview(before, before) == "no change"
    assert preview(None, after).splitlines()[0] == "the object would be created"
    assert preview(before, None) == "the object would be deleted"


LIVE = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": NS},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [
            {"name": "web", "image": "nginx:1.25", "env": [{"name": "K", "value": "s3cret"}]}]}}}}  # fmt: skip


@pytest.mark.parametrize(
    ("parameters", "lines"),
    [
        ({"action": "kubernetes.scale", "replicas": 3},
         [f"scale Deployment {NS}/web (a JSON merge patch), setting:", "spec.replicas = 3"]),
        ({"action": "kubernetes.patch", "patch": {"spec": {"paused": True, "x": None}}},
         [f"patch Deployment {NS}/web (a JSON merge patch), setting:", "spec.paused = true",
          "spec.x: removed"]),
        ({"action": "kubernetes.delete"}, [f"delete Deployment {NS}/web"]),
        ({"action": "kubernetes.apply", "manifest": {"apiVersion": "apps/v1", "kind": "Deployment",
          "metadata": {"name": "web", "labels": {"a/b": "c"}}, "spec": {"replicas": 2}}},
         [f"apply Deployment {NS}/web (server-side apply: creates it if it does not exist),"
          " setting:", 'metadata.labels.a/b = "c"', "spec.replicas = 2"]),
    ],
)  # fmt: skip
def test_status_preview_is_the_spec_s_change_alone(
    parameters: dict[str, Any], lines: list[str]
) -> None:
    """status.preview is readable by every agent of the namespace: it is a function of the spec,
    so it says the same whatever the object holds (no equality oracle) and never its values."""
    parameters = dict(parameters)  # the row is shared: a second run of it needs its action
    action = parameters.pop("action")
    spec = {"action": action, "parameters": {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "web", **parameters}}  # fmt: skip
    change = kubernetes_change(spec, NS)
    assert isinstance(change, KubernetesChange)
    assert requested(change).splitlines() == lines
    assert "nginx:1.25" not in requested(change)


def test_status_preview_escapes_what_could_break_its_lines() -> None:
    change = KubernetesChange("patch", "apps/v1", "Deployment", NS, "web",
                              {"metadata": {"annotations": {"a\nspec.replicas = 0\u202e": "x\ny"}}})  # fmt: skip
    text = requested(change)
    assert len(text.splitlines()) == 2
    assert "\u202e" not in text


def test_the_executor_identity_holds_exactly_the_listed_kinds_and_namespaces() -> None:
    compiled = compile_policy(NS, "payments", {  # type: ignore[typeddict-unknown-key]
        "agents": {"serviceAccounts": [AGENT]},
        "executors": {"kubernetes": {"kinds": ["apps/v1/Deployment"], "namespaces": [NS, "web"]}},
    })  # fmt: skip
    rules = [{"apiGroups": ["apps"], "resources": ["deployments"],
              "verbs": ["get", "create", "update", "patch", "delete"]}]  # fmt: skip
    documents = executor_objects(compiled, "uid-1", rules)
    account = documents[0]
    assert account["kind"] == "ServiceAccount"
    assert account["metadata"]["name"] == "handoff-executor-payments"
    assert account["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    roles = [d for d in documents if d["kind"] == "Role"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == [NS, "web"]
    assert all(r["rules"] == rules for r in roles)
    other = next(r for r in roles if r["metadata"]["namespace"] == "web")
    assert "ownerReferences" not in other["metadata"]  # owners never cross namespaces
    assert other["metadata"]["labels"]["handoff.dev/executor-of"] == "uid-1"
    bindings = [d for d in documents if d["kind"] == "RoleBinding"]
    assert all(b["subjects"] == [{"kind": "ServiceAccount", "name": "handoff-executor-payments",
                                  "namespace": NS}] for b in bindings)  # fmt: skip


def test_executor_account_names_stay_valid_for_the_longest_policy_names() -> None:
    long = "p" * 240 + "." + "q" * 12
    name = executor_account(long)
    assert name_problem(name, "name") is None
    assert name != executor_account("p" * 240 + "." + "r" * 12)
