"""What the Helm chart ships that must agree with the rest of the project: the CRDs and admission
policies (crds/ is the one source), the values schema, and the metric names in the dashboard and
alerts (operator/handoff/adapters/metrics.py defines them). Rendering is tested in
tests/integration/test_chart.py, with helm."""

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "handoff"
SOURCES = {  # the chart's copy -> the one source
    CHART / "files" / "crds": ROOT / "crds",
    CHART / "files" / "admission": ROOT / "crds" / "admission",
    CHART / "files" / "thirdparty": ROOT / "crds" / "thirdparty",
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


@pytest.mark.parametrize("copy", list(SOURCES), ids=lambda p: p.name)
def test_the_charts_crds_and_admission_policies_are_copies_of_crds(copy: Path) -> None:
    source = SOURCES[copy]
    expected = {p.name: p.read_bytes() for p in source.glob("*.yaml")}
    actual = {p.name: p.read_bytes() for p in copy.glob("*.yaml")}
    assert expected, f"nothing in {source}"
    assert sorted(actual) == sorted(expected), "run `make chart-crds`"
    stale = [name for name in expected if actual[name] != expected[name]]
    assert stale == [], f"{stale} differ from {source}: run `make chart-crds`"


def defined_metrics() -> dict[str, str]:
    """Metric name -> kind, read from the operator's metrics module as it is now."""
    text = (ROOT / "operator" / "handoff" / "adapters" / "metrics.py").read_text()
    found = re.findall(r"\b(Counter|Gauge|Histogram|Summary)\(\s*\"(handoff_\w+)\"", text)
    return {name: kind for kind, name in found}


def series_names(metrics: dict[str, str]) -> set[str]:
    names = set(metrics)
    for name, kind in metrics.items():
        if kind in ("Histogram", "Summary"):
            names.update(name + suffix for suffix in HISTOGRAM_SUFFIXES)
    return names


def used_metric_names(text: str) -> set[str]:
    return set(re.findall(r"\bhandoff_[a-z_]+\b", text))


def dashboard_queries_list() -> list[str]:
    """Every query of the dashboard: panel targets and template variables."""
    dashboard = json.loads((CHART / "dashboards" / "handoff.json").read_text())
    queries: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("expr", "query", "definition") and isinstance(value, str):
                    queries.append(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(dashboard)
    return [q for q in queries if q != "prometheus"]  # the datasource variable's plugin type


def dashboard_queries() -> str:
    return "\n".join(dashboard_queries_list())


def alert_rules() -> str:
    """The alerts file, minus its comments (they mention metrics that do not exist, on purpose)."""
    text = (CHART / "files" / "alerts.yaml").read_text()
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def test_the_metric_reader_finds_the_contracts_metrics() -> None:
    metrics = defined_metrics()
    assert metrics["handoff_action_requests_total"] == "Counter"
    assert metrics["handoff_decision_seconds"] == "Histogram"
    assert metrics["handoff_pending_requests"] == "Gauge"
    assert "handoff_decision_seconds_bucket" in series_names(metrics)
    assert used_metric_names('rate(handoff_x_total{a="b"}[5m]) / handoff_y') == {
        "handoff_x_total",
        "handoff_y",
    }


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_dashboards_and_alerts_use_only_metrics_the_operator_defines(source: str) -> None:
    text = dashboard_queries() if source == "dashboard" else alert_rules()
    used = used_metric_names(text)
    assert len(used) >= 4, f"found too few metric names in the {source}: {used}"
    assert used - series_names(defined_metrics()) == set()


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    dashboard = json.loads((CHART / "dashboards" / "handoff.json").read_text())
    titles = " | ".join(p["title"].lower() for p in dashboard["panels"])
    for wanted in (
        "pending",
        "by reason",
        "time to decision",
        "expiries",
        "fast approvals",
        "load",
    ):
        assert wanted in titles, wanted
    assert len({p["title"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_every_alert_has_a_runbook_paragraph() -> None:
    text = alert_rules()
    alerts = re.findall(r"^- alert: (\w+)$", text, flags=re.MULTILINE)
    anchors = re.findall(r"runbook_url: .*#(\w+)$", text, flags=re.MULTILINE)
    assert len(alerts) >= 4
    assert anchors == [a.lower() for a in alerts]
    runbooks = (ROOT / "docs" / "runbooks.md").read_text()
    headings = {h.strip().lower() for h in re.findall(r"^## (.+)$", runbooks, flags=re.MULTILINE)}
    assert {a.lower() for a in alerts} <= headings
    for alert in alerts:  # a paragraph, not a bare heading
        section = runbooks.split(f"## {alert}\n", 1)[1].split("\n## ", 1)[0]
        assert len(section.split()) > 40, alert


def values() -> dict[str, Any]:
    return dict(yaml.safe_load((CHART / "values.yaml").read_text()))


def validate(document: dict[str, Any]) -> None:
    jsonschema.validate(document, json.loads((CHART / "values.schema.json").read_text()))


def test_the_default_values_match_the_schema() -> None:
    validate(values())


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("redis", "mode"), "sentinel-ish"),
        (("console", "namespaces"), []),
        (("operator", "retention"), "a month"),
        (("operator", "replicas"), 0),
        (("image", "digest"), "latest"),
        (("operator", "typo"), True),
        (("metrics", "prometheusRule", "fastApprovalRatio"), 2),
        (("console", "ingress", "enabled"), True),  # without a host
    ],
)
def test_the_schema_refuses_bad_values(path: tuple[str, ...], value: Any) -> None:
    document = values()
    node = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        validate(document)


def test_external_redis_needs_its_secret() -> None:
    document = values()
    document["redis"]["mode"] = "external"
    with pytest.raises(jsonschema.ValidationError):
        validate(document)
    document["redis"]["external"]["existingSecret"] = "handoff-redis"
    validate(document)
