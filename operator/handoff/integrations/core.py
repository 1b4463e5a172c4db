"""What the framework integrations share: filing a tool call, keeping a paused run, and the
resume worker that hands each decision to the paused call it belongs to.

Redis keys, all among the agent's own state keys (``handoff:state:{ns}:{agent}:…``, which its
ACL user may write with a TTL):

- ``…:{proposal}``: the SDK's state of each filed call (framework, pause id, call id, tool);
- ``…:pause-{pause}``: a paused run, saved when the framework's run stops (its requests by call
  id, and the framework's own state: a message history, a ``RunState``, a thread id);
- ``…:pause-{pause}-{call}``: the verdict for one call, written when its decision arrives;
- ``…:ran-{proposal}``: a call that ran at once (tier 1 or 2), so its decision is not kept.

A paused run is resumed once every call it waits for has a verdict. Whoever takes its key first
(GETDEL) resumes it, so two workers never resume one run twice. Everything the agent wrote is
hostile: a call runs only when its verdict is an approval whose spec the SDK verified, and only
with the arguments of that spec (:meth:`Oversight.admit`).
"""

import contextvars
import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from handoff.domain.keys import state_key
from handoff.sdk import Agent, Decision, HandoffError, SpecMismatch, Ticket

log = logging.getLogger(__name__)
T = TypeVar("T")

#: A tool's describer: from its arguments, any of ``target``, ``summary``, ``blast_radius`` and
#: ``rollback`` (the SDK's ``propose`` keywords) for the request.
Describe = Callable[[dict[str, Any]], Mapping[str, Any]]


@dataclass(frozen=True)
class Verdict:
    """What one paused call gets when its run resumes."""

    call: str
    request: str
    uid: str
    approved: bool  # approved, and the request's spec verified as the one proposed
    action: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)  # of the approved spec, nothing else
    refusal: str = ""  # what the model reads when the call does not run

    def dumps(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def loads(cls, data: bytes) -> "Verdict":
        raw = json.loads(data)
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})


@dataclass
class Paused:
    """A paused run, taken for resuming: the framework's state and a verdict per waiting call."""

    pause: str
    data: Any
    verdicts: dict[str, Verdict]
    started: set[str] = field(default_factory=set)  # calls that were handed to their tool


#: The run being resumed in this task, for the framework's tool wrapper to find its verdicts.
RESUMING: contextvars.ContextVar[Paused | None] = contextvars.ContextVar(
    "handoff_resuming", default=None
)


class Oversight:
    """Handoff behind one framework: ``agent`` is a connected :class:`handoff.sdk.Agent`."""

    def __init__(
        self,
        agent: Agent,
        framework: str,
        *,
        actions: Mapping[str, str] | None = None,
        describe: Mapping[str, Describe] | None = None,
    ) -> None:
        self.agent = agent
        self.framework = framework
        self.actions = dict(actions or {})
        self.describe = dict(describe or {})

    # -- filing ----------------------------------------------------------------------------------

    def action_for(self, tool: str) -> str:
        """The action a tool's calls are filed as: the mapping's, else the tool's own name (with
        the characters an action may not hold as ``-``, and none at either end)."""
        mapped = self.actions.get(tool)
        if mapped:
            return mapped
        return re.sub(r"[^A-Za-z0-9._:/-]", "-", tool).strip("-._:/") or "tool"

    async def file(
        self, pause: str, call: str, tool: str, args: dict[str, Any], reasoning: str = ""
    ) -> Ticket:
        """File one tool call: its arguments, exactly, are the request's parameters."""
        described = dict(self.describe[tool](dict(args))) if tool in self.describe else {}
        summary = str(described.get("summary") or f"{tool}({_json(args)})")
        rollback = described.get("rollback")
        state = {"integration": self.framework, "pause": pause, "call": call, "tool": tool}
        return await self.agent.propose(
            self.action_for(tool),
            summary=_clip(summary, 1024),
            target=_clip(str(described.get("target") or ""), 1024),
            parameters=args,
            reasoning=_clip(reasoning, 4096),
            blast_radius=_clip(str(described.get("blast_radius") or ""), 1024),
            rollback=dict(rollback) if isinstance(rollback, Mapping) else None,
            state=state,
            idempotency_key=self._proposal(pause, call),
        )

    async def ran_at_once(self, ticket: Ticket, tool: str, outcome: str, message: str) -> None:
        """A call decided at once ran in the same run: report it, and mark its decision as
        handled so the resume worker drops it."""
        await self.agent.report(_decision_of(ticket, self.agent.namespace), outcome, message)
        key = self._key(f"ran-{ticket.proposal_id}")
        await self.agent.state_store.put(key, b"1", self.agent.state_ttl)

    def refusal_of(self, tool: str, ticket: Ticket) -> str:
        """The model's reading of a request denied at once (no policy, invalid)."""
        decision = ticket.decision or {}
        return refusal(self.action_for(tool), str(decision.get("reason", "")),
                       str(decision.get("message", "")), "")  # fmt: skip

    # -- pausing ---------------------------------------------------------------------------------

    async def pause(
        self, pause: str, calls: Mapping[str, str], data: Any, resumer: "Resumer | None" = None
    ) -> None:
        """Keep a paused run: ``calls`` maps each waiting call id to its request's name. With a
        ``resumer``, resume at once when every decision came before the run was kept."""
        body = {"v": 1, "framework": self.framework, "calls": dict(calls), "data": data}
        raw = json.dumps(body, separators=(",", ":")).encode()
        await self.agent.state_store.put(self._key(f"pause-{pause}"), raw, self.agent.state_ttl)
        if resumer is not None:
            await self._try_resume(pause, resumer)

    # -- resuming --------------------------------------------------------------------------------

    async def work(self, resumer: "Resumer", *, forever: bool = True, block: float = 5.0) -> int:
        """The resume worker: read the decision stream and resume each paused run of this
        framework once all its calls are decided. Returns how many runs it resumed."""
        resumed = 0
        async for decision in self.agent.decisions(block=block, forever=forever):
            mine = decision.state if isinstance(decision.state, dict) else {}
            if mine.get("integration") != self.framework:
                continue  # filed by something else: not this worker's to handle
            pause, call = str(mine.get("pause", "")), str(mine.get("call", ""))
            if await self.agent.state_store.take(self._key(f"ran-{self._proposal(pause, call)}")):
                continue  # it ran at once, in its own run
            verdict = await self._verdict(decision, call)
            await self.agent.state_store.put(
                self._key(f"pause-{pause}-{_digest(call)}"), verdict.dumps(), self.agent.state_ttl
            )
            resumed += await self._try_resume(pause, resumer)
        return resumed

    async def _verdict(self, decision: Decision, call: str) -> Verdict:
        common: dict[str, Any] = {"call": call, "request": decision.name, "uid": decision.uid}
        if decision.approved:
            try:
                await self.agent.verify(decision)
            except SpecMismatch as e:
                await self.agent.report(decision, "Failed", str(e))
                return Verdict(**common, approved=False, refusal=f"Handoff refused it: {e}")
            spec = (await self.agent.read_request(decision.name)).get("spec") or {}
            parameters = spec.get("parameters") or {}
            if not isinstance(parameters, dict):
                parameters = {}
            action = str(spec.get("action", ""))
            return Verdict(**common, approved=True, action=action, parameters=parameters)
        comment = await self._comment(decision)
        text = refusal(decision.action, decision.reason, decision.message, comment)
        return Verdict(**common, approved=False, action=decision.action, refusal=text)

    async def _comment(self, decision: Decision) -> str:
        """What the reviewer who denied it wrote, if anyone did."""
        try:
            status = (await self.agent.read_request(decision.name)).get("status") or {}
        except HandoffError:
            return ""
        said = [
            str(review.get("comment", ""))
            for review in status.get("reviews") or []
            if isinstance(review, dict) and review.get("decision") == "Deny"
            and review.get("reviewer") in decision.by and review.get("comment")
        ]  # fmt: skip
        return "; ".join(said)

    async def _try_resume(self, pause: str, resumer: "Resumer") -> int:
        store = self.agent.state_store
        raw = await store.get(self._key(f"pause-{pause}"))
        if raw is None:
            return 0  # not kept yet (its run is still stopping), or already resumed
        body = json.loads(raw)
        verdicts: dict[str, Verdict] = {}
        for call in body.get("calls") or {}:
            found = await store.get(self._key(f"pause-{pause}-{_digest(call)}"))
            if found is None:
                return 0  # another call of this run still waits
            verdicts[call] = Verdict.loads(found)
        if await store.take(self._key(f"pause-{pause}")) is None:
            return 0  # another worker took it first
        paused = Paused(pause, body.get("data"), verdicts)
        token = RESUMING.set(paused)
        try:
            await resumer(paused)
        except BaseException:
            if not paused.started:  # nothing ran: the next delivery may try again
                await store.put(self._key(f"pause-{pause}"), raw, self.agent.state_ttl)
            raise
        finally:
            RESUMING.reset(token)
        for call in verdicts:
            await store.delete(self._key(f"pause-{pause}-{_digest(call)}"))
        return 1

    # -- running an approved call ------------------------------------------------------------------

    async def admit(self, call: str, tool: str, args: Any) -> tuple[Verdict | None, str]:
        """Whether the framework may run ``call`` now, resumed: (its approved verdict, "") when
        the run being resumed holds an approval for it with exactly these arguments, else
        (None, what the model reads). A refused approval reports Failed."""
        paused = RESUMING.get()
        verdict = paused.verdicts.get(call) if paused is not None else None
        if paused is None or verdict is None:
            return None, (
                f"Handoff refused {tool}: this call was not approved through Handoff, so it does"
                " not run"
            )
        if not verdict.approved:
            return None, verdict.refusal
        if call in paused.started:
            return None, f"Handoff refused {tool}: this approved call already ran once"
        paused.started.add(call)
        action = self.action_for(tool)
        if action != verdict.action or not _same(args, verdict.parameters):
            message = (
                f"the framework would run {action} with arguments {_json(args)[:400]}, but"
                f" {verdict.request} approved {verdict.action} with"
                f" {_json(verdict.parameters)[:400]}: refused"
            )
            await self.report(verdict, "Failed", message)
            return None, f"Handoff refused {tool}: {message}"
        return verdict, ""

    async def report(self, verdict: Verdict, outcome: str, message: str) -> None:
        decision = Decision(
            namespace=self.agent.namespace, name=verdict.request, uid=verdict.uid,
            action=verdict.action, target="", outcome="Approved", reason="", by=[], message="",
            state=None, spec_digest="", state_ref="",
        )  # fmt: skip
        await self.agent.report(decision, outcome, message)

    # -- keys --------------------------------------------------------------------------------------

    def _key(self, suffix: str) -> str:
        return state_key(self.agent.namespace, self.agent.name, suffix)

    def _proposal(self, pause: str, call: str) -> str:
        return _digest(f"{self.framework}/{pause}/{call}")


Resumer = Callable[[Paused], Awaitable[Any]]


def missing(extra: str, framework: str, error: ImportError) -> str:
    """Why an integration cannot be imported, and what to install."""
    return (
        f"handoff.integrations needs {framework} for this ({error.name or error} is not installed):"
        f" pip install 'kube-handoff[{extra}]'"
    )


def refusal(action: str, reason: str, message: str, comment: str) -> str:
    """A denial as the model reads it: the action, the reason, and the reviewer's words."""
    text = f"Handoff did not approve {action} ({reason or 'Denied'})"
    if message:
        text += f": {message}"
    if comment:
        text += f". The reviewer said: {comment}"
    return text + ". It was not run; do not call it again with the same arguments."


async def run_reported(
    oversight: Oversight, verdict: Verdict, run: Callable[[], Awaitable[T]]
) -> T:
    """Run an admitted call and report what happened: Executed, or Failed with the error."""
    try:
        result = await run()
    except Exception as e:
        await oversight.report(verdict, "Failed", f"{type(e).__name__}: {e}")
        raise
    await oversight.report(verdict, "Executed", _clip(str(result), 500))
    return result


def _decision_of(ticket: Ticket, namespace: str) -> Decision:
    decided = ticket.decision or {}
    return Decision(
        namespace=namespace, name=ticket.name, uid=ticket.uid, action="", target="",
        outcome=str(decided.get("outcome", "")), reason=str(decided.get("reason", "")), by=[],
        message="", state=None, spec_digest=ticket.spec_digest, state_ref="",
    )  # fmt: skip


def _same(args: Any, approved: dict[str, Any]) -> bool:
    """Equal as JSON: what runs is what was approved (1 and 1.0 differ, as they do in the spec)."""
    return _json(args) == _json(approved)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
