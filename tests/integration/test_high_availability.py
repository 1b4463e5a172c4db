"""Two operator replicas with one active (a Lease), and operators sharded by namespace labels.

These tests run their own operators, so they use a control plane of their own: the session's
operator would otherwise decide everything first.
"""

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from handoff.testing.cluster import Cluster, OperatorProcess, eventually

from tests.integration.helpers import apply_ready_policy, events, file, policy, request, wait_for

pytestmark = pytest.mark.integration
LEASE_SECONDS = 4.0


@pytest.fixture(scope="module")
def own_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    control = Cluster(tmp_path_factory.mktemp("ha-controlplane")).start()
    yield control
    control.stop()


def _operator(cluster: Cluster, folder: Path, name: str, *args: str) -> OperatorProcess:
    process = OperatorProcess(cluster, folder, name=name)
    process.extra_args = list(args)
    return process


def _lease(cluster: Cluster) -> dict[str, object]:
    return cluster.get("lease", "handoff-operator", "handoff-system")


def _leader_metric(process: OperatorProcess) -> float:
    for line in process.metrics().splitlines():
        if line.startswith("handoff_leader "):
            return float(line.split()[1])
    raise AssertionError("handoff_leader is not on /metrics")


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_standby_takes_over_without_missing_a_deadline_or_deciding_twice(
    own_cluster: Cluster, tmp_path: Path
) -> None:
    cluster = own_cluster
    election = ["--leader-election", f"--lease-duration={LEASE_SECONDS}"]
    first = _operator(cluster, tmp_path, "op-a", *election, "--leader-election-identity=op-a")
    second = _operator(cluster, tmp_path, "op-b", *election, "--leader-election-identity=op-b")
    first.start()
    eventually(lambda: _lease(cluster)["spec"]["holderIdentity"] == "op-a", 30, "op-a leads")  # type: ignore[index]
    second.start()  # healthy as a standby
    try:
        assert _leader_metric(first) == 1.0
        assert _leader_metric(second) == 0.0
        ns = cluster.new_namespace()
        apply_ready_policy(cluster, policy(ns))
        before = file(cluster, ns, "db.query")
        wait_for(cluster, ns, before, "phase", "Approved")
        waiting = file(cluster, ns, "deploy.web")  # tier 4, a 10s window
        body = wait_for(cluster, ns, waiting, "phase", "AwaitingApproval")
        deadline = _at(body["status"]["deadline"])

        first.kill()  # SIGKILL: no Lease release, the standby must wait the lease out
        after = file(cluster, ns, "db.query")

        eventually(
            lambda: _lease(cluster)["spec"]["holderIdentity"] == "op-b",
            30,
            "op-b leads",  # type: ignore[index]
        )
        assert _leader_metric(second) == 1.0
        wait_for(cluster, ns, after, "phase", "Approved", timeout=30)
        expired = wait_for(cluster, ns, waiting, "phase", "Denied", timeout=40)
        assert expired["status"]["decision"]["reason"] == "Expired"
        late = (_at(expired["status"]["decision"]["at"]) - deadline).total_seconds()
        # The deadline fell while nobody led, or just after: it fires once the standby takes
        # over, no later than the lease duration plus the standby's polling and startup.
        assert late < LEASE_SECONDS + 10, f"expired {late:.1f}s after its deadline"
        lease = _lease(cluster)
        assert lease["spec"]["leaseTransitions"] >= 1  # type: ignore[index]
        for name, reason in ((before, "AutoApproved"), (after, "AutoApproved"),
                             (waiting, "Expired")):  # fmt: skip
            decided = [e for e in events(cluster, ns, name) if e["reason"] == reason]
            assert len(decided) == 1, (name, [e["reason"] for e in events(cluster, ns, name)])
            assert sum(e.get("count", 1) for e in decided) == 1
    finally:
        first.stop()
        second.stop()


def test_a_clean_stop_hands_the_lease_on_at_once(own_cluster: Cluster, tmp_path: Path) -> None:
    cluster = own_cluster
    election = ["--leader-election", "--lease-duration=30", "--leader-election-name=handoff-b"]
    first = _operator(cluster, tmp_path, "op-c", *election, "--leader-election-identity=op-c")
    second = _operator(cluster, tmp_path, "op-d", *election, "--leader-election-identity=op-d")
    first.start()
    lease = lambda: cluster.get("lease", "handoff-b", "handoff-system")  # noqa: E731
    eventually(lambda: lease()["spec"]["holderIdentity"] == "op-c", 30, "op-c leads")
    second.start()
    try:
        first.stop()  # SIGTERM: the leader releases the Lease
        # Well inside the 30s lease: the standby did not have to wait it out.
        eventually(lambda: lease()["spec"]["holderIdentity"] == "op-d", 15, "op-d leads")
    finally:
        first.stop()
        second.stop()


def test_shards_handle_only_their_own_namespaces(own_cluster: Cluster, tmp_path: Path) -> None:
    cluster = own_cluster
    spaces = {shard: cluster.new_namespace() for shard in ("a", "b", "none")}
    for shard in ("a", "b"):
        cluster.kubectl("label", "namespace", spaces[shard], f"handoff.dev/shard={shard}")
    shard_a = _operator(cluster, tmp_path, "shard-a", "--namespace-selector=handoff.dev/shard=a")
    shard_b = _operator(cluster, tmp_path, "shard-b", "--namespace-selector=handoff.dev/shard=b")
    shard_a.start()
    try:
        for ns in spaces.values():
            cluster.apply(policy(ns))
        # Filed as the admin: the agents' own rights come from policies no shard has seen yet.
        filed = {shard: file(cluster, ns, "db.query", who="admin") for shard, ns in spaces.items()}
        wait_for(cluster, spaces["a"], filed["a"], "phase", "Approved", timeout=30)
        # Shard a has decided its own; the others' requests and policies stay untouched.
        pol_b = cluster.get("agentactionpolicy", "payments", spaces["b"])
        assert "status" not in request(cluster, spaces["b"], filed["b"])
        assert "status" not in request(cluster, spaces["none"], filed["none"])
        assert not (pol_b.get("status") or {}).get("conditions")

        shard_b.start()
        wait_for(cluster, spaces["b"], filed["b"], "phase", "Approved", timeout=30)
        assert "status" not in request(cluster, spaces["none"], filed["none"])

        # A namespace labelled later joins its shard, which catches up on what it holds.
        cluster.kubectl("label", "namespace", spaces["none"], "handoff.dev/shard=a")
        wait_for(cluster, spaces["none"], filed["none"], "phase", "Approved", timeout=30)
        assert "joins" in shard_a.log.read_text()
        assert spaces["none"] not in shard_b.log.read_text()
        watched = [line for line in shard_a.metrics().splitlines()
                   if line.startswith("handoff_watched_namespaces ")]  # fmt: skip
        assert watched == ["handoff_watched_namespaces 2.0"], watched
    finally:
        shard_a.stop()
        shard_b.stop()


def test_leases_are_all_the_operator_may_write_in_its_namespace(own_cluster: Cluster) -> None:
    """Leader election needs no more than get/create/update on Leases, in its own namespace."""
    who = "system:serviceaccount:handoff-system:handoff-operator"
    can = lambda *args: own_cluster.kubectl(  # noqa: E731
        "auth", "can-i", *args, f"--as={who}", check=False
    ).stdout.strip()
    assert can("update", "leases", "-n", "handoff-system") == "yes"
    assert can("update", "leases", "-n", "kube-system") == "no"
    assert can("delete", "leases", "-n", "handoff-system") == "no"
    assert can("watch", "namespaces") == "yes"
