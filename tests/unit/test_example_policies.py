"""Every example under policies/ compiles, and its tests.yaml cases hold."""

from pathlib import Path
from typing import Any

import pytest
import yaml
from handoff.domain.classify import RequestFacts
from handoff.domain.decide import RequestState, decide
from handoff.domain.durations import parse_duration
from handoff.domain.policy import CompiledPolicy, compile_policy
from handoff.domain.timefmt import parse_time

from .helpers import CREATED

ROOT = Path(__file__).resolve().parents[2] / "policies"
SUITES = sorted(ROOT.glob("**/tests.yaml"))


def cases() -> list[Any]:
    found = []
    for suite in SUITES:
        document = yaml.safe_load(suite.read_text())
        for case in document["cases"]:
            found.append(
                pytest.param(
                    suite, document["policies"], case, id=f"{suite.parent.name}: {case['name']}"
                )
            )
    return found


def load(suite: Path, files: list[str]) -> list[CompiledPolicy]:
    compiled = []
    for name in files:
        for body in yaml.safe_load_all((suite.parent / name).read_text()):
            meta = body["metadata"]
            compiled.append(compile_policy(meta["namespace"], meta["name"], body["spec"]))
    return compiled


def test_there_are_examples() -> None:
    assert SUITES, "policies/ should hold at least one example with tests.yaml"


@pytest.mark.parametrize(
    "policy_file", sorted(ROOT.glob("**/policy*.yaml")), ids=lambda p: p.parent.name
)
def test_every_example_policy_compiles(policy_file: Path) -> None:
    for body in yaml.safe_load_all(policy_file.read_text()):
        compiled = compile_policy(
            body["metadata"]["namespace"], body["metadata"]["name"], body["spec"]
        )
        assert compiled.ready, compiled.errors


@pytest.mark.parametrize(("suite", "files", "case"), cases())
def test_policy_case(suite: Path, files: list[str], case: dict[str, Any]) -> None:
    policies = load(suite, files)
    raw = case["request"]
    namespace = policies[0].namespace
    state = RequestState(
        facts=RequestFacts(
            namespace=namespace,
            agent=raw["agent"],
            action=raw["action"],
            target=raw.get("target", ""),
            parameters=raw.get("parameters", {}),
            labels=raw.get("labels", {}),
            has_rollback=bool(raw.get("rollback")),
        ),
        created=CREATED,
        requester=f"system:serviceaccount:{namespace}:{raw['agent']}",
    )
    step = decide(policies, state, CREATED)
    assert step.patch is not None
    expect = case["expect"]
    if "reason" in expect:
        reasons = {step.decision.reason if step.decision else None} | {
            c["reason"] for c in step.patch["conditions"]
        }
        assert expect["reason"] in reasons
    for key in ("tier", "rule", "oversight"):
        if key in expect:
            assert step.patch.get(key) == expect[key], key
    if "decisionWindow" in expect:
        assert parse_time(step.patch["deadline"]) - CREATED == parse_duration(
            expect["decisionWindow"]
        )
