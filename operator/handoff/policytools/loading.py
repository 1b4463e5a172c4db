"""Reading policies and their test cases from files, keeping line numbers for messages."""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import yaml

from handoff.domain.classify import RequestFacts
from handoff.domain.decide import RequestState, Step, decide
from handoff.domain.policy import CompiledPolicy, compile_policy
from handoff.domain.resources import PolicySpecJSON

CREATED = datetime(2026, 1, 1, tzinfo=UTC)  # a fixed creation time: windows show as durations


@dataclass
class PolicyFile:
    path: Path
    document: dict[str, Any]
    line: int  # where the document starts
    rule_lines: dict[int, int] = field(default_factory=dict)  # rule index -> line

    @property
    def namespace(self) -> str:
        return str((self.document.get("metadata") or {}).get("namespace", "default"))

    @property
    def name(self) -> str:
        return str((self.document.get("metadata") or {}).get("name", ""))

    def compiled(self) -> CompiledPolicy:
        spec = cast(PolicySpecJSON, self.document.get("spec") or {})
        return compile_policy(self.namespace, self.name, spec)


@dataclass
class Case:
    name: str
    request: dict[str, Any]
    expect: dict[str, Any]
    path: Path


def yaml_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    for given in paths:
        path = Path(given)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml"))
        elif path.exists():
            yield path
        else:
            raise FileNotFoundError(f"{path} does not exist")


def load_policies(paths: Iterable[str | Path]) -> list[PolicyFile]:
    found: list[PolicyFile] = []
    for path in yaml_files(paths):
        text = path.read_text()
        try:
            nodes = list(yaml.compose_all(text))
            documents = list(yaml.safe_load_all(text))
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not YAML: {e}") from e
        for node, document in zip(nodes, documents, strict=True):
            if isinstance(document, dict) and document.get("kind") == "AgentActionPolicy":
                found.append(
                    PolicyFile(path, document, node.start_mark.line + 1, _rule_lines(node))
                )
    return found


def _rule_lines(node: yaml.Node) -> dict[int, int]:
    spec = _child(node, "spec")
    rules = _child(spec, "rules") if spec is not None else None
    if not isinstance(rules, yaml.SequenceNode):
        return {}
    return {index: item.start_mark.line + 1 for index, item in enumerate(rules.value)}


def _child(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for name, value in node.value:
        if getattr(name, "value", None) == key:
            return value  # type: ignore[no-any-return]
    return None


def load_cases(paths: Iterable[str | Path]) -> list[Case]:
    """Test cases from the tests.yaml files in folders, and from files named explicitly (a
    recording of real traffic may have any name)."""
    cases: list[Case] = []
    given = [Path(p) for p in paths]
    for path in yaml_files(given):
        if path.name not in ("tests.yaml", "tests.yml") and path not in given:
            continue
        document = yaml.safe_load(path.read_text()) or {}
        for raw in document.get("cases") or []:
            cases.append(
                Case(
                    str(raw.get("name", "")),
                    dict(raw.get("request") or {}),
                    dict(raw.get("expect") or {}),
                    path,
                )
            )
    return cases


def evaluate(policies: list[CompiledPolicy], request: dict[str, Any], namespace: str) -> Step:
    """What the policies make of a sample request, at its creation time."""
    state = RequestState(
        facts=RequestFacts.from_spec(namespace, request, request.get("labels")),
        created=CREATED,
        requester=f"system:serviceaccount:{namespace}:{request.get('agent', '')}",
        spec={k: v for k, v in request.items() if k != "rollback"}
        | ({"rollback": {"description": "sample"}} if request.get("rollback") else {}),
    )
    return decide(policies, state, CREATED)
