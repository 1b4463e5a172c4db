"""Hostile and malformed input against the real API server and operator.

Each malformed request or policy is refused by the API server with a message that names the
field and what is wrong, or, where the API server cannot judge it (CEL, values it stores as
sent), the operator marks it: the policy Ready=False, the request fail-closed to tier 4. After
every barrage the operator is alive and still decides an ordinary tier 1 request.
"""

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from handoff.cli.limits import JSON_DEPTH_LIMIT
from handoff.testing.cluster import Cluster, ConsoleProcess, OperatorProcess, eventually

from .helpers import AGENT, apply_ready_policy, condition, file, policy, ready, request, wait_for
from .hostile import Web, call, policies_path, requests_path, still_running

pytestmark = pytest.mark.integration
PLUGIN = str(Path(sys.executable).parent / "kubectl-handoff")
PARAMETERS_POLICY = Path(__file__).parents[2] / "crds" / "admission" / "parameters.yaml"


def request_doc(ns: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"agent": AGENT, "action": "db.query", "target": "test:1",
                            "summary": "hostile input test"}  # fmt: skip
    body.update(spec)
    return {
        "apiVersion": "handoff.dev/v1alpha1",
        "kind": "ActionRequest",
        "metadata": {"generateName": "hostile-", "namespace": ns},
        "spec": body,
    }


def policy_doc(ns: str, name: str, **spec: Any) -> dict[str, Any]:
    document = policy(ns, name)
    document["spec"].update(spec)
    return document


def nested(depth: int) -> str:
    """JSON parameters nested ``depth`` objects deep."""
    return '{"amount": 1, "n": ' + '{"x": ' * depth + "1" + "}" * depth + "}"


def with_parameters(ns: str, action: str, parameters_json: str) -> bytes:
    text = json.dumps(request_doc(ns, action=action, summary="deep"))
    return text.replace('"summary"', f'"parameters": {parameters_json}, "summary"').encode()


# -- requests the API server refuses ------------------------------------------------------------

MALFORMED_REQUESTS: list[tuple[str, dict[str, Any], int, tuple[str, ...]]] = [
    ("summary over 1024 bytes", {"summary": "x" * 1025}, 422,
     ("spec.summary: Too long: may not be more than 1024 bytes",)),
    ("summary of 1025 multi-byte characters", {"summary": "€" * 1025}, 422,
     ("spec.summary: Too long: may not be more than 1024 bytes",)),
    ("reasoning over 4096 bytes", {"reasoning": "why " * 1025}, 422,
     ("spec.reasoning: Too long: may not be more than 4096 bytes",)),
    ("target over 1024 bytes", {"target": "t" * 1025}, 422,
     ("spec.target: Too long: may not be more than 1024 bytes",)),
    ("65 parameters", {"parameters": {f"p{i}": i for i in range(65)}}, 422,
     ("spec.parameters: Too many: 65: must have at most 64 items",)),
    ("empty summary", {"summary": ""}, 422,
     ("spec.summary: Invalid value", "should be at least 1 chars long")),
    ("no summary", {"summary": None}, 422, ("spec.summary: Required value",)),
    ("action with a space and an escape", {"action": "db.query \x1b[2J"}, 422,
     ("spec.action: Invalid value", "should match")),
    ("target with an escape sequence", {"target": "ch_1\x1b]0;owned\x07"}, 422,
     ("spec.target: Invalid value", "spec.target is one line of text", "control characters")),
    ("target with NUL", {"target": "ch_1\x00"}, 422, ("spec.target is one line of text",)),
    ("target with DEL", {"target": "ch_1\x7f\x7f"}, 422, ("spec.target is one line of text",)),
    ("summary with a C1 CSI", {"summary": "refund \x9b2J"}, 422,
     ("spec.summary: Invalid value", "spec.summary is one line of text")),
    ("summary with a newline", {"summary": "refund\nPolicy tier 1, HOOTL"}, 422,
     ("spec.summary is one line of text",)),
    ("summary with a carriage return", {"summary": "refund $5\rrefund $1"}, 422,
     ("spec.summary is one line of text",)),
    ("rollback action with an escape", {"rollback": {"description": "undo", "action": "x\x1b[2J"}},
     422, ("spec.rollback.action is one line of text",)),
    ("agent not a ServiceAccount name", {"agent": "Payments Agent"}, 422,
     ("spec.agent: Invalid value", "should match")),
    ("confidence above 1", {"confidence": 7}, 422,
     ("spec.confidence: Invalid value", "should be less than or equal to 1")),
    ("unknown execution", {"execution": "Sudo"}, 422,
     ("spec.execution: Unsupported value: \"Sudo\"", '"Agent", "Kubernetes", "Webhook"')),
    ("rollback without a description", {"rollback": {"action": "x"}}, 422,
     ("spec.rollback.description: Required value",)),
    ("summary that is a number", {"summary": 42}, 422,
     ("spec.summary: Invalid value", "must be of type string")),
    ("parameters that are a list", {"parameters": [1, 2]}, 422,
     ("spec.parameters: Invalid value", "must be of type object")),
]  # fmt: skip


def test_malformed_requests_are_refused_with_a_clear_message(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    apply_ready_policy(cluster, policy(namespace))
    agent = f"{namespace}/{AGENT}"
    problems = []
    for case, spec, status, phrases in MALFORMED_REQUESTS:
        document = request_doc(namespace, **spec)
        document["spec"] = {k: v for k, v in document["spec"].items() if v is not None}
        answer = call(
            cluster, "POST", requests_path(namespace), json.dumps(document).encode(), agent
        )
        missing = [p for p in phrases if p not in answer.message]
        if answer.status != status or missing:
            problems.append(
                f"{case}: {answer.status} {answer.message!r}, wanted {status} {missing}"
            )
    assert not problems, "\n".join(problems)
    listed = json.loads(
        cluster.kubectl("get", "actionrequests", "-n", namespace, "-o", "json").stdout
    )
    assert listed["items"] == []
    still_running(cluster, operator, namespace)


def test_kubectl_apply_refuses_control_characters_in_one_line_fields_and_keeps_unicode(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    """An escape sequence in a target would reach ``kubectl get`` and Events raw: kubectl does
    not escape what it prints. Text in any script, with accents, symbols and emoji, is kept."""
    apply_ready_policy(cluster, policy(namespace))
    agent = f"{namespace}/{AGENT}"
    hostile = request_doc(namespace, target="stripe:charge/ch_1\x1b[2K\x1b[1Gstripe:charge/ch_2")
    hostile["metadata"] = {"name": "escape-target", "namespace": namespace}
    refused = cluster.kubectl("apply", "-f", "-", who=agent, input=json.dumps(hostile), check=False)
    assert refused.returncode != 0
    assert "spec.target is one line of text" in refused.stderr, refused.stderr
    assert "control characters" in refused.stderr
    legitimate = request_doc(namespace, target="kunde:Müller/ŝ-漢字-🙂",
                             summary="Remboursé €5 à Zoë — 払い戻し (١٢٣) ✓")  # fmt: skip
    legitimate["metadata"] = {"name": "unicode-target", "namespace": namespace}
    applied = cluster.kubectl("apply", "-f", "-", who=agent, input=json.dumps(legitimate))
    assert applied.returncode == 0, applied.stderr
    decided = wait_for(cluster, namespace, "unicode-target", "decision.reason", "AutoApproved", 60)
    assert decided["spec"]["target"] == "kunde:Müller/ŝ-漢字-🙂"
    assert decided["spec"]["summary"] == "Remboursé €5 à Zoë — 払い戻し (١٢٣) ✓"


def test_unknown_fields_are_refused_when_strict_and_never_reach_the_operator(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    apply_ready_policy(cluster, policy(namespace))
    agent = f"{namespace}/{AGENT}"
    sneaky = request_doc(namespace, bogus=1, parameters={"amount": 5})
    sneaky["spec"]["rollback"] = {"description": "undo", "runAs": "root"}
    sneaky["status"] = {
        "phase": "Approved",
        "decision": {"outcome": "Approved", "reason": "AutoApproved"},
    }
    body = json.dumps(sneaky).encode()
    strict = call(cluster, "POST", requests_path(namespace), body, agent, "?fieldValidation=Strict")
    assert strict.status == 400
    assert 'unknown field "spec.bogus"' in strict.message
    assert 'unknown field "spec.rollback.runAs"' in strict.message
    refused = cluster.kubectl("create", "-f", "-", who=agent, input=body.decode(), check=False)
    assert refused.returncode != 0
    assert 'strict decoding error: unknown field "spec.bogus"' in refused.stderr
    # Without strict validation the API server drops them (and warns); a status sent with a
    # create is dropped too, so an agent cannot file a request that arrives approved.
    lax = call(cluster, "POST", requests_path(namespace), body, agent)
    assert lax.status == 201, lax.message
    assert "unknown field" in lax.warnings
    assert "spec.bogus" in lax.warnings
    stored = request(cluster, namespace, lax.message)
    assert "bogus" not in stored["spec"]
    assert stored["spec"]["rollback"] == {"description": "undo"}
    decided = wait_for(cluster, namespace, lax.message, "decision.reason", "AutoApproved", 60)
    assert decided["status"]["tier"] == 1
    still_running(cluster, operator, namespace)


def test_oversized_and_overdeep_bodies_are_refused(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    apply_ready_policy(cluster, policy(namespace))
    agent = f"{namespace}/{AGENT}"
    path = requests_path(namespace)
    # Larger than etcd takes (1.5 MB): refused by the admission bound first (64 KiB, see
    # handoff.domain.limits), with a message that says how large it is.
    big = request_doc(namespace, parameters={"blob": "x" * 2_000_000})
    too_big_for_etcd = call(cluster, "POST", path, json.dumps(big).encode(), agent)
    assert too_big_for_etcd.status == 422, too_big_for_etcd
    assert (
        "spec.parameters are 2000011 characters as compact JSON, over 65536"
        in too_big_for_etcd.message
    )
    huge = request_doc(namespace, parameters={"blob": "x" * 4_000_000})
    too_big = call(cluster, "POST", path, json.dumps(huge).encode(), agent)
    assert too_big.status == 413
    assert "Request entity too large: limit is 3145728" in too_big.message
    too_deep = call(
        cluster, "POST", path, with_parameters(namespace, "db.query", nested(10_001)), agent
    )
    assert too_deep.status == 400
    assert "exceeded max depth" in too_deep.message
    # Under the decoder's limit: refused by the admission bound (32 levels), which keeps
    # `kubectl get` working for the namespace (Go's decoder stops at 10,000 levels, and the
    # Table kubectl asks for wraps each object a few more).
    deep = call(cluster, "POST", path, with_parameters(namespace, "db.query", nested(9_990)), agent)
    assert deep.status == 422
    assert "spec.parameters nest deeper than 32 levels" in deep.message
    assert (
        call(
            cluster, "POST", path, with_parameters(namespace, "db.query", nested(31)), agent
        ).status
        == 201
    )  # with "n" and parameters itself: 32 levels
    assert (
        call(
            cluster, "POST", path, with_parameters(namespace, "db.query", nested(32)), agent
        ).status
        == 422
    )
    assert cluster.kubectl("get", "actionrequests", "-n", namespace).returncode == 0
    garbage = call(cluster, "POST", path, b'{"apiVersion": "handoff.dev/v1alpha1", "kind": ', agent)
    assert garbage.status == 400
    assert "json parse error" in garbage.message or "unexpected end of JSON" in garbage.message
    still_running(cluster, operator, namespace)


# -- requests the API server stores, and the operator must survive --------------------------------


def test_without_the_admission_bound_deep_parameters_do_not_stop_the_operator(
    cluster: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    """Where the admission policies are not installed (the chart's ``admission.install``), the
    API server accepts parameters nested almost 10,000 deep. Python's JSON parser stops at its
    recursion limit and the CEL library overflows the stack far sooner, so before the fix one
    such request stopped the operator's watches for good; the operator and the reviewers' tools
    still survive them."""
    apply_ready_policy(cluster, policy(namespace))
    agent = f"{namespace}/{AGENT}"
    path = requests_path(namespace)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(JSON_DEPTH_LIMIT)  # to read them back here, as the operator does
    try:
        with _without_the_parameters_bound(cluster, namespace, agent):
            deep = _file_deep_requests(cluster, namespace, agent, path)
    finally:
        sys.setrecursionlimit(limit)
    try:
        still_running(cluster, operator, namespace)
        _reviewers_still_read(cluster, namespace, deep, tmp_path)
    finally:  # other tests' clients need not read them
        cluster.kubectl("delete", "actionrequests", "--all", "-n", namespace, "--timeout=60s")


@contextlib.contextmanager
def _without_the_parameters_bound(cluster: Cluster, namespace: str, agent: str) -> Iterator[None]:
    """The admission policy handoff-parameters unbound for a while, as on a cluster without it."""
    documents = list(yaml.safe_load_all(PARAMETERS_POLICY.read_text()))
    binding = next(d for d in documents if d["kind"] == "ValidatingAdmissionPolicyBinding")
    probe = with_parameters(namespace, "db.query", nested(40))
    path = requests_path(namespace)
    cluster.kubectl("delete", "validatingadmissionpolicybinding", binding["metadata"]["name"])
    try:
        created = eventually(
            lambda: (answer := call(cluster, "POST", path, probe, agent)).status == 201 and answer,
            30, "the API server to stop applying handoff-parameters",
        )  # fmt: skip
        cluster.kubectl("delete", "actionrequest", created.message, "-n", namespace)
        yield
    finally:
        cluster.apply(binding)
        eventually(
            lambda: call(cluster, "POST", path, probe, agent).status == 422,
            30, "the API server to apply handoff-parameters again",
        )  # fmt: skip


def _reviewers_still_read(cluster: Cluster, namespace: str, deep: str, tmp_path: Path) -> None:
    # The reviewers' tools read them too: the queue still lists, in the terminal and the browser.
    people = cluster.control_plane.write_kubeconfig(
        tmp_path / "people.kubeconfig", {"alice": cluster.token("alice")}, namespace
    )
    listed = subprocess.run(
        [PLUGIN, "--kubeconfig", str(people), "--context", "alice", "pending"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr[-2000:]
    console = ConsoleProcess(cluster, tmp_path, [namespace], None).start()
    try:
        alice = Web(console)
        assert alice.sign_in(cluster.token("alice"))[0] == 303
        status, _, html = alice.send("GET", "/queue")
        assert status == 200, html[-2000:]
        status, _, html = alice.send("GET", f"/requests/{namespace}/{deep}")
        assert status == 200, html[-2000:]
        assert "{&#34;amount&#34;: 1, &#34;n&#34;: {&#34;x&#34;: {&#34;x&#34;:" in html  # compact
    finally:
        console.stop()


def _file_deep_requests(cluster: Cluster, namespace: str, agent: str, path: str) -> str:
    # Tier 1 by its action alone: no `when` reads the parameters, so it is simply approved.
    read = call(cluster, "POST", path, with_parameters(namespace, "db.query", nested(9_990)), agent)
    assert read.status == 201, read.message
    # The refunds rule's `when` would read them: it cannot, so the request fails closed to tier 4.
    refund = call(
        cluster, "POST", path, with_parameters(namespace, "payments.refund", nested(5_000)), agent
    )
    assert refund.status == 201, refund.message
    wait_for(cluster, namespace, read.message, "decision.reason", "AutoApproved", timeout=60)
    # (It waits for a person, then expires: the lane's window is 10 s. Either way: tier 4.)
    waiting = wait_for(cluster, namespace, refund.message, "tier", 4, timeout=60)
    assert waiting["status"]["phase"] in ("AwaitingApproval", "Denied")
    classified = condition(waiting, "Classified")
    assert classified["reason"] == "FailClosed"
    assert "nest deeper than 100 levels" in classified["message"]
    assert "tier 4 (fail closed)" in classified["message"]
    return refund.message


def test_invalid_utf8_and_control_characters_are_stored_as_text_and_decided(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    apply_ready_policy(cluster, policy(namespace))
    agent = f"{namespace}/{AGENT}"
    body = json.dumps(request_doc(namespace, summary="PLACEHOLDER")).encode()
    invalid = body.replace(b"PLACEHOLDER", b"refund \xff\xfe\xc3( now")
    answer = call(cluster, "POST", requests_path(namespace), invalid, agent)
    assert answer.status == 201, answer.message
    # The API server replaces bytes that are not UTF-8 with U+FFFD: nothing undecodable is kept.
    assert (
        request(cluster, namespace, answer.message)["spec"]["summary"]
        == "refund \ufffd\ufffd\ufffd( now"
    )
    # Where a field may span lines (reasoning, parameters), controls are stored as sent and
    # escaped wherever they are shown; one-line fields (target, summary) refuse them (above).
    controls = "NUL\x00 bell\x07 escape\x1b[31mred\x1b[0m bidi\u202eevil\u202c line\nbreak \ud7ff"
    hostile = request_doc(namespace, summary="bidi\u202eevil\u202c \ud7ff", reasoning=controls,
                          parameters={"k\x00": "v\x1b", "\u202e": 1})  # fmt: skip
    created = call(cluster, "POST", requests_path(namespace), json.dumps(hostile).encode(), agent)
    assert created.status == 201, created.message
    decided = wait_for(cluster, namespace, created.message, "decision.reason", "AutoApproved", 60)
    assert decided["spec"]["reasoning"] == controls
    assert decided["status"]["tier"] == 1
    wait_for(cluster, namespace, answer.message, "decision.reason", "AutoApproved", 60)
    still_running(cluster, operator, namespace)


# -- policies: refused by the API server, or compiled and marked not Ready -------------------------


def _rule(index: int, **extra: Any) -> dict[str, Any]:
    return {"name": f"r{index}", "actions": [f"a{index}.*"], "tier": 1 + index % 4, **extra}


MALFORMED_POLICIES: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("257 rules", {"rules": [_rule(i) for i in range(257)]},
     ("spec.rules: Too many: 257: must have at most 256 items",)),
    ("a when over 4096 bytes", {"rules": [_rule(0, when="true && " * 600 + "true")]},
     ("spec.rules[0].when: Too long: may not be more than 4096 bytes",)),
    ("tier 5", {"rules": [{"name": "r", "actions": ["x"], "tier": 5}]},
     ("spec.rules[0].tier: Invalid value: 5", "should be less than or equal to 4")),
    ("a rule with no actions", {"rules": [{"name": "r", "actions": [], "tier": 1}]},
     ("spec.rules[0].actions: Invalid value", "should have at least 1 items")),
    ("two rules of one name", {"rules": [_rule(1), {**_rule(2), "name": "r1"}]},
     ("spec.rules[1]: Duplicate value",)),
    ("a window that is no duration", {"tiers": {"tier4": {"decisionWindow": "forever"}}},
     ("must be a duration from 10s to 168h",)),
    ("a window of a year", {"tiers": {"tier4": {"decisionWindow": "8760h"}}},
     ("must be a duration from 10s to 168h",)),
    ("tier 4 with a hold", {"tiers": {"tier4": {"holdFor": "1m"}}},
     ("tier 4 is always HITL and never approves when a hold or window passes; remove holdFor",)),
    ("tier 4 as HOTL", {"tiers": {"tier4": {"oversight": "HOTL"}}}, ("spec.tiers.tier4.oversight",)),
    ("a rule name that is no DNS label", {"rules": [{"name": "Rule One!", "actions": ["x"], "tier": 1}]},
     ("spec.rules[0].name: Invalid value", "should match")),
    ("65 governed agents", {"agents": {"serviceAccounts": [f"a{i}" for i in range(65)]}},
     ("spec.agents.serviceAccounts: Too many: 65: must have at most 64 items",)),
]  # fmt: skip


def test_malformed_policies_are_refused_with_a_clear_message(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    problems = []
    for index, (case, spec, phrases) in enumerate(MALFORMED_POLICIES):
        document = policy_doc(namespace, f"bad-{index}", **spec)
        answer = call(cluster, "POST", policies_path(namespace), json.dumps(document).encode())
        missing = [p for p in phrases if p not in answer.message]
        if answer.status != 422 or missing:
            problems.append(f"{case}: {answer.status} {answer.message!r}, missing {missing}")
    assert not problems, "\n".join(problems)
    apply_ready_policy(cluster, policy(namespace))
    still_running(cluster, operator, namespace)


WHEN_THAT_FAIL_TO_COMPILE: list[tuple[str, str]] = [
    ("parameters.amount <=", "does not parse"),
    ("lookup(target) == 'x'", "calls unknown functions lookup"),
    ("request.amount > 1", "names unknown variables request"),
    ("confidence > 0.9", "names 'confidence'"),
    # Too costly: nested loops over lists the agent sizes (about 700,000 items fit in a request).
    ("parameters.items.all(a, parameters.items.exists(b, a == b))", "is too costly"),
    (
        "["
        + ",".join(map(str, range(300)))
        + "].all(a, ["
        + ",".join(map(str, range(300)))
        + "].all(b, [0, 1, 2, 3].exists(c, a + b + c < 0)))",
        "is too costly",
    ),
    ("parameters.amount < 10 || labels['x\\u0000'] == '\\x1b'", ""),  # odd but valid: compiles
]


def test_when_that_does_not_compile_marks_the_policy_and_governs_as_tier4(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    apply_ready_policy(cluster, policy(namespace))
    for index, (when, complaint) in enumerate(WHEN_THAT_FAIL_TO_COMPILE):
        name = f"when-{index}"
        rules = [{"name": "odd", "actions": ["db.*"], "tier": 1, "when": when}]
        cluster.apply(policy_doc(namespace, name, rules=rules))

        def compiled(name: str = name) -> dict[str, Any] | None:
            body = cluster.get("agentactionpolicy", name, namespace)
            observed = body.get("status", {}).get("observedGeneration")
            return (
                body
                if ready(body) is not None and observed == body["metadata"]["generation"]
                else None
            )

        body = eventually(compiled, 60, f"policy {name} compiled")
        ready_condition = condition(body, "Ready")
        if complaint:
            assert ready_condition["status"] == "False", ready_condition
            assert ready_condition["reason"] == "CompileFailed"
            assert complaint in ready_condition["message"]
            assert "rule 'odd'" in ready_condition["message"]
        else:
            assert ready_condition["status"] == "True", ready_condition
    # Every action those broken policies govern is tier 4, even a read that another one calls tier 1.
    name = file(cluster, namespace, "db.query")
    waiting = wait_for(cluster, namespace, name, "phase", "AwaitingApproval", timeout=60)
    assert waiting["status"]["tier"] == 4
    assert condition(waiting, "Classified")["reason"] == "FailClosed"
    assert operator.process is not None
    assert operator.process.poll() is None


def test_a_policy_of_256_conditional_rules_is_compiled_and_used(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    rules = [
        {"name": f"r{i}", "actions": [f"svc{i}.*", f"other{i}.?", "payments.[!x]*"][: 1 + i % 3],
         "targets": ["test:*"] * (i % 2), "tier": 1 + i % 4,
         "when": f"has(parameters.amount) && parameters.amount > {i} && "
                 f"(target.startsWith('test') || labels.exists(k, k == 'r{i}'))"}
        for i in range(256)
    ]  # fmt: skip
    rules[-1] = {"name": "reads", "actions": ["db.query"], "tier": 1}
    apply_ready_policy(cluster, policy_doc(namespace, "payments", rules=rules))
    # payments.refund of 2500 to test:1: r2 is the first rule whose globs and `when` match.
    first = file(cluster, namespace, "payments.refund")
    queued = wait_for(cluster, namespace, first, "phase", "Queued", timeout=60)
    assert (queued["status"]["rule"], queued["status"]["tier"]) == ("r2", 3)
    still_running(cluster, operator, namespace)
