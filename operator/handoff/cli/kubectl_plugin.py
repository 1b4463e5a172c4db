"""``kubectl handoff``: the reviewer's terminal. Everything runs as the current kubectl user.

kubectl handoff pending [-n NS | -A]
kubectl handoff show NAME
kubectl handoff approve NAME [--ack what,impact,rollback --comment TEXT] [--break-glass]
                             [--grant DURATION [--count N] [--target GLOB] [--condition CEL]]
kubectl handoff grants [-n NS | -A]
kubectl handoff deny NAME --comment TEXT [--break-glass]
kubectl handoff log [--agent A] [--since 1h]
"""

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import yaml

from handoff.adapters import kubeconfig
from handoff.adapters.kube import Credentials, KubeApi, KubeconfigError, KubeError, resource_path
from handoff.cli import failures
from handoff.cli.grant_log import grant_lines
from handoff.cli.grants import add_grant_options, grant_after_approval, grant_ready, grants
from handoff.cli.limits import allow_deep_json
from handoff.cli.show import log_lines, package_lines, summary_cell, terminal_columns
from handoff.cli.tables import print_table
from handoff.domain.classify import RequestFacts
from handoff.domain.classify import evaluate as evaluate_policy
from handoff.domain.durations import parse_duration
from handoff.domain.policy import compile_policy
from handoff.domain.stages import approve_name
from handoff.domain.timefmt import parse_time
from handoff.policytools.checks import outcome
from handoff.policytools.loading import evaluate as evaluate_sample
from handoff.policytools.loading import load_policies
from handoff.review.client import ReviewClient, ReviewError
from handoff.review.livediff import live_change
from handoff.review.package import Package, build, sentence, time_left
from handoff.review.untrusted import inline

# Agent-written text is never printed raw: see handoff.review.untrusted and handoff.cli.show.
safe = inline


def main(
    argv: Sequence[str] | None = None, out: TextIO = sys.stdout, ask: Callable[[str], str] = input
) -> int:
    parser = argparse.ArgumentParser(
        prog="kubectl handoff", description="Review AI agents' action requests."
    )
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    parser.add_argument("--context")
    parser.add_argument("-n", "--namespace")
    commands = parser.add_subparsers(dest="command", required=True)
    pending = commands.add_parser("pending", help="the queue, most urgent first")
    pending.add_argument("-A", "--all-namespaces", action="store_true")
    show = commands.add_parser("show", help="the handoff package of one request")
    show.add_argument("name")
    approve = commands.add_parser(
        "approve", help="approve, after acknowledging each checklist item"
    )
    approve.add_argument("name")
    approve.add_argument("--ack", help="checklist ids, comma-separated (for scripts)")
    approve.add_argument("--comment", default="")
    add_grant_options(approve)
    deny = commands.add_parser("deny", help="deny, saying why")
    deny.add_argument("name")
    deny.add_argument("--comment", default="")
    for sub in (approve, deny):
        sub.add_argument(
            "--break-glass", action="store_true",
            help="decide under the policy's active break-glass annotation (leaves a post-incident"
            " review behind)",
        )  # fmt: skip
    undo = commands.add_parser("rollback", help="undo an approved, reversible action")
    undo.add_argument("name")
    undo.add_argument("--comment", default="")
    explain = commands.add_parser(
        "explain", help="which policies govern a request, which rule matches, why"
    )
    explain.add_argument("-f", "--filename", required=True, help="an ActionRequest manifest")
    explain.add_argument(
        "--policies", help="local policy files or folders instead of the cluster's"
    )
    listed = commands.add_parser("grants", help="standing grants: who granted what, until when")
    listed.add_argument("-A", "--all-namespaces", action="store_true")
    log = commands.add_parser("log", help="the audit trail as sentences")
    log.add_argument("--agent")
    log.add_argument("--since", default="24h", help="how far back, like 30m or 2h (default 24h)")
    for sub in (pending, show, approve, deny, undo, explain, log, listed):
        sub.add_argument("-n", "--namespace", dest="sub_namespace")
    args = parser.parse_args(argv)
    allow_deep_json()
    args.namespace = (
        getattr(args, "sub_namespace", None) or args.namespace or _context_namespace(args)
    )
    try:
        if args.command == "explain":
            args.document = yaml.safe_load(Path(args.filename).read_text()) or {}
            if args.policies:  # offline: no cluster, no kubeconfig
                return asyncio.run(_explain(None, args, out))
        return asyncio.run(_run(args, out, ask))
    except KubeconfigError as e:
        print(f"error: no usable kubeconfig ({e}); set KUBECONFIG or --kubeconfig", file=sys.stderr)
        return 1
    except (ReviewError, ValueError, OSError) as e:
        print(f"error: {safe(failures.reworded(e))}", file=sys.stderr)
        return 1
    except KubeError as e:
        print(f"error: {safe(failures.kube(e))}", file=sys.stderr)
        return 1


async def _run(args: argparse.Namespace, out: TextIO, ask: Callable[[str], str]) -> int:
    api = KubeApi(Credentials.load(args.kubeconfig, args.context))
    try:
        client = ReviewClient(api)
        commands: dict[str, Callable[[], Awaitable[int]]] = {
            "pending": lambda: _pending(
                client, None if args.all_namespaces else [args.namespace], out
            ),
            "show": lambda: _show_one(client, args, out),
            "approve": lambda: _decide(client, args, "Approve", out, ask),
            "deny": lambda: _decide(client, args, "Deny", out, ask),
            "rollback": lambda: _roll_back(client, args, out),
            "explain": lambda: _explain(client, args, out),
            "log": lambda: _log(client, args, out),
            "grants": lambda: grants(client, None if args.all_namespaces else args.namespace, out),
        }
        return await commands[args.command]()
    finally:
        await api.close()


async def _pending(client: ReviewClient, namespaces: list[str] | None, out: TextIO) -> int:
    now = datetime.now(UTC)
    waiting = [p for p in (build(b) for b in await client.requests(namespaces)) if p.waiting]
    waiting = await for_open_stage(client, waiting)
    waiting.sort(key=lambda p: p.deadline or now)
    if not waiting:
        print(
            "Nothing waits for a review."
            if namespaces is None
            else f"Nothing waits for a review in {namespaces[0]}.",
            file=out,
        )
        return 0
    rows: list[tuple[str, ...]] = [
        ("NAMESPACE", "NAME", "TIER", "AGENT", "APPROVALS", "TIME LEFT", "SUMMARY")
    ]
    for p in waiting:
        left = time_left(p.seconds_left(now))
        approvals = f"{p.approvals()}/{p.required_approvals}"
        if p.stage:
            approvals += f" {p.stage}"
        tier = f"{p.tier} {p.oversight}"
        rows.append((p.namespace, p.name, tier, safe(p.agent), approvals, left, p.summary))
    if namespaces is not None:
        rows = [row[1:] for row in rows]
    # Every column but the summary, two spaces apart; the summary gets what the terminal has left.
    used = sum(max(len(row[i]) for row in rows) + 2 for i in range(len(rows[0]) - 1))
    columns = terminal_columns()
    rows = rows[:1] + [(*row[:-1], summary_cell(row[-1], used, columns)) for row in rows[1:]]
    print_table(rows, out)
    return 0


async def for_open_stage(client: ReviewClient, waiting: list[Package]) -> list[Package]:
    """The requests without stages, and the staged ones whose open stage the caller may
    review: the verb approve on POLICY:STAGE, or break-glass on POLICY (a break-glass review
    counts in the stage it names), asked once per policy and stage."""
    rights: dict[tuple[str, str, str], bool] = {}
    kept = []
    for p in waiting:
        key = (p.namespace, p.policy, p.stage)
        if p.stage and key not in rights:
            name = approve_name(p.policy, p.stage)
            rights[key] = await client.can(
                "approve", "agentactionpolicies", p.namespace, name
            ) or await client.can("break-glass", "agentactionpolicies", p.namespace, p.policy)
        if not p.stage or rights[key]:
            kept.append(p)
    return kept


async def _show_one(client: ReviewClient, args: argparse.Namespace, out: TextIO) -> int:
    body = await client.get(args.namespace, args.name)
    _show(build(body), out, await live_change(client.api, body))
    return 0


def _show(p: Package, out: TextIO, change: Sequence[str] = ()) -> None:
    lines = package_lines(p, datetime.now(UTC), terminal_columns(), change)
    print("\n".join(lines), file=out)


async def _decide(
    client: ReviewClient,
    args: argparse.Namespace,
    decision: str,
    out: TextIO,
    ask: Callable[[str], str],
) -> int:
    body = await client.get(args.namespace, args.name)
    package = build(body)
    if package.decided:
        d = package.decision or {}
        raise ReviewError(
            f"{package.name} was already decided: {d.get('outcome')} ({d.get('reason')})"
        )
    user, _ = await client.whoami()
    grant = grant_ready(args, body, user) if decision == "Approve" else None
    _show(package, out, await live_change(client.api, body))
    print("", file=out)
    interactive = sys.stdin.isatty() or ask is not input
    acknowledged: list[str] = []
    comment = args.comment
    if decision == "Approve":
        if args.ack is not None:
            acknowledged = [a.strip() for a in args.ack.split(",") if a.strip()]
            missing = [i for i, _ in package.checklist if i not in acknowledged]
            if missing:
                raise ReviewError(
                    f"every checklist item must be acknowledged; missing: {', '.join(missing)}"
                )
        elif not interactive:
            raise ReviewError("no terminal to ask on: pass --ack with every checklist item id")
        else:
            for item_id, text in package.checklist:
                answer = ask(f"[{safe(item_id)}] {safe(text)}? (yes/no) ").strip().lower()
                if answer not in ("y", "yes"):
                    print("Not approved: every item must be acknowledged.", file=out)
                    return 1
                acknowledged.append(item_id)
            comment = comment or ask("Comment (optional): ").strip()
    elif not comment.strip():
        if not interactive:
            raise ReviewError("a Deny needs --comment saying why")
        comment = ask("Why deny it? ").strip()
        if not comment:
            raise ReviewError("a Deny needs a reason")
    await client.review(
        args.namespace, args.name, user, decision, acknowledged=acknowledged, comment=comment,
        break_glass=args.break_glass, stage=package.stage or None,
    )  # fmt: skip
    verb = "approval" if decision == "Approve" else "denial"
    glass = " under break-glass" if args.break_glass else ""
    if args.break_glass and decision == "Approve":
        glass += " (a post-incident review will follow)"
    print(f"Recorded {user}'s {verb} of {args.name}{glass}.", file=out)
    return 0 if grant is None else await grant_after_approval(client, grant, out)


async def _roll_back(client: ReviewClient, args: argparse.Namespace, out: TextIO) -> int:
    """Ask Handoff to undo an approved action: its rollback plan is filed as a request of its own,
    through the same policy. The cluster checks the verb ``rollback`` and refuses a second one."""
    user, _ = await client.whoami()
    await client.review(
        args.namespace, args.name, user, "Rollback", comment=args.comment, after_decision=True
    )
    filed = "Handoff files its rollback plan as a new request"
    print(f"Recorded {user}'s rollback of {args.name}; {filed}.", file=out)
    return 0


async def _explain(client: ReviewClient | None, args: argparse.Namespace, out: TextIO) -> int:
    document = args.document
    spec = document.get("spec") or {}
    namespace = (document.get("metadata") or {}).get("namespace") or args.namespace
    if args.policies:
        files = [p for p in load_policies([args.policies]) if p.namespace == namespace]
        policies = [p.compiled() for p in files]
        where = args.policies
    else:
        assert client is not None
        listing = await client.api.get(
            resource_path("handoff.dev", "v1alpha1", "agentactionpolicies", namespace)
        )
        items = listing.get("items") or []
        policies = [compile_policy(namespace, i["metadata"]["name"], i["spec"]) for i in items]
        where = f"the cluster, namespace {namespace}"
    facts = RequestFacts.from_spec(namespace, spec, (document.get("metadata") or {}).get("labels"))
    target = safe(facts.target) or "(no target)"
    what = f"{safe(facts.agent)} proposes {safe(facts.action)} on {target}"
    print(f"{what}; policies from {where}:", file=out)
    governing = [
        p for p in sorted(policies, key=lambda p: p.name) if p.governs(namespace, facts.agent)
    ]
    for policy in sorted(policies, key=lambda p: p.name):
        if policy not in governing:
            print(f"  {policy.name}: does not govern {safe(facts.agent)}", file=out)
            continue
        verdict = evaluate_policy(policy, facts)
        mode = " (Audit: recorded only, decides nothing)" if policy.mode == "Audit" else ""
        said = f"tier {verdict.tier}, {verdict.oversight}: {safe(verdict.message)}"
        print(f"  {policy.name}{mode}: {said}", file=out)
    step = evaluate_sample(policies, {**spec, "labels": facts.labels}, namespace)
    result = outcome(step, policies)
    if result.tier is None:
        nobody = f"no Enforce policy governs {safe(facts.agent)}"
        print(f"Result: Denied ({result.reason}): {nobody}", file=out)
    else:
        lane = (
            f", window {result.window}, {result.approvals} approval(s)"
            if result.window != "-"
            else ""
        )
        source = f"{result.policy}/{result.rule or 'default'}"
        if result.grantable:
            lane += f", grantable for at most {result.grantable}"
        print(f"Result: tier {result.tier}, {result.oversight}, from {source}"
              f" (the highest tier wins){lane}; {result.reason}", file=out)  # fmt: skip
    return 0


async def _log(client: ReviewClient, args: argparse.Namespace, out: TextIO) -> int:
    since = datetime.now(UTC) - parse_duration(args.since)
    requests = [
        b
        for b in await client.requests([args.namespace])
        if not args.agent or b["spec"].get("agent") == args.agent
    ]
    events: dict[str, list[dict[str, Any]]] = {}
    on_grants: list[dict[str, Any]] = []
    try:
        listing = await client.api.get(resource_path("", "v1", "events", args.namespace))
        for event in listing.get("items") or []:
            kind = event.get("involvedObject", {}).get("kind")
            if kind == "ActionRequest":
                events.setdefault(event["involvedObject"]["name"], []).append(event)
            elif kind == "ActionGrant":
                on_grants.append(event)
    except KubeError:
        pass  # no right to read Events: the statuses still tell the story, without all the times
    lines = await grant_lines(client.api, args.namespace, on_grants, since, args.agent)
    for body in requests:
        p = build(body)
        if p.created is None or p.created < since:
            continue
        where = f"tier {p.tier}, {p.oversight}, policy {p.policy}/{p.rule or 'default'}"
        lines.append((p.created, f"{sentence(p)} ({where})"))
        for review in p.reviews:
            said = f': "{review.comment}"' if review.comment else ""
            text = f"  {review.reviewer} {review.verb} {p.name}{said}"
            lines.append((p.created + timedelta(microseconds=1), text))
        for event in events.get(p.name, []):
            at = parse_time(
                event.get("lastTimestamp")
                or event.get("eventTime")
                or body["metadata"]["creationTimestamp"]
            )
            lines.append((at, f"  {p.name}: {event.get('reason')}: {event.get('message', '')}"))
    lines.sort(key=lambda line: line[0])
    columns = terminal_columns()
    for at, text in lines:
        print("\n".join(log_lines(at, text, columns)), file=out)
    if not lines:
        print(f"Nothing happened in {args.namespace} in the last {args.since}.", file=out)
    return 0


def _context_namespace(args: argparse.Namespace) -> str:
    return kubeconfig.namespace(args.kubeconfig, args.context) or "default"


if __name__ == "__main__":
    sys.exit(main())
