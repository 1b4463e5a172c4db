"""The Helm chart's tests' helpers: helm (built by `make helm`), the chart rendered and parsed, and
the names the chart gives its objects for the release the tests install."""

import copy
import functools
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from handoff import paths

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "handoff"
HELM = paths.bin_dir() / "helm"
RELEASE, NAMESPACE = "oversight", "oversight-system"  # not the defaults: names must follow them
FULLNAME = f"{RELEASE}-handoff"
OPERATOR_SA, CONSOLE_SA = f"{FULLNAME}-operator", f"{FULLNAME}-console"
OPERATOR_USER = f"system:serviceaccount:{NAMESPACE}:{OPERATOR_SA}"
GATEWAY_SA = f"{FULLNAME}-gateway"
# helm's HOME (its cache, the API server's discovery cache): one per pytest-xdist worker.
HELM_HOME = ROOT / ".handoff" / f"helm-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
GATEWAY_USER = f"system:serviceaccount:{NAMESPACE}:{GATEWAY_SA}"
EVERYTHING_ON = [
    "metrics.serviceMonitor.enabled=true",
    "metrics.prometheusRule.enabled=true",
    "metrics.grafanaDashboard.enabled=true",
    "networkPolicy.enabled=true",
    "console.ingress.enabled=true",
    "console.ingress.host=handoff.example.com",
    "console.ingress.tlsSecretName=handoff-tls",
]


def helm(*args: str, kubeconfig: Path | None = None) -> subprocess.CompletedProcess[str]:
    if not HELM.exists():
        pytest.fail(f"no helm in {HELM}: run 'make helm' first")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(HELM_HOME),
        "HELM_CACHE_HOME": str(HELM_HOME / "helm-cache"),
    }
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    result = subprocess.run(
        [str(HELM), *args], capture_output=True, text=True, check=False, env=env, timeout=120
    )
    assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def render(
    *settings: str,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    chart: Path = CHART,
    values: Path | None = None,
    fresh: bool = False,
) -> list[dict[str, Any]]:
    """``helm template`` of the chart, parsed. The same settings of this chart render once per
    process (helm takes a second or more on a busy machine) and each caller gets its own copy;
    ``fresh`` renders again (the chart's random passwords differ from one render to the next)."""
    flags = [f"--set={s}" for s in settings] + ([f"--values={values}"] if values else [])
    if fresh or values is not None or chart != CHART:
        return _template(release, namespace, chart, tuple(flags))
    return copy.deepcopy(_rendered(release, namespace, tuple(flags)))


@functools.cache
def _rendered(release: str, namespace: str, flags: tuple[str, ...]) -> list[dict[str, Any]]:
    return _template(release, namespace, CHART, flags)


def _template(
    release: str, namespace: str, chart: Path, flags: tuple[str, ...]
) -> list[dict[str, Any]]:
    out = helm("template", release, str(chart), f"--namespace={namespace}", *flags).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def rule_set(rules: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    """RBAC rules as (group, resource, verb, name) tuples: equal sets grant the same."""
    return {
        (group, resource, verb, name)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule["verbs"]
        for name in rule.get("resourceNames") or ["*"]
    }


def without_chart_metadata(document: dict[str, Any]) -> dict[str, Any]:
    """A rendered object minus the labels and keep annotation the chart adds."""
    copy = json.loads(json.dumps(document))
    metadata = copy["metadata"]
    metadata["labels"] = {
        k: v
        for k, v in metadata.get("labels", {}).items()
        if not k.startswith(("app.kubernetes.io/", "helm.sh/"))
    }
    metadata["annotations"] = {
        k: v for k, v in metadata.get("annotations", {}).items() if k != "helm.sh/resource-policy"
    }
    for key in ("labels", "annotations"):
        if not metadata[key]:
            del metadata[key]
    return dict(copy)


def source_documents(*globs: str) -> list[dict[str, Any]]:
    return [
        d
        for pattern in globs
        for path in sorted((ROOT / "crds").glob(pattern))
        for d in yaml.safe_load_all(path.read_text())
        if d
    ]


def workloads(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
