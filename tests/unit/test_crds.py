"""The CRDs in crds/ are the one source of the schema: what depends on them is checked here."""

from pathlib import Path
from typing import Any

import yaml
from handoff.domain.durations import MAX_WINDOW, MIN_WINDOW, parse_duration

ROOT = Path(__file__).resolve().parents[2]


def schema(kind: str) -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "crds" / f"handoff.dev_{kind}.yaml").read_text())
    return dict(document["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def admission() -> list[dict[str, Any]]:
    return list(
        yaml.safe_load_all((ROOT / "crds" / "admission" / "actionrequests.yaml").read_text())
    )


def test_reviewers_cannot_write_any_status_field_but_reviews() -> None:
    """A status field missing from the admission rule would be writable by every reviewer."""
    fields = set(schema("actionrequests")["properties"]["status"]["properties"]) - {"reviews"}
    reviews = next(d for d in admission() if d["metadata"]["name"] == "handoff-reviews")
    rule = next(
        v["expression"]
        for v in reviews["spec"]["validations"]
        if "oldObject.?status.?phase" in v["expression"]
    )
    missing = {f for f in fields if f"object.?status.?{f} == oldObject.?status.?{f}" not in rule}
    assert missing == set()


def test_duration_bounds_match_the_operator() -> None:
    lane = schema("agentactionpolicies")["properties"]["spec"]["properties"]["tiers"]["properties"][
        "tier4"
    ]
    rule = lane["properties"]["decisionWindow"]["x-kubernetes-validations"][0]["rule"]
    assert f"duration('{MIN_WINDOW.seconds}s')" in rule
    assert parse_duration("168h") == MAX_WINDOW
    assert "duration('168h')" in rule


def test_every_string_and_list_is_bounded() -> None:
    """The CEL cost budget and hostile input both need bounds on every string and list."""
    unbounded: list[str] = []

    def walk(node: dict[str, Any], where: str) -> None:
        kind = node.get("type")
        if (
            kind == "string"
            and "maxLength" not in node
            and "enum" not in node
            and where.count(".") > 1
        ):
            unbounded.append(where)
        if kind == "array" and "maxItems" not in node:
            unbounded.append(where)
        for name, child in (node.get("properties") or {}).items():
            walk(child, f"{where}.{name}")
        if "items" in node:
            walk(node["items"], f"{where}[]")

    for kind in ("actionrequests", "agentactionpolicies"):
        walk(schema(kind), kind)
    assert unbounded == []
