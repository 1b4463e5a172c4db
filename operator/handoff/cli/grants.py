"""``kubectl handoff approve NAME --grant DURATION [--count N]`` and ``kubectl handoff grants``:
standing grants from the reviewer's terminal, made and listed with the reviewer's own identity."""

import argparse
from datetime import UTC, datetime
from typing import Any, TextIO

from handoff.cli.tables import print_table
from handoff.review.client import ReviewClient, ReviewError
from handoff.review.grants import HEADER, create_grant, grant_document, grant_rows, list_grants


def add_grant_options(approve: argparse.ArgumentParser) -> None:
    approve.add_argument(
        "--grant", metavar="DURATION",
        help="also approve in advance the next requests exactly like this one, for this long"
        " (such as 1h; at most the rule's grantable.maxDuration)",
    )  # fmt: skip
    approve.add_argument(
        "--count", type=int, default=1,
        help="with --grant: how many requests it may approve (default 1; at most the rule's"
        " grantable.maxCount)",
    )  # fmt: skip
    approve.add_argument(
        "--target", dest="grant_target", metavar="PATTERN",
        help="with --grant: a glob on the target (default: this request's target exactly)",
    )  # fmt: skip
    approve.add_argument(
        "--condition", dest="grant_condition", metavar="CEL",
        help="with --grant: a CEL condition over action, target, parameters, agent, labels",
    )  # fmt: skip


def grant_ready(args: argparse.Namespace, body: dict[str, Any], user: str) -> dict[str, Any] | None:
    """The grant to create after the approval (checked before the approval is written), or None
    without --grant."""
    if args.grant is None:
        if args.count != 1 or args.grant_target or args.grant_condition:
            raise ReviewError("--count, --target and --condition go with --grant DURATION")
        return None
    if args.break_glass:
        raise ReviewError("a grant cannot be made under break-glass; approve without --grant")
    return grant_document(
        body, user, args.grant, args.count, datetime.now(UTC),
        target=args.grant_target, condition=args.grant_condition,
    )  # fmt: skip


async def grant_after_approval(client: ReviewClient, document: dict[str, Any], out: TextIO) -> int:
    spec = document["spec"]
    try:
        name = await create_grant(client.api, document)
    except ReviewError as e:
        print(f"The approval is recorded, but {e}", file=out)
        return 1
    print(
        f"Granted {name}: up to {spec['maxUses']} more {spec['action']} request(s) of"
        f" {spec['agent']} on {spec['target']} until {spec['expiresAt']};"
        f" revoke with: kubectl delete actiongrant {name} -n {document['metadata']['namespace']}",
        file=out,
    )
    return 0


async def grants(client: ReviewClient, namespace: str | None, out: TextIO) -> int:
    rows = grant_rows(await list_grants(client.api, namespace), datetime.now(UTC))
    if not rows:
        where = "" if namespace is None else f" in {namespace}"
        print(f"No grants{where}.", file=out)
        return 0
    table = [HEADER, *rows]
    if namespace is not None:
        table = [row[1:] for row in table]
    print_table(table, out)
    return 0
