"""The operator's view of the policies: compiled once, kept by namespace."""

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, cast

from handoff.domain.model import transition_time
from handoff.domain.policy import CompiledPolicy, compile_policy
from handoff.domain.readiness import held_by_status
from handoff.domain.reasons import BREAK_GLASS, READY, Reason
from handoff.domain.resources import PolicyJSON


class PolicyIndex:
    """Compiled policies by namespace. Only the operator's event loop touches it."""

    def __init__(self) -> None:
        self._by_namespace: dict[str, dict[str, CompiledPolicy]] = {}

    def put(self, body: PolicyJSON) -> CompiledPolicy:
        """Compile ``body`` (once per generation). Whether it is held (compiled but not enforced
        yet) is what its status says of this generation, else what was known of it before: a
        policy the operator could not put in place stays held until the operator says so."""
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        generation = int(meta.get("generation") or 0)
        current = self._by_namespace.get(namespace, {}).get(name)
        held = held_by_status(cast(Mapping[str, Any], body))
        if held is None:
            held = current.held if current is not None else ""
        if current is not None and current.generation == generation and generation:
            compiled = current if current.held == held else replace(current, held=held)
        else:
            compiled = compile_policy(namespace, name, body.get("spec") or {}, generation)
            compiled = replace(compiled, held=held) if held else compiled
        self._by_namespace.setdefault(namespace, {})[name] = compiled
        return compiled

    def hold(self, namespace: str, name: str, why: str) -> None:
        """The operator's own word after reconciling the policy: held for ``why`` ("": not)."""
        current = self._by_namespace.get(namespace, {}).get(name)
        if current is not None and current.held != why:
            self._by_namespace[namespace][name] = replace(current, held=why)

    def remove(self, namespace: str, name: str) -> None:
        self._by_namespace.get(namespace, {}).pop(name, None)

    def in_namespace(self, namespace: str) -> tuple[CompiledPolicy, ...]:
        return tuple(self._by_namespace.get(namespace, {}).values())

    def named(self, namespace: str, name: object) -> CompiledPolicy | None:
        """The policy ``name`` of the namespace (a request's ``status.policy``), if compiled."""
        return self._by_namespace.get(namespace, {}).get(str(name)) if name else None

    def all(self) -> tuple[CompiledPolicy, ...]:
        return tuple(p for ns in self._by_namespace.values() for p in ns.values())


def policy_status(
    policy: CompiledPolicy,
    old: Mapping[str, Any],
    now: str,
    problems: Sequence[str] = (),
    break_glass: tuple[str, Reason, str] | None = None,
) -> dict[str, Any]:
    """The status a policy should have; conditions keep their transition time when unchanged.

    ``problems`` are what provisioning could not do (a database unreachable): they make the
    policy Ready=False with their own reason, but do not change how it classifies.
    ``break_glass`` is the BreakGlass condition (status, reason, message), when annotated.
    """
    status = "True" if not policy.errors and not problems else "False"
    if policy.errors:
        reason = Reason.COMPILE_FAILED
        message = "; ".join(policy.errors) + ". Its agents' actions are tier 4 until it is fixed"
    elif problems:
        reason = Reason.CREDENTIALS_FAILED
        message = "; ".join(problems) + "; retrying"
    else:
        reason = Reason.COMPILED
        agents = ", ".join(sorted(policy.service_accounts))
        message = f"{len(policy.rules)} rules compiled; governs {agents}"
    conditions = [_condition(old, READY, (status, reason, message), now, policy.generation)]
    if break_glass is not None:
        conditions.append(_condition(old, BREAK_GLASS, break_glass, now, policy.generation))
    return {
        "observedGeneration": policy.generation,
        "rules": len(policy.rules),
        "agents": sorted(policy.service_accounts),
        "conditions": conditions,
    }


def _condition(
    old: Mapping[str, Any],
    kind: str,
    what: tuple[str, Reason, str],
    now: str,
    generation: int,
) -> dict[str, Any]:
    status, reason, message = what
    since = transition_time(old.get("conditions") or (), kind, status, now)
    return {
        "type": kind,
        "status": status,
        "reason": str(reason),
        "message": message[:4000],
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }
