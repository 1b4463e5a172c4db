"""Gather what classification reads but must not compute on the event loop: the answers of the
``when`` expressions a request reaches, from the sandbox (``handoff.adapters.sandbox``).

They are gathered before the request takes one of the reconciler's slots, so requests waiting
for their turn in the sandbox (an agent's requests queue behind each other there) never hold
the slots every other request needs to reach the API server.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from handoff.adapters.sandbox import Sandbox
from handoff.domain.classify import when_plan
from handoff.domain.decide import RequestState, Waiting
from handoff.domain.policy import CompiledPolicy
from handoff.domain.resources import RequestJSON


@dataclass(frozen=True)
class Answers:
    """What the sandbox answered, and for which variables."""

    variables: Mapping[str, object]
    results: Mapping[str, bool | str]


async def answers_for(
    sandbox: Sandbox | None, policies: Iterable[CompiledPolicy], body: RequestJSON
) -> Answers | None:
    """The answers classifying ``body`` needs, or None when it is not to be classified."""
    state = RequestState.from_json(body)
    if sandbox is None or state.decided or Waiting.from_status(state.status) is not None:
        return None
    facts = state.facts
    variables = facts.variables()
    groups = when_plan(policies, facts)
    key = (facts.namespace, facts.agent)
    return Answers(variables, await sandbox.evaluate(key, variables, groups) if groups else {})


async def with_when_results(
    sandbox: Sandbox | None,
    policies: Iterable[CompiledPolicy],
    state: RequestState,
    known: Answers | None = None,
) -> RequestState:
    """``state`` with the answers its classification needs (``known`` ones when they cover it);
    unchanged when it is not to be classified (decided, or waiting with its classification in
    its status) or when there is no sandbox (the expressions are then evaluated in process)."""
    if sandbox is None or state.decided or Waiting.from_status(state.status) is not None:
        return state
    policies = tuple(policies)
    facts = state.facts
    groups = when_plan(policies, facts)
    variables = facts.variables()
    covered = known is not None and all(s in known.results for group in groups for s in group)
    if known is not None and covered and known.variables == variables:
        return replace(state, facts=replace(facts, results=known.results))
    key = (facts.namespace, facts.agent)
    results = await sandbox.evaluate(key, variables, groups) if groups else {}
    return replace(state, facts=replace(facts, results=results))
