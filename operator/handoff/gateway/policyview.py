"""The AgentActionPolicies of every namespace as the gateway sees them: listed, then watched
(``listwatch.ListWatch``), each compiled once per generation.

The tier-1 fast path classifies against this view instead of reading the policies on every call.
It is trusted only while it follows the API server (``live``): before the first list, and from a
broken watch until the next list, ``in_namespace`` answers None and the caller reads the policies
itself (a consistent read), never classifying against a stale or empty view.
"""

from collections.abc import Mapping, Sequence
from typing import Any, cast

from handoff.adapters.kube import KubeApi
from handoff.domain.policy import CompiledPolicy, compile_policy
from handoff.domain.resources import PolicySpecJSON
from handoff.gateway.listwatch import ListWatch

PATH = "/apis/handoff.dev/v1alpha1/agentactionpolicies"
WATCH_SECONDS = 60.0  # shorter than the default: a silently dead connection is noticed sooner
_MAX_COMPILED = 1024


class PolicyView:
    def __init__(self, api: KubeApi) -> None:
        self._bodies: dict[str, dict[str, Mapping[str, Any]]] = {}  # namespace -> name -> body
        self._compiled: dict[tuple[str, str, str, int], CompiledPolicy] = {}
        self.loop = ListWatch(
            api, PATH, "policies", on_list=self._listed, on_event=self._event,
            seconds=WATCH_SECONDS,
        )  # fmt: skip

    async def run(self) -> None:
        await self.loop.run()

    @property
    def live(self) -> bool:
        return self.loop.live

    def in_namespace(self, namespace: str) -> list[Mapping[str, Any]] | None:
        """The namespace's policies as last seen, or None when the view is not to be trusted."""
        if not self.loop.live:
            return None
        return list(self._bodies.get(namespace, {}).values())

    def compiled(self, body: Mapping[str, Any]) -> CompiledPolicy:
        meta = body["metadata"]
        generation = int(meta.get("generation") or 0)
        key = (meta["namespace"], meta["name"], str(meta.get("uid")), generation)
        found = self._compiled.get(key)
        if found is None:
            if len(self._compiled) >= _MAX_COMPILED:
                self._compiled.clear()
            found = compile_policy(
                meta["namespace"], meta["name"], cast(PolicySpecJSON, body.get("spec") or {}),
                generation,
            )  # fmt: skip
            self._compiled[key] = found
        return found

    def _listed(self, items: Sequence[Mapping[str, Any]]) -> None:
        bodies: dict[str, dict[str, Mapping[str, Any]]] = {}
        for body in items:
            meta = body["metadata"]
            bodies.setdefault(meta["namespace"], {})[meta["name"]] = body
        self._bodies = bodies

    def _event(self, kind: str, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        if kind == "DELETED":
            self._bodies.get(namespace, {}).pop(name, None)
        else:
            self._bodies.setdefault(namespace, {})[name] = body
