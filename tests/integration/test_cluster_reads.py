"""Cluster.get reads the kinds the tests poll from the API server directly (handoff.testing): it
must give what ``kubectl get -o json`` gives, and fail the same way on what is not there."""

import json
import threading

import pytest
from handoff.testing.cluster import PATHS, Cluster, NotFound, OperatorProcess, eventually

from .helpers import AGENT, apply_ready_policy, file, policy, wait_for

pytestmark = pytest.mark.integration


def test_a_read_from_the_api_is_what_kubectl_prints(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    apply_ready_policy(cluster, policy(namespace))
    name = file(cluster, namespace, "payments.charge")
    wait_for(cluster, namespace, name, "phase", "AwaitingApproval")
    reads = {
        ("actionrequest", name),
        ("agentactionpolicy", "payments"),
        ("serviceaccount", AGENT),
    }
    assert {kind for kind, _ in reads} <= set(PATHS)
    for kind, what in reads:
        printed = json.loads(
            cluster.kubectl("get", kind, what, "-n", namespace, "-o", "json").stdout
        )
        read = cluster.get(kind, what, namespace)
        assert read == printed, kind
        assert "managedFields" not in read["metadata"]


def test_what_is_not_there_fails_as_kubectl_does(cluster: Cluster, namespace: str) -> None:
    with pytest.raises(NotFound, match=r'actionrequests\.handoff\.dev "nobody" not found'):
        cluster.get("actionrequest", "nobody", namespace)
    with pytest.raises(RuntimeError, match='configmaps "nobody" not found'):
        cluster.get("configmap", "nobody", namespace)
    with pytest.raises(RuntimeError, match="not found"):
        cluster.get("lease", "nobody", namespace)  # not one of PATHS: kubectl's own error


def test_a_wait_for_an_object_not_there_yet_waits_until_it_is(
    cluster: Cluster, namespace: str
) -> None:
    """An object the operator files a moment later (a review after break-glass, a rollback) is
    polled until it is there: the first 404 is not the answer."""
    later = {
        "apiVersion": "v1", "kind": "ConfigMap", "data": {},
        "metadata": {"name": "later", "namespace": namespace},
    }  # fmt: skip
    timer = threading.Timer(1.0, lambda: cluster.apply(later))
    timer.start()
    try:
        found = eventually(lambda: cluster.get("configmap", "later", namespace), 15, "later")
    finally:
        timer.join()
    assert found["metadata"]["name"] == "later"
    with pytest.raises(AssertionError, match="NotFound"):
        eventually(lambda: cluster.get("configmap", "never", namespace), 0.5, "never")
