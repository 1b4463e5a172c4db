"""Policy tests, lint findings and diffs, as data; the CLI prints them."""

import fnmatch
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from handoff import paths
from handoff.domain.classify import lane_of
from handoff.domain.decide import Step
from handoff.domain.durations import format_duration
from handoff.domain.policy import CompiledPolicy, Rule
from handoff.domain.timefmt import parse_time
from handoff.policytools.bounds import one_sided
from handoff.policytools.loading import CREATED, Case, PolicyFile, evaluate


@dataclass(frozen=True)
class Outcome:
    """What a sample request gets: the fields a policy review cares about."""

    tier: int | None
    oversight: str
    policy: str
    rule: str | None
    window: str
    approvals: int
    reviewers: str
    reason: str
    grantable: str = ""  # "4h, 20 uses" when its rule may be granted in advance (ActionGrant)

    def row(self) -> list[str]:
        granted = f" (grantable {self.grantable})" if self.grantable else ""
        return [
            str(self.tier or "-"),
            self.oversight or "-",
            f"{self.policy}/{self.rule or 'default'}{granted}",
            self.window,
            str(self.approvals or "-"),
            self.reviewers or "-",
            self.reason,
        ]


def outcome(step: Step, policies: Sequence[CompiledPolicy]) -> Outcome:
    patch = step.patch or {}
    deadline = patch.get("deadline")
    window = format_duration(parse_time(deadline) - CREATED) if deadline else "-"
    policy = next((p for p in policies if p.name == patch.get("policy")), None)
    reviewers = ""
    approvals = int(patch.get("requiredApprovals") or 0)
    if patch.get("stages"):  # staged: each stage's people, in order, and every approval it takes
        reviewers = stage_reviewers(patch["stages"])
        approvals = sum(int(stage.get("approvals") or 1) for stage in patch["stages"])
    elif policy is not None and deadline:
        reviewers = ",".join(
            sorted(policy.reviewers.users) + [f"group:{g}" for g in sorted(policy.reviewers.groups)]
        )
    reasons = [c.get("reason") for c in patch.get("conditions") or [] if c.get("type") == "Decided"]
    rule = next((r for r in policy.rules if r.name == patch.get("rule")), None) if policy else None
    grantable = rule.grantable if rule is not None else None
    return Outcome(
        tier=patch.get("tier"),
        oversight=str(patch.get("oversight") or ""),
        policy=str(patch.get("policy") or "-"),
        rule=patch.get("rule"),
        window=window,
        approvals=approvals,
        reviewers=reviewers,
        reason=str(step.decision.reason if step.decision else (reasons[0] if reasons else "")),
        grantable=f"{format_duration(grantable.max_duration)}, {grantable.max_count} uses"
        if grantable and deadline
        else "",
    )


def stage_reviewers(stages: Sequence[dict[str, Any]]) -> str:
    """``manager(alice,bob) > finance(2 of group:finance)``: who approves each stage, in order."""
    shown = []
    for stage in stages:
        people = stage.get("reviewers") or {}
        groups = [f"group:{g}" for g in people.get("groups", [])]
        who = ",".join([*people.get("users", []), *groups])
        count = int(stage.get("approvals") or 1)
        shown.append(f"{stage.get('name')}({f'{count} of ' if count > 1 else ''}{who})")
    return " > ".join(shown)


# -- test ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseResult:
    case: Case
    got: Outcome
    failures: tuple[str, ...]


def run_cases(policies: list[PolicyFile], cases: list[Case]) -> list[CaseResult]:
    results = []
    for case in cases:
        beside = [p for p in policies if p.path.parent == case.path.parent] or policies
        compiled = [p.compiled() for p in beside]
        namespace = str(case.request.get("namespace") or beside[0].namespace)
        step = evaluate(compiled, case.request, namespace)
        got = outcome(step, compiled)
        failures = []
        expect = case.expect
        for key in ("tier", "rule", "oversight"):
            if key in expect and getattr(got, key) != expect[key]:
                failures.append(f"{key}: expected {expect[key]!r}, got {getattr(got, key)!r}")
        if "reason" in expect:
            reasons = {got.reason} | {
                c.get("reason") for c in (step.patch or {}).get("conditions") or []
            }
            if expect["reason"] not in reasons:
                failures.append(f"reason: expected {expect['reason']!r}, got {got.reason!r}")
        if "decisionWindow" in expect and got.window != str(expect["decisionWindow"]):
            failures.append(
                f"decisionWindow: expected {expect['decisionWindow']}, got {got.window}"
            )
        results.append(CaseResult(case, got, tuple(failures)))
    return results


# -- lint ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    path: Path
    line: int
    severity: str  # error | warning
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.severity}: {self.message}"


def policy_schema() -> dict[str, Any]:
    document = yaml.safe_load(
        (paths.crd_dir() / "handoff.dev_agentactionpolicies.yaml").read_text()
    )
    return dict(document["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def lint(
    policies: list[PolicyFile],
    cases: list[Case],
    min_window: timedelta = timedelta(minutes=1),
    hitl_share: float = 0.5,
) -> list[Finding]:
    findings: list[Finding] = []
    validator = jsonschema.Draft7Validator(policy_schema())
    for policy in policies:
        for error in validator.iter_errors(policy.document):
            where = ".".join(str(p) for p in error.absolute_path) or "(document)"
            findings.append(Finding(policy.path, policy.line, "error", f"{where}: {error.message}"))
        compiled = policy.compiled()
        findings += [Finding(policy.path, policy.line, "error", e) for e in compiled.errors]
        findings += _shadowed(policy)
        rules = (policy.document.get("spec") or {}).get("rules") or []
        findings += [
            Finding(policy.path, policy.rule_lines.get(i, policy.line), "warning", message)
            for i, message in one_sided(rules)
        ]
        findings += _lanes(policy, compiled, min_window)
        findings += _grantable(policy, compiled)
    findings += _hitl_share(policies, cases, hitl_share)
    return findings


def _many_people(policy: CompiledPolicy, rule: Rule) -> str | None:
    """Why a rule's requests take more than one person (the lane they are decided in), or
    None."""
    if rule.tier < 3:
        return None
    lane = lane_of(policy, rule.tier, rule)
    if lane.stages:
        return f"are approved in stages ({', '.join(s.name for s in lane.stages)})"
    return f"need {lane.approvals} approvals" if lane.approvals > 1 else None


def _shadowed(policy: PolicyFile) -> list[Finding]:
    """A rule no request can reach: an earlier rule without conditions covers all its actions."""
    findings = []
    rules = (policy.document.get("spec") or {}).get("rules") or []
    for index, rule in enumerate(rules):
        for earlier in rules[:index]:
            if earlier.get("when") or earlier.get("targets"):
                continue
            if all(
                any(fnmatch.fnmatchcase(a, e) for e in earlier.get("actions") or [])
                for a in rule.get("actions") or []
            ):
                findings.append(
                    Finding(
                        policy.path,
                        policy.rule_lines.get(index, policy.line),
                        "warning",
                        f"rule {rule.get('name')!r} can never match: rule {earlier.get('name')!r}"
                        " before it takes all of its actions",
                    )
                )
                break
    return findings


def _lanes(policy: PolicyFile, compiled: CompiledPolicy, min_window: timedelta) -> list[Finding]:
    findings = []
    tiers = {rule.tier for rule in compiled.rules} | {compiled.default_tier}
    staged = {3} if compiled.tier3.stages else set()
    staged |= {2, 4} if compiled.tier4.stages else set()  # tier 2 without rollback waits in tier 4
    if tiers & ({2, 3, 4} - staged) and not compiled.reviewers:
        findings.append(
            Finding(
                policy.path,
                policy.line,
                "warning",
                "tier 3 and 4 requests (and tier 2 without a rollback) wait for reviewers,"
                " but the policy names none: they can only expire",
            )
        )
    for name, lane in (("tier3", compiled.tier3), ("tier4", compiled.tier4)):
        if lane.decision_window < min_window:
            findings.append(
                Finding(
                    policy.path,
                    policy.line,
                    "warning",
                    f"{name}.decisionWindow {format_duration(lane.decision_window)} is shorter than"
                    f" {format_duration(min_window)}: too little time to read a request",
                )
            )
        if (
            lane.min_review_seconds
            and lane.decision_window.total_seconds() <= lane.min_review_seconds
        ):
            findings.append(
                Finding(
                    policy.path,
                    policy.line,
                    "error",
                    f"{name}: minReviewSeconds {lane.min_review_seconds} leaves no time in a"
                    f" {format_duration(lane.decision_window)} window",
                )
            )
    for index, rule in enumerate(compiled.rules):
        stages = rule.stages if rule.stages is not None else compiled.lane(rule.tier).stages
        if rule.tier >= 3 and stages and rule.approvals:
            findings.append(
                Finding(
                    policy.path,
                    policy.rule_lines.get(index, policy.line),
                    "warning",
                    f"rule {rule.name!r} sets approvals, but its requests go through stages,"
                    " which count their own: the rule's approvals are not used",
                )
            )
        if rule.decision_window is not None and rule.decision_window < min_window:
            findings.append(
                Finding(
                    policy.path,
                    policy.rule_lines.get(index, policy.line),
                    "warning",
                    f"rule {rule.name!r} gives reviewers {format_duration(rule.decision_window)},"
                    f" less than {format_duration(min_window)}",
                )
            )
    return findings


def _hitl_share(policies: list[PolicyFile], cases: list[Case], limit: float) -> list[Finding]:
    """Approval fatigue: too much sample traffic waiting for people makes reviews rubber stamps."""
    if not cases or not policies:
        return []
    results = run_cases(policies, cases)
    hitl = [r for r in results if r.got.oversight == "HITL"]
    share = len(hitl) / len(results)
    if share <= limit:
        return []
    first = cases[0].path
    return [
        Finding(
            first,
            1,
            "warning",
            f"{len(hitl)} of {len(results)} sample requests ({share:.0%}) wait for a person;"
            f" above {limit:.0%} reviewers start rubber-stamping: reserve HITL for tier 4",
        )
    ]


# -- diff ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    name: str
    request: dict[str, Any]
    old: Outcome
    new: Outcome


def diff(old: list[PolicyFile], new: list[PolicyFile], samples: list[Case]) -> list[Change]:
    old_compiled = [p.compiled() for p in old]
    new_compiled = [p.compiled() for p in new]
    namespace = (new or old)[0].namespace if (new or old) else "default"
    changes = []
    seen: set[str] = set()
    for case in samples:
        key = json.dumps(case.request, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        ns = str(case.request.get("namespace") or namespace)
        before = outcome(evaluate(old_compiled, case.request, ns), old_compiled)
        after = outcome(evaluate(new_compiled, case.request, ns), new_compiled)
        if before != after:
            changes.append(Change(case.name, case.request, before, after))
    return changes


def _grantable(policy: PolicyFile, compiled: CompiledPolicy) -> list[Finding]:
    """A grantable rule where a grant is too much (tier 4) or does nothing (many people decide)."""
    findings: list[Finding] = []
    for i, rule in enumerate(compiled.rules):
        if rule.grantable is None:
            continue
        line = policy.rule_lines.get(i, policy.line)
        if rule.tier == 4:
            message = (
                f"rule {rule.name!r} is tier 4 and grantable: one approval can then approve up to"
                f" {rule.grantable.max_count} more of its requests; keep hard gates (money,"
                " deletions) decided one by one, or make the rule tier 3"
            )
            findings.append(Finding(policy.path, line, "warning", message))
        if (why := _many_people(compiled, rule)) is not None:
            message = (
                f"rule {rule.name!r} is grantable, but its requests {why}: a grant is one"
                " person's approval and never covers them, so grantable does nothing here"
            )
            findings.append(Finding(policy.path, line, "warning", message))
    return findings
