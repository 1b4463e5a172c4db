"""``handoff report shadow | fatigue | calibration``: the numbers that keep oversight honest."""

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from handoff import GROUP, REQUESTS, VERSION
from handoff.cli.tables import print_table
from handoff.review.untrusted import inline

# The Kubernetes client (aiohttp) and the statistics load in ``run``, not with this module: every
# ``handoff`` command line builds its parser from here, the operator's too.


def add_commands(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    report = commands.add_parser("report", help="shadow, fatigue and calibration reports")
    report.add_argument("kind", choices=["shadow", "fatigue", "calibration"])
    report.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    report.add_argument("--context")
    report.add_argument("-n", "--namespace", help="one namespace (default: all)")
    report.add_argument(
        "--fast",
        type=float,
        default=30.0,
        help="fatigue: decisions faster than this many seconds count as fast",
    )
    report.add_argument("--output", help="calibration: write the reliability plot here (SVG)")


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from handoff.domain.oversight import (  # noqa: PLC0415 - see the imports
        calibration,
        fatigue,
        reliability_svg,
        shadow,
    )

    out = out or sys.stdout
    requests = asyncio.run(_requests(args))
    if args.kind == "shadow":
        lines = shadow(requests)
        print_table(
            [["AUDIT POLICY", "EVALUATED", "STRICTER", "LAXER", "SAME"]]
            + [
                [s.policy, str(s.evaluated), str(s.stricter), str(s.laxer), str(s.same)]
                for s in lines
            ],
            out,
        )
        if not lines:
            print("No Audit-mode policy has evaluated a request yet.", file=out)
        return 0
    if args.kind == "fatigue":
        reviewers, policies = fatigue(requests, args.fast)
        print_table(
            [
                [
                    "REVIEWER",
                    "DECIDED",
                    "APPROVED",
                    "MEDIAN TIME",
                    f"UNDER {args.fast:.0f}S",
                    "PER HOUR",
                    "BY GRANT",
                    "",
                ]
            ]
            + [
                [
                    r.reviewer,
                    str(r.decided),
                    f"{r.approval_rate:.0%}",
                    f"{r.median_seconds:.0f}s",
                    f"{r.fast_share:.0%}",
                    f"{r.per_hour:.1f}",
                    str(r.by_grant),
                    "RUBBER-STAMP?" if r.flagged else "",
                ]
                for r in reviewers
            ],
            out,
        )
        print("", file=out)
        print_table(
            [["POLICY", "REQUESTS", "REACHED A HUMAN"]]
            + [[p.policy, str(p.requests), f"{p.reached_a_human:.0%}"] for p in policies],
            out,
        )
        return 0
    by_agent = calibration(requests)
    for agent, bins in by_agent.items():
        print(f"{inline(agent)}: stated confidence against what happened", file=out)
        print_table(
            [["CONFIDENCE", "REQUESTS", "STATED", "RIGHT"]]
            + [
                [f"{b.low:.1f}-{b.high:.1f}", str(b.count), f"{b.stated:.0%}", f"{b.observed:.0%}"]
                for b in bins
            ],
            out,
        )
        if args.output:
            target = Path(args.output)
            if len(by_agent) > 1:
                target = target.with_name(f"{target.stem}-{agent}{target.suffix or '.svg'}")
            target.write_text(reliability_svg(agent, bins))
            print(f"reliability plot: {target}", file=out)
    if not by_agent:
        print("No decided request carries a confidence yet.", file=out)
    return 0


async def _requests(args: argparse.Namespace) -> list[dict[str, Any]]:
    from handoff.adapters.kube import Credentials, KubeApi, resource_path  # noqa: PLC0415

    async with KubeApi(Credentials.load(args.kubeconfig, args.context)) as api:
        listing = await api.get(resource_path(GROUP, VERSION, REQUESTS, args.namespace))
    return list(listing.get("items") or [])
