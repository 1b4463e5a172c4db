"""`make reliability`: a real control plane, Redis, PostgreSQL and two operator replicas (a Lease
picks the active one); a mixed load for a few minutes while faults are injected in turn; then the
independent checker (``reliability/checker.py``) in a process of its own.

    python -m reliability.run [--rate 3] [--seconds 240] [--hostile-every 2]
                              [--folder .handoff/reliability]
"""

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import redis
from handoff import paths
from handoff.devenv.postgres import PostgresServer
from handoff.devenv.redis import RedisServer
from handoff.testing.cluster import Cluster, OperatorProcess

from reliability.attacks import (
    HOSTILE,
    HOSTILE_POLICY,
    SANDBOX,
    deployment,
    hostile_policy,
    victim_keys,
    victims,
)
from reliability.faults import Faults, lease_holder
from reliability.hostile import Hostile
from reliability.load import Journal, Load, api_for
from reliability.scenario import AGENTS, policy, scenario_json

LEASE = ("handoff-system", "handoff-reliability")
LEASE_SECONDS = 6
HOSTILE_STOP_S = 20  # the hostile agent stops this long before the load: honest outcomes follow


def leader_election_available() -> bool:
    result = subprocess.run(
        [sys.executable, "-m", "handoff", "operator", "--help"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return "--leader-election" in result.stdout


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


class Environment:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.cluster = Cluster(folder / "controlplane")
        self.redis = RedisServer(folder / "redis")
        pg_folder = Path(tempfile.mkdtemp(prefix="handoff-rel-pg-"))
        pg_folder.chmod(0o755)  # the server runs as postgres when we are root
        self.postgres = PostgresServer(pg_folder / "pg")
        self.operators: list[OperatorProcess] = []
        self.ha = leader_election_available()

    def start(self) -> None:
        say("starting etcd and kube-apiserver")
        self.cluster.start()
        say("starting Redis and PostgreSQL")
        self.redis.start()
        self.postgres.start()
        names = ["operator-a", "operator-b"] if self.ha else ["operator-a"]
        for name in names:
            operator = OperatorProcess(
                self.cluster, self.folder / "operators", name=name, redis_url=self.redis.url
            )
            if self.ha:
                operator.extra_args = [
                    "--leader-election", f"--leader-election-namespace={LEASE[0]}",
                    f"--leader-election-name={LEASE[1]}", f"--leader-election-identity={name}",
                    f"--lease-duration={LEASE_SECONDS}",
                ]  # fmt: skip
            self.operators.append(operator)
        say(f"starting {len(names)} operator replica(s)" + (" with leader election" if self.ha
            else ": `handoff operator --leader-election` is not there yet"))  # fmt: skip
        for operator in self.operators:
            operator.start()
        if self.ha:
            _wait(lambda: lease_holder(self.cluster, LEASE) in names, 60, "a leader")

    def stop(self) -> None:
        for operator in self.operators:
            operator.stop()
        self.redis.stop()
        self.postgres.stop()
        self.cluster.stop()
        # What the checker needs is in the journals and dump.json: drop the bulky data folders.
        shutil.rmtree(self.postgres.folder.parent, ignore_errors=True)
        shutil.rmtree(self.cluster.folder / "etcd", ignore_errors=True)


def _wait(probe: Any, seconds: float, what: str) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            if probe():
                return
        except (RuntimeError, OSError):
            pass
        time.sleep(0.3)
    raise TimeoutError(f"timed out waiting for {what}")


def setup_namespaces(env: Environment) -> tuple[str, str, dict[str, str]]:
    """The load's namespace (the honest agents and the hostile one, each policy Ready) and the
    victims' namespace, which no policy lists; the agents' kubeconfigs."""
    cluster = env.cluster
    ns = cluster.new_namespace(agents=(*AGENTS, HOSTILE))
    elsewhere = cluster.new_namespace(agents=())
    for document in (*victims(ns, elsewhere).values(), deployment(ns, SANDBOX)):
        cluster.apply(document)
    cluster.apply(policy(ns))
    cluster.apply(hostile_policy(ns))
    _wait(lambda: _ready(cluster, "reliability", ns), 60, "the load policy to be Ready")
    _wait(lambda: _ready(cluster, HOSTILE_POLICY, ns), 60, "the hostile policy to be Ready")
    kubeconfigs = {}
    for agent in (*AGENTS, HOSTILE):
        token = cluster.token(f"{ns}/{agent}")
        kubeconfigs[agent] = str(
            cluster.control_plane.write_kubeconfig(
                env.folder / f"{agent}.kubeconfig", {agent: token}, ns
            )
        )
        _wait(
            lambda a=agent: cluster.kubectl(
                "get", "secret", f"handoff-redis-{a}", "-n", ns, check=False
            ).returncode == 0,
            60, f"the Redis Secret of {agent}",
        )  # fmt: skip
    return ns, elsewhere, kubeconfigs


def snapshot(cluster: Cluster, ns: str, elsewhere: str) -> dict[str, Any]:
    """What the hostile agent must not change, as the API server holds it: each victim's
    resourceVersion (a policy's generation: its status moves on) and content."""
    found: dict[str, Any] = {}
    for key in victim_keys(ns, elsewhere):
        kind, namespace, name = key.split("/")
        body = cluster.get(kind, name, namespace)
        meta = body["metadata"]
        policy_kind = kind == "agentactionpolicy"
        found[key] = {
            "version": meta["generation"] if policy_kind else meta["resourceVersion"],
            "content": body.get("data") if kind == "secret" else body.get("spec"),
            "deleting": bool(meta.get("deletionTimestamp")),
            "finalizers": meta.get("finalizers") or [],
        }
    return found


def _ready(cluster: Cluster, name: str, ns: str) -> bool:
    body = cluster.get("agentactionpolicy", name, ns)
    conditions = (body.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


async def drive(env: Environment, journal: Journal, ns: str, elsewhere: str,
                kubeconfigs: dict[str, str], faults: Faults, rate: float, seconds: float,
                hostile_every: float) -> dict[str, Any]:  # fmt: skip
    control = env.cluster.control_plane
    server, ca = control.server, str(control.ca_file)
    apis = {who: api_for(server, ca, env.cluster.token(who))
            for who in ("admin", "alice", "bob", "carol", "mallory")}  # fmt: skip
    for agent in (*AGENTS, HOSTILE):
        apis[agent] = api_for(server, ca, env.cluster.token(f"{ns}/{agent}"))
    load = Load(journal, ns, apis, kubeconfigs, rate, seconds)
    policy_uid = env.cluster.get("agentactionpolicy", "reliability", ns)["metadata"]["uid"]
    hostile = Hostile(journal, ns, elsewhere, apis[HOSTILE], AGENTS, policy_uid)
    load.observers.append(hostile.observe)
    load.before_rollback = hostile.squat_rollback
    background = [asyncio.create_task(load.watch())]
    attacks = asyncio.create_task(hostile.run(seconds - HOSTILE_STOP_S, hostile_every))
    background += [asyncio.create_task(load.consume(a)) for a in AGENTS]
    fault_task = asyncio.create_task(asyncio.to_thread(faults.run_all))
    supervisor = asyncio.create_task(asyncio.to_thread(faults.supervise))
    say(f"load: {rate}/s for {seconds:.0f}s, {int(rate * seconds)} requests")
    await load.run()
    hostile.stopping = True
    try:
        await attacks
    except Exception as e:  # the checker reports the attempts that are missing
        journal.write("errors", {"where": "hostile", "error": repr(e)[:300], "at": time.time()})
        say(f"the hostile agent stopped: {e!r}")
    say(f"load done: {len(load.filed)} filed, {hostile.count} hostile attempts;"
        " waiting for the faults to finish")  # fmt: skip
    await fault_task
    progress: dict[str, Any] = {}
    for what, target, limit in (("decided", load.decided, 120), ("delivered", load.delivered, 90)):
        end = time.monotonic() + limit
        while time.monotonic() < end and set(load.filed) - target:
            await asyncio.sleep(1)
        progress[what] = f"{len(set(load.filed) & target)} of {len(load.filed)}"
        say(f"{what}: {progress[what]}")
    end = time.monotonic() + 30
    while time.monotonic() < end and load.approved - load.executed:
        await asyncio.sleep(1)
    say(f"executed reported: {len(load.executed)} of {len(load.approved)} approved")
    faults.done.set()
    await supervisor
    dump: dict[str, Any] = {"progress": progress}
    listing = await apis["admin"].get(load.path())
    dump["requests"] = listing.get("items") or []
    await asyncio.sleep(5)  # publication follows the status write: let it catch up
    events = await apis["admin"].get(f"/api/v1/namespaces/{ns}/events")
    dump["events"] = events.get("items") or []
    load.stopping = True
    for task in background:
        task.cancel()
    await asyncio.gather(*background, return_exceptions=True)
    for api in apis.values():
        await api.close()
    return dump


def dump_redis(env: Environment, ns: str, dump: dict[str, Any]) -> None:
    client = redis.Redis.from_url(env.redis.url, decode_responses=True)

    def entries(stream: str) -> list[dict[str, Any]]:
        found: Any = client.xrange(stream)
        return [{"stream": stream, "id": i, **(fields or {})} for i, fields in found or []]

    dump["decision_entries"] = [
        e for agent in AGENTS for e in entries(f"handoff:decisions:{ns}:{agent}")
    ]
    # What is left unread on the hostile agent's outcome stream (the operator deletes what it
    # consumed): poison the reader never got to.
    left: Any = client.xrange(f"handoff:outcomes:{ns}:{HOSTILE}")
    dump["hostile_outcomes_left"] = [entry_id for entry_id, _ in left or []]
    dump["audit"] = [e for e in entries("handoff:audit") if e.get("namespace") == ns]
    client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reliability.run", description=__doc__)
    parser.add_argument("--rate", type=float, default=3.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=240, help="how long the load runs")
    parser.add_argument(
        "--hostile-every", type=float, default=2.0, help="seconds between the hostile agent's tries"
    )
    parser.add_argument(
        "--folder", type=Path, default=paths.project_root() / ".handoff/reliability"
    )
    args = parser.parse_args(argv)
    if not (paths.bin_dir() / "kube-apiserver").exists():
        print(f"no control plane in {paths.bin_dir()}: run 'make controlplane' first")
        return 2
    folder = args.folder / time.strftime("run-%Y%m%d-%H%M%S")
    folder.mkdir(parents=True)
    started = time.monotonic()
    say(f"reliability run in {folder}")
    env = Environment(folder)
    journal = Journal(folder)
    faults: Faults | None = None
    try:
        env.start()
        ns, elsewhere, kubeconfigs = setup_namespaces(env)
        faults = Faults(env, journal, ns, LEASE, offsets=_offsets(args.seconds))
        faults.prepare()
        scenario = scenario_json(ns, args.rate, args.seconds, elsewhere) | {"ha": env.ha}
        (folder / "scenario.json").write_text(json.dumps(scenario, indent=2))
        before = snapshot(env.cluster, ns, elsewhere)
        dump = asyncio.run(drive(env, journal, ns, elsewhere, kubeconfigs, faults, args.rate,
                                 args.seconds, args.hostile_every))  # fmt: skip
        dump["victims_before"], dump["victims_after"] = before, snapshot(env.cluster, ns, elsewhere)
        dump_redis(env, ns, dump)
        (folder / "dump.json").write_text(json.dumps(dump))
    except Exception:
        traceback.print_exc()
        return 1
    finally:
        if faults is not None:
            faults.done.set()
        journal.close()
        say("stopping the environment")
        env.stop()
    say(f"load and faults took {time.monotonic() - started:.0f}s; checking")
    checked = subprocess.run(  # noqa: S603 - the checker, in a process of its own
        [sys.executable, "-m", "reliability.checker", str(folder)],
        cwd=paths.project_root(), env=os.environ, check=False,
    )  # fmt: skip
    say(f"total {time.monotonic() - started:.0f}s; checker exit {checked.returncode}")
    return checked.returncode


def _offsets(seconds: float) -> dict[str, float]:
    """When each fault starts, in seconds after the load starts: spread over the load."""
    step = seconds / 5.5
    names = ["operator-kill", "redis-kill", "apiserver-restart", "postgres-rotation",
             "ha-leader-kill"]  # fmt: skip
    return {name: round(step * (k + 0.5), 1) for k, name in enumerate(names)}


if __name__ == "__main__":
    sys.exit(main())
