"""The MCPServers the gateway fronts, kept from a watch, and their tools as the agents see them."""

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import mcp_types as types

from handoff.adapters.kube import KubeApi, KubeError
from handoff.domain.model import transition_time
from handoff.domain.policy import CompiledPolicy, compile_policy
from handoff.domain.reasons import READY, Gateway
from handoff.domain.resources import PolicySpecJSON
from handoff.domain.timefmt import format_time
from handoff.gateway.filing import CONTEXT_FIELDS
from handoff.gateway.governance import ungoverned
from handoff.gateway.listwatch import ListWatch
from handoff.gateway.policyview import PolicyView
from handoff.gateway.servers import SEPARATOR, Server, compile_server
from handoff.gateway.upstream import UpstreamError, Upstreams

log = logging.getLogger(__name__)
PATH = "/apis/handoff.dev/v1alpha1/mcpservers"
PATH_IN = "/apis/handoff.dev/v1alpha1/namespaces"
RETRY_EVERY = 5.0  # seconds between tries of an upstream that did not answer
REPORT_EVERY = 60.0  # seconds between reports of every server
GOVERNED = "Governed"  # the condition: does a policy rule name every tool's action?


class Registry:
    def __init__(
        self, api: KubeApi, upstreams: Upstreams, policies: PolicyView | None = None
    ) -> None:
        self.api = api
        self.upstreams = upstreams
        self.policies = policies  # the watch-fed view, when the gateway runs one
        self.servers: dict[tuple[str, str], Server] = {}
        self.loop = ListWatch(api, PATH, "MCPServers", on_list=self._listed, on_event=self._event)
        self.synced = self.loop.synced
        self._unready: set[tuple[str, str]] = set()  # reported not Ready: tried again soon
        self._bodies: dict[tuple[str, str], Mapping[str, Any]] = {}

    def server(self, namespace: str, name: str) -> Server | None:
        return self.servers.get((namespace, name))

    def in_namespace(self, namespace: str) -> list[Server]:
        return sorted(
            (s for (ns, _), s in self.servers.items() if ns == namespace), key=lambda s: s.name
        )

    async def run(self) -> None:
        """List, then watch, for ever (``listwatch.ListWatch``)."""
        await self.loop.run()

    async def _listed(self, items: Sequence[Mapping[str, Any]]) -> None:
        self.servers = {}
        for body in items:
            await self._seen(body)

    async def _event(self, kind: str, body: Mapping[str, Any]) -> None:
        if kind == "DELETED":
            meta = body["metadata"]
            self.servers.pop((meta["namespace"], meta["name"]), None)
            self._unready.discard((meta["namespace"], meta["name"]))
        else:
            await self._seen(body)

    async def retry(self, every: float = RETRY_EVERY) -> None:
        """Report again, now and then, the servers whose upstream did not answer last time, and
        every server each minute (policies change beside them)."""
        rounds = 0
        while True:
            await asyncio.sleep(every)
            rounds += 1
            everyone = rounds % int(REPORT_EVERY / every) == 0
            for key, server in list(self.servers.items()):
                if everyone or key in self._unready:
                    await self.report(server, self._bodies.get(key, {}))

    async def _seen(self, body: Mapping[str, Any]) -> None:
        server = compile_server(body)
        before = self.servers.get((server.namespace, server.name))
        self.servers[(server.namespace, server.name)] = server
        self._bodies[(server.namespace, server.name)] = body
        if before is None or before.generation != server.generation:
            task = asyncio.create_task(self.report(server, body))
            task.add_done_callback(lambda _: None)

    async def report(self, server: Server, body: Mapping[str, Any]) -> None:
        """Ready, the tools seen upstream, and the spec's problems, in the MCPServer's status. A
        report that could not be written (the API server busy or restarting) is tried again
        with the unready ones, not a minute later."""
        key = (server.namespace, server.name)
        try:
            await self._report(server, body)
        except Exception as e:  # a background task: log it, and try again soon
            self._unready.add(key)
            log.warning("MCPServer %s/%s: its status was not written: %s", *key, e)

    async def _report(self, server: Server, body: Mapping[str, Any]) -> None:
        """Write the status; each condition keeps its lastTransitionTime while its status holds
        (from ``body``, the MCPServer as last seen), so that a report that finds nothing new,
        every 5 s for an upstream that does not answer, is no write at all."""
        try:
            tools = sorted(await self.upstreams.tools(server, fresh=True))
            ready, reason = "True", Gateway.TOOLS_LISTED
            message = f"the upstream offers {len(tools)} tools"
        except UpstreamError as e:
            tools, ready, reason, message = [], "False", Gateway.UPSTREAM_UNAVAILABLE, str(e)
        if server.problems:
            ready, reason = "False", Gateway.INVALID_SPEC
            message = "; ".join(server.problems)
        loose = ungoverned(server, tools, await self._policies(server.namespace))
        held = "False" if loose else "True"
        before = (body.get("status") or {}).get("conditions") or ()
        now = format_time(datetime.now(UTC))
        governed = {"type": GOVERNED, "status": held,
                    "reason": Gateway.UNGOVERNED_TOOLS if loose else Gateway.GOVERNED,
                    "message": (f"no policy rule names the actions of {', '.join(loose)}: their"
                                " calls get the policy's defaultTier (or NoPolicy)")[:4000]
                    if loose else "a policy rule names every tool's action",
                    "lastTransitionTime": transition_time(before, GOVERNED, held, now),
                    "observedGeneration": server.generation}  # fmt: skip
        condition = {"type": READY, "status": ready, "reason": reason, "message": message[:4000],
                     "lastTransitionTime": transition_time(before, READY, ready, now),
                     "observedGeneration": server.generation}  # fmt: skip
        status = {"status": {"toolCount": len(tools), "tools": tools[:256],
                             "problems": [p[:1024] for p in server.problems[:32]],
                             "ungoverned": loose[:256],
                             "conditions": [condition, governed]}}  # fmt: skip
        path = f"{PATH_IN}/{server.namespace}/mcpservers/{server.name}/status"
        key = (server.namespace, server.name)
        await self.api.merge_patch(path, status)
        if reason == Gateway.UPSTREAM_UNAVAILABLE:
            self._unready.add(key)
        else:
            self._unready.discard(key)

    async def _policies(self, namespace: str) -> list[CompiledPolicy]:
        view = self.policies
        if view is not None and (seen := view.in_namespace(namespace)) is not None:
            return [view.compiled(p) for p in seen]
        try:
            listing = await self.api.get(f"{PATH_IN}/{namespace}/agentactionpolicies")
        except KubeError:
            return []
        items = listing.get("items") or []
        return [
            compile_policy(
                namespace, p["metadata"]["name"], cast(PolicySpecJSON, p.get("spec") or {})
            )
            for p in items
        ]

    async def tools_for(self, namespace: str, agent: str) -> list[types.Tool]:
        """The tools this agent may call, each with the reviewer's context fields added."""
        offered: list[types.Tool] = []
        for server in self.in_namespace(namespace):
            if not server.allows(agent):
                continue
            try:
                tools = await self.upstreams.tools(server)
            except UpstreamError as e:
                log.warning("%s", e)
                continue
            for name, tool in sorted(tools.items()):
                mapping = server.mapping(name)
                if mapping.hidden or not mapping.action:
                    continue
                offered.append(exposed(server, tool))
        return offered


def exposed(server: Server, tool: types.Tool) -> types.Tool:
    schema = dict(tool.input_schema or {"type": "object"})
    properties = dict(schema.get("properties") or {})
    for name, (_, limit, description) in CONTEXT_FIELDS.items():
        properties[name] = {"type": "string", "maxLength": limit, "description": description}
    schema["properties"] = properties
    title = tool.title or tool.name
    return tool.model_copy(
        update={
            "name": f"{server.name}{SEPARATOR}{tool.name}",
            "input_schema": schema,
            "title": title,
            "output_schema": None,
        }
    )
