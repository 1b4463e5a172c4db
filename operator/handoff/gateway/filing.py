"""A tool call as an ActionRequest: the key that makes a retry find its request, the request's
body, and the check that a request found under that name is really this call. Pure.

Everything the model sends is hostile: the action and target come from the MCPServer's mapping
of the tool called, the parameters are the arguments exactly as validated, and the context
fields are bounded strings that only inform the reviewer.
"""

import dataclasses
import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema

from handoff.domain.executors import MCP
from handoff.domain.filing import requested_by
from handoff.domain.limits import MAX_SIZE, measure
from handoff.domain.model import service_account_user
from handoff.gateway.servers import Server, ToolMapping, Values
from handoff.gateway.stored import NotStorable, as_stored
from handoff.review.untrusted import inline

REASONING = "handoff_reasoning"
BLAST_RADIUS = "handoff_blast_radius"
CONTEXT_FIELDS = {
    REASONING: ("reasoning", 4096, "Why you chose this call, for the person who may review it."),
    BLAST_RADIUS: ("blastRadius", 1024, "What happens if this call is wrong, for the reviewer."),
}
GROUP_VERSION = "handoff.dev/v1alpha1"
HANDOFF_LABELS = "handoff.dev/"  # labels only Handoff sets (admission; see foreign_labels)
MAX_ARGUMENTS = 64  # top-level arguments: the CRD's maxProperties of spec.parameters


class BadCall(ValueError):
    """Arguments the gateway will not file; the message is for the model to correct them."""


@dataclass(frozen=True)
class Call:
    """One validated call: the arguments the upstream gets, and the reviewer's context."""

    server: Server
    mapping: ToolMapping
    arguments: Mapping[str, Any]
    context: Mapping[str, str]  # spec field -> text
    title: str
    values: Values = dataclasses.field(default_factory=dict)  # the costly mappings, sandboxed

    @property
    def key(self) -> str:
        return call_key(self.server.name, self.mapping.name, self.arguments)


def split_context(arguments: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The tool's own arguments, and the reviewer's context the gateway added to its schema."""
    own = {k: v for k, v in arguments.items() if k not in CONTEXT_FIELDS}
    context: dict[str, str] = {}
    for name, (field, limit, _) in CONTEXT_FIELDS.items():
        if name not in arguments or arguments[name] is None:
            continue
        value = arguments[name]
        if not isinstance(value, str) or len(value) > limit:
            raise BadCall(f"{name} is a string of at most {limit} characters")
        context[field] = value
    return own, context


def checked_arguments(
    arguments: object, schema: Mapping[str, Any] | None, tool: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """The tool's own arguments, checked against its input schema and the request's bounds,
    and the reviewer's context; or BadCall saying what is wrong."""
    if not isinstance(arguments, Mapping):
        raise BadCall("the arguments must be an object")
    own, context = split_context(arguments)
    if len(own) > MAX_ARGUMENTS or measure(own) > MAX_SIZE:
        raise BadCall(
            f"the arguments are too large for a request (at most {MAX_ARGUMENTS} top-level"
            f" arguments, 32 levels, 256 items in any list or map and {MAX_SIZE} characters)"
        )
    try:  # what the API server will keep is what is checked, mapped, keyed and run
        own = as_stored(own)
    except NotStorable as e:
        raise BadCall(str(e)) from None
    validator = _validator(json.dumps(schema or {"type": "object"}, sort_keys=True))
    if validator is None:
        raise BadCall(f"the upstream's input schema of {tool} is invalid")
    error = jsonschema.exceptions.best_match(validator.iter_errors(own))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(the arguments)"
        raise BadCall(f"invalid arguments at {where}: {error.message}")
    return own, context


@functools.lru_cache(maxsize=256)
def _validator(schema: str) -> Any:
    """The checked validator of a tool's input schema (as JSON), or None if the schema is not
    valid: checking a schema costs more than validating arguments against it."""
    loaded = json.loads(schema)
    cls = jsonschema.validators.validator_for(loaded)
    try:
        cls.check_schema(loaded)
    except jsonschema.SchemaError:
        return None
    return cls(loaded)


def call_key(server: str, tool: str, arguments: Mapping[str, Any]) -> str:
    """A digest of the call, so an identical retry from the same agent finds the same request."""
    canonical = json.dumps(
        [server, tool, arguments], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def request_body(call: Call, agent: str, name: str) -> dict[str, Any]:
    server, mapping, args = call.server, call.mapping, call.arguments
    spec: dict[str, Any] = {
        "agent": agent,
        "action": mapping.action,
        "target": mapping.target_of(server.name, args, call.values),
        "parameters": dict(args),
        "summary": summary(call),
        "execution": MCP,
        **call.context,
    }
    plan = rollback_plan(server, mapping, args, call.values)
    if plan is not None:
        spec["rollback"] = plan
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "ActionRequest",
        "metadata": {
            "name": name,
            "namespace": server.namespace,
            "labels": {"handoff.dev/agent": agent},
            "annotations": {"handoff.dev/proposal-id": name},
        },
        "spec": spec,
    }


def rollback_plan(
    server: Server, mapping: ToolMapping, args: Mapping[str, Any], values: Values | None = None
) -> dict[str, Any] | None:
    """The request's rollback plan: the declared inverse of the tool, or None. A request's
    ``spec.rollback`` is anything else only when it was filed around the gateway."""
    inverse = mapping.inverse_arguments(args, values)
    if mapping.inverse is None or inverse is None:
        return None
    return {
        "description": mapping.inverse.description[:1024],
        "action": server.mapping(mapping.inverse.tool).action,
        "parameters": inverse,
    }


def is_this_call(found: Mapping[str, Any], expected: Mapping[str, Any]) -> bool:
    """Whether a request found under the call's name is this call filed by this agent (and not
    a request someone else filed there first)."""
    spec, want = found.get("spec") or {}, expected["spec"]
    namespace = str((found.get("metadata") or {}).get("namespace"))
    return (
        all(
            spec.get(k) == want.get(k)
            for k in ("agent", "action", "target", "parameters", "rollback")
        )
        and spec.get("execution") == MCP
        and requested_by(found) == service_account_user(namespace, str(want["agent"]))
        and not foreign_labels(found)
    )


def runs_as_validated(
    body: Mapping[str, Any], found: tuple[Server, str], call: Call, sent: Mapping[str, Any]
) -> bool:
    """Whether the stored request ``body`` is the document ``sent`` for ``call``, and the
    executor's lookup ``found`` is the very server (the same compiled MCPServer, not a newer
    one) and tool the call was validated and mapped with. Then the executor's full check
    (``Executor.refusal``) would only compute again what ``call`` holds, and the tier-1 fast
    path (calls.py) skips it; otherwise the full check decides, as for every other path."""
    return found[0] is call.server and found[1] == call.mapping.name and stored_as_sent(body, sent)


def stored_as_sent(stored: Mapping[str, Any], sent: Mapping[str, Any]) -> bool:
    """Whether the API server keeps the request exactly as the gateway sent it: the same
    namespace, the same labels (the gateway's only; none of its filer's choice) and the same
    spec, field by field and JSON type by JSON type (the gateway sends only ``as_stored``
    values). Then the request is what the MCPServer's mapping made of the call, as the gateway
    computed it just before filing, and what the policies judge; the tier-1 fast path runs it
    without the executor's full check (``Executor.refusal``: the same lookup, schema and
    mappings again). Anything else (a field a mutating admission added, a number written back
    otherwise, a request found under the call's name that an earlier or squatting filing left)
    takes the full check."""
    got, meta = stored.get("metadata") or {}, sent["metadata"]
    return (
        got.get("namespace") == meta["namespace"]
        and not foreign_labels(stored)
        and _same(got.get("labels") or {}, meta.get("labels") or {})
        and _same(stored.get("spec"), sent["spec"])
    )


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON: ``1`` is not ``1.0`` nor ``true`` here, as it is to Python's ``==``."""
    try:
        return _canonical(a) == _canonical(b)
    except (TypeError, ValueError):  # not JSON at all: never the same
        return False


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def foreign_labels(body: Mapping[str, Any]) -> list[str]:
    """The labels of a request that neither the gateway nor the operator set: the filer's own
    choice. A policy's `when` may read labels, so an MCP request carrying any was not judged on
    what the MCPServer's mapping makes of the call alone (the gateway files none; admission lets
    an agent set no other handoff.dev/ label than handoff.dev/agent, equal to spec.agent)."""
    labels = (body.get("metadata") or {}).get("labels") or {}
    return sorted(str(k) for k in labels if not str(k).startswith(HANDOFF_LABELS))


def summary(call: Call) -> str:
    shown = json.dumps(dict(call.arguments), sort_keys=True, ensure_ascii=False)
    if len(shown) > 600:
        shown = shown[:600] + "…"
    # One line, as the CRD holds spec.summary: what json.dumps leaves raw (DEL, C1, bidi) and any
    # control in the upstream's title are shown as escapes, never a refused filing.
    return inline(f"{call.title} ({call.server.name}/{call.mapping.name}) with {shown}")[:1024]
