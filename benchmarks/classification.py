"""Classification: Handoff's compiled policy beside Cedar (cedarpy) and OPA on the same requests.

A seeded generator writes one policy of N ordered rules (globs on action and target, and CEL
``when`` conditions) and translates each rule into Cedar and Rego. Every engine decides every
request once in a warm process, each call timed on its own:

- Handoff: ``classify([policy], facts)``, the operator's own call, facts built beforehand.
- Cedar: ``cedarpy.is_authorized`` with a pre-parsed PolicySet and Entities; one ``permit`` per
  rule. Cedar has no rule order, so it reports every matching policy and the first rule is the
  lowest index among them (that pick is inside the timed region).
- OPA: the Rego module compiled once (``PrepareForEval``) in a Go program, one ``Eval`` per
  request timed in-process; the rules are one ``else`` chain, so OPA also stops at the first match.

Equivalence: all three must name the same rule (or the default) for every request; a single
difference fails the benchmark.
"""

import json
import random
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import ratio, stats
from handoff.domain.classify import RequestFacts, classify
from handoff.domain.policy import CompiledPolicy, compile_policy

ROOT = Path(__file__).resolve().parents[1]
OPA_BINARY = ROOT / ".handoff" / "bin" / "opa-classify"

DOMAINS = ["payments", "crm", "db", "deploy", "email", "k8s", "kb", "report", "ticket", "storage",
           "iam", "billing", "search", "cache", "queue", "dns", "secrets", "ml", "backup", "audit"]  # fmt: skip
VERBS = ["read", "list", "get", "create", "update", "delete", "refund", "charge", "send", "scale",
         "restart", "rotate", "export", "import", "purge"]  # fmt: skip
SUBS = ["v1", "admin", "bulk", "internal"]
TARGETS = ["stripe:charge/ch_1", "prod:db/users", "staging:db/orders", "s3://bucket/key",
           "prod-eu:svc/api", "", "github:repo/handoff", "stripe:refund/re_9"]  # fmt: skip
TARGET_GLOBS = [["stripe:*"], ["prod:*", "prod-eu:*"], ["s3://*"], ["*:db/*"], ["github:*"]]
AGENTS = [f"agent-{i}" for i in range(5)]


@dataclass(frozen=True)
class Condition:
    cel: str
    cedar: str
    rego: str


def _condition(rng: random.Random) -> Condition:  # noqa: PLR0911 - one return per template
    n = rng.choice([10, 100, 500, 1000, 5000])
    env = rng.choice(["prod", "staging", "dev"])
    prefix = rng.choice(["prod", "stripe:", "s3://"])
    currencies = rng.sample(["USD", "EUR", "GBP", "JPY"], 2)
    agent = rng.choice(AGENTS)
    kind = rng.randrange(7)
    if kind == 0:
        return Condition(f"has(parameters.amount) && parameters.amount <= {n}",
                         f"context.parameters has amount && context.parameters.amount <= {n}",
                         f"input.parameters.amount <= {n}")  # fmt: skip
    if kind == 1:
        return Condition(f"has(parameters.amount) && parameters.amount > {n}",
                         f"context.parameters has amount && context.parameters.amount > {n}",
                         f"input.parameters.amount > {n}")  # fmt: skip
    if kind == 2:
        return Condition(f'has(labels.env) && labels.env == "{env}"',
                         f'context.labels has env && context.labels.env == "{env}"',
                         f'input.labels.env == "{env}"')  # fmt: skip
    if kind == 3:
        return Condition(f'target.startsWith("{prefix}")', f'context.target like "{prefix}*"',
                         f'startswith(input.target, "{prefix}")')  # fmt: skip
    if kind == 4:
        listed = ", ".join(f'"{c}"' for c in currencies)
        return Condition(f"has(parameters.currency) && parameters.currency in [{listed}]",
                         f"context.parameters has currency && [{listed}].contains(context.parameters.currency)",
                         f"input.parameters.currency in {{{listed}}}")  # fmt: skip
    if kind == 5:
        return Condition(f'has(parameters.amount) && parameters.amount > {n} && has(labels.env) && labels.env != "dev"',
                         f'context.parameters has amount && context.parameters.amount > {n} && context.labels has env && context.labels.env != "dev"',
                         f'input.parameters.amount > {n}\n    input.labels.env != "dev"')  # fmt: skip
    return Condition(
        f'agent == "{agent}"', f'context.agent == "{agent}"', f'input.agent == "{agent}"'
    )


def _action_globs(rng: random.Random) -> list[str]:
    domain, verb, sub = rng.choice(DOMAINS), rng.choice(VERBS), rng.choice(SUBS)
    kind = rng.randrange(10)
    if kind < 4:
        return sorted(
            {f"{rng.choice(DOMAINS)}.{rng.choice(VERBS)}" for _ in range(rng.randint(1, 3))}
        )
    if kind < 6:
        return [f"{domain}.*"]
    if kind < 8:
        return [f"{domain}.{sub}.*", f"{domain}.{verb}"]
    if kind == 8:
        return [f"*.{verb}"]
    return [f"{domain}.*.{verb}"]


def make_rules(count: int, seed: int = 9) -> list[dict[str, Any]]:
    """``count`` rules as a policy's spec.rules, each with its Cedar and Rego condition text."""
    rng = random.Random(seed)  # noqa: S311 - a seeded workload, not a secret
    rules = []
    for i in range(count):
        rule: dict[str, Any] = {"name": f"r{i}", "actions": _action_globs(rng),
                                "tier": rng.choice([1, 1, 2, 3, 4])}  # fmt: skip
        if rng.random() < 0.3:
            rule["targets"] = rng.choice(TARGET_GLOBS)
        if rng.random() < 0.45:
            rule["condition"] = _condition(rng)
        rules.append(rule)
    return rules


def make_requests(count: int, seed: int = 11) -> list[dict[str, Any]]:
    """Varied requests: about 1,500 distinct action names, optional parameters and labels."""
    rng = random.Random(seed)  # noqa: S311 - a seeded workload, not a secret
    requests = []
    for _ in range(count):
        domain, verb = rng.choice(DOMAINS), rng.choice(VERBS)
        action = f"{domain}.{verb}" if rng.random() < 0.6 else f"{domain}.{rng.choice(SUBS)}.{verb}"
        parameters: dict[str, Any] = {"count": rng.randrange(100)}
        if rng.random() < 0.8:
            parameters["amount"] = rng.randrange(10_000)
        if rng.random() < 0.7:
            parameters["currency"] = rng.choice(["USD", "EUR", "GBP", "JPY"])
        labels = {"team": rng.choice(["a", "b"])}
        if rng.random() < 0.6:
            labels["env"] = rng.choice(["prod", "staging", "dev"])
        requests.append({"agent": rng.choice(AGENTS), "action": action,
                         "target": rng.choice(TARGETS), "parameters": parameters, "labels": labels})  # fmt: skip
    return requests


def handoff_policy(rules: list[dict[str, Any]], default_tier: int) -> CompiledPolicy:
    spec: Any = {
        "agents": {"serviceAccounts": AGENTS},
        "defaultTier": default_tier,
        "rules": [{k: v for k, v in r.items() if k != "condition"}
                  | ({"when": r["condition"].cel} if "condition" in r else {}) for r in rules],
    }  # fmt: skip
    policy = compile_policy("bench", "bench", spec)
    assert policy.ready, policy.errors
    return policy


def _cedar_like(glob: str) -> str:
    return glob  # the generated globs use only '*', which Cedar's like reads the same way


def cedar_policies(rules: list[dict[str, Any]]) -> str:
    texts = []
    for rule in rules:
        parts = [
            "("
            + " || ".join(f'context.action like "{_cedar_like(g)}"' for g in rule["actions"])
            + ")"
        ]
        if "targets" in rule:
            parts.append(
                "("
                + " || ".join(f'context.target like "{_cedar_like(g)}"' for g in rule["targets"])
                + ")"
            )
        if "condition" in rule:
            parts.append("(" + rule["condition"].cedar + ")")
        texts.append(
            f'@id("{rule["name"]}")\npermit(principal, action, resource) when {{ {" && ".join(parts)} }};'
        )
    return "\n".join(texts)


def rego_module(rules: list[dict[str, Any]], default_tier: int) -> str:
    """One ``else`` chain in rule order: the first rule whose body holds gives the answer."""
    lines = ["package handoff", "", "import rego.v1", "", "verdict := answer", ""]
    for i, rule in enumerate(rules):
        head = "answer := " if i == 0 else "} else := "
        lines.append(f'{head}["{rule["name"]}", {rule["tier"]}] if {{')
        lines.append(f"    some a in {json.dumps(rule['actions'])}")
        lines.append("    glob.match(a, null, input.action)")
        if "targets" in rule:
            lines.append(f"    some t in {json.dumps(rule['targets'])}")
            lines.append("    glob.match(t, null, input.target)")
        if "condition" in rule:
            lines.append(f"    {rule['condition'].rego}")
    lines.append(f'}} else := ["default", {default_tier}]')
    return "\n".join(lines) + "\n"


def run_handoff(policy: CompiledPolicy, requests: list[dict[str, Any]], warmup: int):
    facts = [RequestFacts.from_spec("bench", r, r["labels"]) for r in requests]
    policies = [policy]
    for f in facts[:warmup]:
        classify(policies, f)
    answers, times = [], []
    clock = time.perf_counter_ns
    for f in facts:
        started = clock()
        verdict = classify(policies, f).verdict
        times.append(clock() - started)
        assert verdict is not None
        answers.append((verdict.rule or "default", verdict.tier))
    return answers, times


def run_cedar(
    rules: list[dict[str, Any]], default_tier: int, requests: list[dict[str, Any]], warmup: int
):
    import cedarpy  # noqa: PLC0415 - a bench extra, not a dependency of Handoff

    policy_set = cedarpy.PolicySet.from_str(cedar_policies(rules))
    entities = cedarpy.Entities.from_json_str("[]")
    tiers = [rule["tier"] for rule in rules]
    calls = [{"principal": f'Agent::"{r["agent"]}"', "action": 'Action::"propose"',
              "resource": 'Target::"any"', "context": r} for r in requests]  # fmt: skip

    def decide(call: dict[str, Any]) -> tuple[str, int]:
        result = cedarpy.is_authorized(call, policy_set, entities)
        reasons = result.diagnostics.reasons  # policy0, policy1, ... in rule order
        if result.diagnostics.errors:
            raise AssertionError(f"cedar errors: {result.diagnostics.errors}")
        if not reasons:
            return ("default", default_tier)
        first = min(int(reason.removeprefix("policy")) for reason in reasons)
        return (rules[first]["name"], tiers[first])

    for call in calls[:warmup]:
        decide(call)
    answers, times = [], []
    clock = time.perf_counter_ns
    for call in calls:
        started = clock()
        answers.append(decide(call))
        times.append(clock() - started)
    return answers, times


def run_opa(
    rules: list[dict[str, Any]], default_tier: int, requests: list[dict[str, Any]], warmup: int
):
    job = {"module": rego_module(rules, default_tier), "query": "data.handoff.verdict",
           "inputs": requests, "warmup": warmup}  # fmt: skip
    done = subprocess.run([str(OPA_BINARY)], input=json.dumps(job), capture_output=True,  # noqa: S603
                          text=True, check=True, timeout=600)  # fmt: skip
    result = json.loads(done.stdout)
    answers = [(a[0], int(a[1])) for a in result["answers"]]
    return answers, result["nanoseconds"]


def _check(name: str, reference: list[tuple[str, int]], answers: list[tuple[str, int]],
           requests: list[dict[str, Any]]) -> None:  # fmt: skip
    differ = [i for i, (a, b) in enumerate(zip(reference, answers, strict=True)) if a != b]
    if differ:
        i = differ[0]
        raise AssertionError(f"{name} disagrees with Handoff on {len(differ)} of {len(requests)} "
                             f"requests, e.g. {requests[i]}: {answers[i]} vs {reference[i]}")  # fmt: skip


def measure(rule_count: int = 100, request_count: int = 10_000, *, opa: bool = True,
            default_tier: int = 3) -> dict[str, Any]:  # fmt: skip
    """Every engine on the same requests; microseconds per classification."""
    rules = make_rules(rule_count)
    requests = make_requests(request_count)
    warmup = min(1000, request_count)
    engines: dict[str, Any] = {}
    reference, times = run_handoff(handoff_policy(rules, default_tier), requests, warmup)
    engines["handoff"] = stats(times, 1e-3)
    answers, times = run_cedar(rules, default_tier, requests, warmup)
    _check("cedar", reference, answers, requests)
    engines["cedar"] = stats(times, 1e-3)
    if opa and OPA_BINARY.exists():
        answers, times = run_opa(rules, default_tier, requests, warmup)
        _check("opa", reference, answers, requests)
        engines["opa"] = stats(times, 1e-3)
    tiers = {t: sum(1 for _, tier in reference if tier == t) for t in (1, 2, 3, 4)}
    defaults = sum(1 for name, _ in reference if name == "default")
    return {
        "rules": rule_count,
        "requests": request_count,
        "distinct_actions": len({r["action"] for r in requests}),
        "tiers": tiers,
        "default_tier_answers": defaults,
        "equivalent": "same rule and tier on every request: " + ", ".join(engines),
        "engines": engines,
        "p99_ratio_vs_cedar": ratio(engines["handoff"]["p99"], engines["cedar"]["p99"]),
        "median_ratio_vs_cedar": ratio(engines["handoff"]["median"], engines["cedar"]["median"]),
        "p99_ratio_vs_opa": ratio(engines["handoff"]["p99"], (engines.get("opa") or {}).get("p99")),
    }


def growth(
    rule_counts: tuple[int, ...] = (10, 100, 1000), request_count: int = 2000
) -> list[dict[str, Any]]:
    """How cost grows with the number of rules (Handoff beside Cedar, same requests)."""
    rows = []
    for count in rule_counts:
        result = measure(count, request_count, opa=False)
        rows.append({"rules": count, "handoff": result["engines"]["handoff"],
                     "cedar": result["engines"]["cedar"]})  # fmt: skip
    return rows


if __name__ == "__main__":
    print(json.dumps(measure(), indent=2))
