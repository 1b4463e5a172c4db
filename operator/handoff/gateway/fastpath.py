"""Tier 1 without waiting for the operator: after the request is filed, the gateway classifies it
itself, with the operator's own pure classifier over the namespace's policies as the gateway's
watch shows them, and forwards the call at once when the answer is an unconditional tier 1.

The operator still classifies and decides the request as it would anyway; the gateway records the
execution only once the request is Approved (admission holds it to that). A local tier 1 must
never be more permissive than the operator's answer, so the gateway says "tier 1 now" only when:

- the policies are the gateway's watch-fed view (``policyview.PolicyView``), trusted only while
  its watch follows the API server; otherwise they are read after the request was filed (a
  consistent read). Every policy of the namespace must be at the generation the operator has
  compiled (``status.observedGeneration``): the operator classifies with the same policies, from
  its own watch-fed index. A policy change committed in the milliseconds a watch takes to deliver
  it, before the filing, may not count here: the operator's decision is then compared (below);
- every Enforce policy that governs the agent is Ready (it compiles, and its status does not say
  Ready=False for its credentials or executor Role: the operator holds those tier 4), the
  winner's verdict is tier 1 from a rule (not a fail-closed tier), and no governing policy has a
  budget for the action (the operator counts budgets; a spent one sends a tier 1 to a person);
- the action is not one the operator treats specially (a post-incident review);
- the rules' ``when``s over the agent's parameters answered within half the operator's CPU
  budget (``FAST_SHARE``): an answer near the budget may be a failure (tier 4) there.

Otherwise the call takes the ordinary path: it waits for the operator's decision. If the operator
still answers something else (a policy changed after the read), the gateway counts and logs the
disagreement (``handoff_gateway_fast_path_total{outcome="Disagreed"}``) and records the execution
only if and when the request is Approved.
"""

import asyncio
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from handoff.adapters.kube import KubeApi, KubeError
from handoff.adapters.sandbox import Sandbox
from handoff.domain.breakglass import POST_INCIDENT_ACTION
from handoff.domain.classify import RequestFacts, classify, when_plan
from handoff.domain.policy import CompiledPolicy
from handoff.domain.readiness import held_by_status
from handoff.domain.reasons import Mode
from handoff.gateway.policyview import PolicyView

PATH_IN = "/apis/handoff.dev/v1alpha1/namespaces"
# The share of the operator's CPU budget the fast path gives a request's `when`s. The operator
# fails a `when` closed (tier 4) once it spends the budget; parameters that cost just under it
# here and just over it there (CPU time is measured, not counted) made the gateway run at once
# what the operator then sent to a person. Here a `when` that needs more than half of it fails
# closed, and the call waits for the operator's own answer.
FAST_SHARE = 0.5


class LocalClassifier:
    def __init__(
        self, api: KubeApi, view: PolicyView | None = None, sandbox: Sandbox | None = None
    ) -> None:
        self.api = api  # the gateway's own (it may list policies)
        self.view = view or PolicyView(api)
        self.sandbox = sandbox  # `when`s over the agent's parameters run there, as the operator's
        self.fallbacks = 0  # calls classified from a consistent read (the view was not live)

    async def why_not_tier1(self, request: Mapping[str, Any]) -> str | None:
        """None when ``request`` (as filed) is an unconditional tier 1 by the policies as they are
        now and as the operator has compiled them; else why the gateway waits for the operator."""
        meta, spec = request["metadata"], request.get("spec") or {}
        namespace = str(meta["namespace"])
        items = self.view.in_namespace(namespace)
        if items is None:  # not listed yet, or its watch broke: read them, never guess
            self.fallbacks += 1
            try:
                listing = await self.api.get(f"{PATH_IN}/{namespace}/agentactionpolicies")
            except KubeError as e:
                return f"the policies could not be read: {e.message}"
            items = listing.get("items") or []
        policies: list[CompiledPolicy] = []
        for body in items:
            generation = int(body["metadata"].get("generation") or 0)
            observed = (body.get("status") or {}).get("observedGeneration")
            if not generation or observed != generation:
                return f"the operator has not compiled policy {body['metadata']['name']} yet"
            compiled = self.view.compiled(body)
            held = held_by_status(body)  # its credentials or executor Role not in place: tier 4
            policies.append(replace(compiled, held=held) if held else compiled)
        facts = RequestFacts.from_spec(namespace, spec, meta.get("labels"))
        if facts.action == POST_INCIDENT_ACTION:
            return "a post-incident review"
        groups = when_plan(policies, facts)
        if groups:  # never in the event loop: a `when` costs what the agent's values make it
            if self.sandbox is None:
                return "a rule's `when` applies (evaluated only by the operator here)"
            variables = facts.variables()
            answers = await self.sandbox.evaluate(
                (namespace, facts.agent), variables, groups, self.sandbox.budget * FAST_SHARE
            )
            facts = replace(facts, results=answers)
        return why_not(policies, facts)


def why_not(policies: list[CompiledPolicy], facts: RequestFacts) -> str | None:
    """Pure: None when the operator's classifier makes ``facts`` an unconditional tier 1 under
    ``policies`` (all Ready, no budget for the action); else why not."""
    governing = [p for p in policies
                 if p.mode is Mode.ENFORCE and p.governs(facts.namespace, facts.agent)]  # fmt: skip
    for policy in governing:
        if not policy.ready:
            return f"policy {policy.name} is not Ready"
        if any(b.covers(facts.action) for b in policy.budgets):
            return f"policy {policy.name} has a budget for {facts.action}"
    verdict = classify(policies, facts).verdict
    if verdict is None:
        return "no policy governs the agent"
    if verdict.tier != 1 or verdict.fail_closed:
        return f"tier {verdict.tier}"
    return None


class Decisions:
    """The requests this gateway is filing for a fast path, by namespace and name, each with the
    first state of it the watcher delivers that the operator has classified (so a fast path does
    not open a watch of its own per call)."""

    def __init__(self) -> None:
        self._waiting: dict[tuple[str, str], asyncio.Future[Mapping[str, Any]]] = {}

    def expect(self, namespace: str, name: str) -> "asyncio.Future[Mapping[str, Any]] | None":
        """A future for that request's classified state; None if another call of this gateway
        (an identical one) expects it already: that one alone may take the fast path."""
        if (namespace, name) in self._waiting:
            return None
        future: asyncio.Future[Mapping[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[(namespace, name)] = future
        return future

    def forget(self, namespace: str, name: str) -> None:
        self._waiting.pop((namespace, name), None)

    def seen(self, body: Mapping[str, Any]) -> bool:
        """Hand ``body`` to the fast path waiting for it; whether one was (it then records it)."""
        meta = body.get("metadata") or {}
        future = self._waiting.get((str(meta.get("namespace")), str(meta.get("name"))))
        if future is None:
            return False
        status = body.get("status") or {}
        if not future.done() and (status.get("decision") or status.get("tier")):
            future.set_result(body)
        return True
