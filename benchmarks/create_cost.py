"""What the agent's create of an ActionRequest costs, and which of its checks cost what.

A private control plane (no operator, no watchers), an agent ServiceAccount allowed to create
ConfigMaps and ActionRequests, and the gateway's own API client (``KubeApi`` with the agent's
token, as ``gateway/calls.py`` files). Back to back, in rounds, with the cluster's checks taken
away one group at a time and put back:

- a ConfigMap (the API server's floor for a create: authentication, RBAC, etcd);
- the ActionRequest the gateway bench files (``read_account`` of the example bank);
- the same as a dry run (every check, no etcd write);
- and the same with the CRD's ``x-kubernetes-validations`` removed, and each admission policy
  that judges a create (``crds/admission``) unbound.

Run: ``.venv/bin/python benchmarks/create_cost.py [--folder F] [--count N] [--rounds R]``.
Prints one row per configuration: median, p90 and mean in ms over all rounds.
"""

import argparse
import asyncio
import copy
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml
from environment import BenchEnvironment
from handoff import paths
from handoff.adapters.kube import KubeApi, KubeError, resource_path

ROOT = Path(__file__).resolve().parents[1]
NS, AGENT = "bench-create", "gateway-agent"
AR_PATH = resource_path("handoff.dev", "v1alpha1", "actionrequests", NS)
CM_PATH = resource_path("", "v1", "configmaps", NS)
CRD = ROOT / "crds" / "handoff.dev_actionrequests.yaml"
BINDINGS = {  # what an ActionRequest create meets in crds/admission
    "vap handoff-parameters": ("validatingadmissionpolicybinding", "handoff-parameters"),
    "vap handoff-filing": ("validatingadmissionpolicybinding", "handoff-filing"),
    "map handoff-requested-by": ("mutatingadmissionpolicybinding", "handoff-requested-by"),
}


def request(name: str, account: str) -> dict[str, Any]:
    """The body the gateway files for the bench's tier-1 call (``filing.request_body``)."""
    args = {"account": account}
    return {
        "apiVersion": "handoff.dev/v1alpha1",
        "kind": "ActionRequest",
        "metadata": {"name": name, "namespace": NS, "labels": {"handoff.dev/agent": AGENT},
                     "annotations": {"handoff.dev/proposal-id": name}},
        "spec": {"agent": AGENT, "action": "mcp.bank.read_account",
                 "target": f"account:{account}", "parameters": args,
                 "summary": f"Read an account (bank/read_account) with {json.dumps(args)}",
                 "execution": "MCP"},
    }  # fmt: skip


def configmap(name: str, account: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": NS}, "data": {"account": account}}  # fmt: skip


def crd_without_rules() -> str:
    """The ActionRequest CRD with every x-kubernetes-validations removed."""
    crd = yaml.safe_load(CRD.read_text())

    def strip(node: Any) -> None:
        if isinstance(node, dict):
            node.pop("x-kubernetes-validations", None)
            for value in node.values():
                strip(value)
        elif isinstance(node, list):
            for value in node:
                strip(value)

    stripped = copy.deepcopy(crd)
    strip(stripped)
    return yaml.safe_dump(stripped)


class Bench:
    def __init__(self, env: BenchEnvironment, agent: KubeApi) -> None:
        self.env = env
        self.agent = agent
        self.rows: dict[str, list[float]] = {}

    def kubectl(self, *args: str, text: str | None = None) -> None:
        assert self.env.cluster is not None
        self.env.cluster.kubectl(*args, input=text)

    async def timed(self, label: str, count: int, make: Callable[[str], Awaitable[Any]]) -> None:
        out = self.rows.setdefault(label, [])
        for _ in range(count):
            name = f"c-{uuid.uuid4().hex[:20]}"
            began = time.perf_counter()
            await make(name)
            out.append(time.perf_counter() - began)

    async def accepted(self, body: dict[str, Any]) -> bool:
        try:
            await self.agent.create(AR_PATH, body)
            return True
        except KubeError:
            return False

    async def until(self, probe: Callable[[], Awaitable[bool]], what: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if await probe():
                await asyncio.sleep(1.0)  # every API server cache, not only the one probed
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"the cluster did not take the change: {what}")

    async def crd(self, rules: bool) -> None:
        text = CRD.read_text() if rules else crd_without_rules()
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", text=text)
        control = request(f"c-{uuid.uuid4().hex[:20]}", "x")
        control["spec"]["target"] = "account:\x01"

        async def probe() -> bool:
            control["metadata"]["name"] = f"c-{uuid.uuid4().hex[:20]}"
            return await self.accepted(control) != rules

        await self.until(probe, f"CRD rules {'on' if rules else 'off'}")

    async def admission(self, off: list[str]) -> None:
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f",
                     str(paths.admission_dir()))  # fmt: skip
        for key in off:
            kind, name = BINDINGS[key]
            self.kubectl("delete", kind, name, "--ignore-not-found")
        wide = request("x", "x")
        wide["spec"]["parameters"] = {"list": list(range(300))}

        labelled = request("x", "x")
        labelled["metadata"]["labels"]["handoff.dev/tier"] = "1"

        async def probe() -> bool:  # handoff-parameters refuses 300 items in a list, and
            wide["metadata"]["name"] = f"c-{uuid.uuid4().hex[:20]}"  # handoff-filing a label
            labelled["metadata"]["name"] = f"c-{uuid.uuid4().hex[:20]}"
            return await self.accepted(wide) == ("vap handoff-parameters" in off) and (
                await self.accepted(labelled) == ("vap handoff-filing" in off)
            )

        await self.until(probe, f"admission without {off}")


def report(rows: dict[str, list[float]]) -> None:
    """Per row its median, p90 and mean; per ActionRequest row also the median of its creates
    less the ConfigMap created just before each (the API server's floor at that moment)."""
    width = max(len(k) for k in rows)
    print(f"{'create':<{width}}  {'n':>5}  {'median':>7}  {'p90':>7}  {'mean':>7}"
          f"  {'- ConfigMap':>11}  (ms)")  # fmt: skip
    for label, values in rows.items():
        ms = sorted(v * 1000 for v in values)
        beside = rows.get(f"  ConfigMap beside: {label}")
        paired = ""
        if beside is not None and len(beside) == len(values):
            diffs = [a - b for a, b in zip(values, beside, strict=True)]
            paired = f"{statistics.median(diffs) * 1000:11.2f}"
        print(f"{label:<{width}}  {len(ms):>5}  {statistics.median(ms):7.2f}"
              f"  {ms[int(len(ms) * 0.9)]:7.2f}  {statistics.fmean(ms):7.2f}  {paired}")  # fmt: skip


async def main(folder: Path, count: int, rounds: int) -> None:
    env = BenchEnvironment(folder).start()
    try:
        env.namespace(NS, (AGENT,))
        await env.grant_create(NS, AGENT)
        async with env.api() as admin:
            role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                    "metadata": {"name": "configmaps", "namespace": NS},
                    "rules": [{"apiGroups": [""], "resources": ["configmaps"],
                               "verbs": ["create"]}]}  # fmt: skip
            binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                       "metadata": {"name": "configmaps", "namespace": NS},
                       "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                   "name": "configmaps"},
                       "subjects": [{"kind": "ServiceAccount", "name": AGENT,
                                     "namespace": NS}]}  # fmt: skip
            await admin.apply(role, manager="bench")
            await admin.apply(binding, manager="bench")
        await asyncio.sleep(1)
        async with env.api(f"{NS}/{AGENT}") as agent:
            bench = Bench(env, agent)
            dry = AR_PATH + "?dryRun=All"
            ignore = AR_PATH + "?fieldValidation=Ignore"
            configs: list[tuple[str, bool, list[str]]] = [
                ("ActionRequest, every check", True, []),
                ("ActionRequest, no CRD CEL rules", False, []),
                ("ActionRequest, no vap handoff-parameters", True, ["vap handoff-parameters"]),
                ("ActionRequest, no vap handoff-filing", True, ["vap handoff-filing"]),
                ("ActionRequest, no vap filing, no map requested-by", True,
                 ["vap handoff-filing", "map handoff-requested-by"]),
                ("ActionRequest, no CEL at all (CRD rules, VAPs, MAP)", False, list(BINDINGS)),
            ]  # fmt: skip
            for warm in range(20):
                await agent.create(CM_PATH, configmap(f"w-{warm}", "w"))
                await agent.create(AR_PATH, request(f"w-{warm}", f"w{warm}"))
            for r in range(rounds):
                order = configs if r % 2 == 0 else list(reversed(configs))
                for label, rules, off in order:
                    await bench.crd(rules)
                    await bench.admission(off)
                    for _ in range(count):  # one beside the other: the same moment's load
                        await bench.timed(f"  ConfigMap beside: {label}", 1, lambda n: agent.create(
                            CM_PATH, configmap(n, n)))  # fmt: skip
                        await bench.timed(label, 1, lambda n: agent.create(
                            AR_PATH, request(n, n)))  # fmt: skip
                        if not off and rules:
                            await bench.timed("ActionRequest, every check, dryRun=All", 1,
                                              lambda n: agent.create(dry, request(n, n)))  # fmt: skip
                            await bench.timed(
                                "ActionRequest, every check, fieldValidation=Ignore", 1,
                                lambda n: agent.create(ignore, request(n, n)))  # fmt: skip
                print(f"round {r + 1}/{rounds}: {label} done", file=sys.stderr, flush=True)
            await bench.crd(True)
            await bench.admission([])
        print(f"load average at the end: {os.getloadavg()}")
        report(bench.rows)
    finally:
        env.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, default=ROOT / ".handoff" / "bench-create")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    options = parser.parse_args()
    print(f"load average at the start: {os.getloadavg()}")
    asyncio.run(main(options.folder, options.count, options.rounds))
