"""``handoff``: run the operator, and manage the local environment."""

import argparse
import logging
import os
import socket
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from handoff.cli.failures import sentence
from handoff.cli.gateway import add_gateway_command, run_gateway
from handoff.cli.limits import allow_deep_json
from handoff.cli.policy import add_commands as add_policy_commands
from handoff.cli.policy import run as run_policy
from handoff.cli.report import add_commands as add_report_commands
from handoff.cli.report import run as run_report

if TYPE_CHECKING:
    from handoff.console.pages.slack import SlackBridge


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="handoff", description="Human oversight for AI agents, as a Kubernetes operator."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    operator = commands.add_parser("operator", help="run the operator")
    operator.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, in-cluster)")
    operator.add_argument("--context", help="kubeconfig context")
    operator.add_argument(
        "--namespace", action="append", dest="namespaces", metavar="NS",
        help="watch only this namespace (repeat for several); default: all",
    )  # fmt: skip
    operator.add_argument(
        "--namespace-selector", metavar="SELECTOR",
        help="handle only namespaces whose labels match (e.g. handoff.dev/shard=a): one shard",
    )  # fmt: skip
    operator.add_argument(
        "--leader-election", action="store_true",
        help="run as one of several replicas: only the holder of a coordination.k8s.io Lease acts",
    )  # fmt: skip
    operator.add_argument(
        "--leader-election-namespace", metavar="NS",
        help="namespace of the Lease (default: $POD_NAMESPACE, else handoff-system)",
    )  # fmt: skip
    operator.add_argument(
        "--leader-election-name", default="handoff-operator",
        help="name of the Lease; give each shard its own",
    )  # fmt: skip
    operator.add_argument(
        "--leader-election-identity", default=socket.gethostname(),
        help="this replica's name in the Lease (default: the host name, the pod's name)",
    )  # fmt: skip
    operator.add_argument(
        "--lease-duration", type=float, default=15.0, metavar="SECONDS",
        help="how long a silent leader keeps the Lease; a standby takes over after it",
    )  # fmt: skip
    operator.add_argument(
        "--metrics-address", default="127.0.0.1:9090", help="host:port of /metrics"
    )
    operator.add_argument(
        "--liveness",
        help="health endpoint, e.g. http://0.0.0.0:8081/healthz (also serves /readyz); fails when"
        " the watches stop or a leader cannot renew its Lease",
    )
    operator.add_argument(
        "--redis-url", default=os.environ.get("HANDOFF_REDIS_URL"),
        help="Redis admin URL (default: $HANDOFF_REDIS_URL); enables agents' Redis users",
    )  # fmt: skip
    operator.add_argument(
        "--console-url", default=os.environ.get("HANDOFF_CONSOLE_URL"),
        help="the web console's address, for links in notifications",
    )  # fmt: skip
    operator.add_argument(
        "--notify-attempts", type=int, default=6,
        help="tries per notification before it counts as failed (backoff from 0.5s, doubling)",
    )  # fmt: skip
    operator.add_argument(
        "--retention", default="720h",
        help="delete decided requests this long after their last transition, once their audit"
        " record is out (Redis stream and JSON log lines); 0s keeps them forever",
    )  # fmt: skip
    operator.add_argument("--verbose", "-v", action="store_true")

    console = commands.add_parser("console", help="serve the reviewers' web console")
    console.add_argument(
        "--kubeconfig", help="the console's own identity (default: $KUBECONFIG, in-cluster)"
    )
    console.add_argument("--context")
    console.add_argument("--listen", default="127.0.0.1:8080", help="host:port to serve on")
    console.add_argument(
        "--namespace", action="append", dest="namespaces", metavar="NS", required=True,
        help="a namespace whose requests the console shows (repeat for several)",
    )  # fmt: skip
    console.add_argument(
        "--redis-url", default=os.environ.get("HANDOFF_CONSOLE_REDIS_URL"),
        help="Redis URL with read access to the audit stream (for the live feed)",
    )  # fmt: skip
    console.add_argument(
        "--secure-cookies", action="store_true", help="mark cookies Secure (behind HTTPS)"
    )
    console.add_argument(
        "--allow-service-accounts", action="store_true",
        help="let ServiceAccount tokens sign in (refused by default: the console is for people)",
    )  # fmt: skip
    console.add_argument(
        "--sessions-per-user", type=int, default=5,
        help="sessions one person may hold; signing in again ends the oldest (default 5)",
    )  # fmt: skip
    console.add_argument(
        "--sign-in-attempts", type=int, default=10,
        help="sign-in attempts allowed per client address per minute; then 429 (default 10)",
    )  # fmt: skip
    console.add_argument(
        "--dev-logins", metavar="FOLDER",
        help="redeem the one-time sign-in links of 'handoff dev login' kept in FOLDER (the local"
        " environment's folder; 'handoff dev up' passes it, never use it on a cluster)",
    )  # fmt: skip

    _add_slack_flags(console)
    add_policy_commands(commands)
    add_report_commands(commands)
    add_gateway_command(commands)

    _add_dev_commands(commands)

    args = parser.parse_args(argv)
    allow_deep_json()
    try:
        return _command(args)
    except KeyboardInterrupt:
        print(f"handoff {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader left (| head): nothing to say, and no flush error at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as e:
        said = sentence(e, getattr(args, "kubeconfig", None), getattr(args, "context", None))
        if said is None:
            raise  # not an expected failure: a bug, whose traceback helps
        print(f"handoff {args.command}: {said}", file=sys.stderr)
        return 1


def _add_slack_flags(console: argparse.ArgumentParser) -> None:
    console.add_argument(
        "--slack", action="store_true",
        help="serve Slack's interactivity callbacks at /slack/interactivity; the signing secret"
        " and bot token come from $HANDOFF_SLACK_SIGNING_SECRET and $HANDOFF_SLACK_BOT_TOKEN"
        " (from Kubernetes Secrets), never from flags",
    )  # fmt: skip
    console.add_argument(
        "--slack-users", metavar="NAMESPACE/NAME",
        default=f"{os.environ.get('POD_NAMESPACE') or 'handoff-system'}/handoff-slack-users",
        help="the ConfigMap mapping Slack user IDs to Kubernetes users and groups",
    )  # fmt: skip
    console.add_argument("--slack-team", help="accept callbacks from this Slack workspace only")
    console.add_argument("--slack-api-url", default="https://slack.com/api", help=argparse.SUPPRESS)


def _slack_bridge(args: argparse.Namespace) -> "SlackBridge | None":
    """The console's Slack settings, or None; a missing secret is one sentence, not a trace."""
    if not args.slack:
        return None
    from handoff.adapters.slack import SlackApi  # noqa: PLC0415 - loads only with --slack
    from handoff.console.pages.slack import SlackBridge  # noqa: PLC0415

    secret = os.environ.get("HANDOFF_SLACK_SIGNING_SECRET", "")
    token = os.environ.get("HANDOFF_SLACK_BOT_TOKEN", "")
    if not secret or not token:
        raise SystemExit(
            "handoff console: --slack needs HANDOFF_SLACK_SIGNING_SECRET and"
            " HANDOFF_SLACK_BOT_TOKEN in the environment (from the Slack app's Secret)"
        )
    namespace, _, name = args.slack_users.rpartition("/")
    return SlackBridge(
        signing_secret=secret, api=SlackApi(token, args.slack_api_url),
        users_namespace=namespace or "handoff-system", users_configmap=name, team=args.slack_team,
    )  # fmt: skip


def _add_dev_commands(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    dev = commands.add_parser("dev", help="the local environment on loopback")
    dev_commands = dev.add_subparsers(dest="dev_command", required=True)
    for name, text in (("up", "start it"), ("down", "stop it"), ("status", "what runs")):
        sub = dev_commands.add_parser(name, help=text)
        sub.add_argument("--quiet", "-q", action="store_true")
        if name == "up":
            sub.add_argument(
                "--without-postgres", action="store_true",
                help="start no PostgreSQL (no DATABASE_URL, no analytics examples); without this"
                " flag a missing PostgreSQL stops 'up' with a sentence saying how to get it",
            )  # fmt: skip
    login = dev_commands.add_parser(
        "login", help="print a one-time link that signs NAME in to the console (5 minutes, once)"
    )
    login.add_argument("user", metavar="NAME", help="alice, bob, carol, mallory or admin")
    login.add_argument("--quiet", "-q", action="store_true", help="print the link alone")


def _command(args: argparse.Namespace) -> int:
    simple = {"operator": _operator, "console": _console, "report": run_report,
              "gateway": run_gateway}  # fmt: skip
    if args.command in simple:
        return simple[args.command](args)
    if args.command == "policy":
        try:
            return run_policy(args)
        except (FileNotFoundError, ValueError) as e:
            print(f"handoff policy {args.policy_command}: {e}", file=sys.stderr)
            return 2
    return _dev(args)


def _console(args: argparse.Namespace) -> int:
    from aiohttp import web  # noqa: PLC0415 - the web stack loads only for this command

    from handoff.adapters.kube import Credentials  # noqa: PLC0415
    from handoff.console.app import Config, make_app  # noqa: PLC0415
    from handoff.console.sessions import Sessions  # noqa: PLC0415
    from handoff.console.signin import SignInGate  # noqa: PLC0415

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    config = Config(
        credentials=Credentials.load(args.kubeconfig, args.context),
        namespaces=args.namespaces,
        redis_url=args.redis_url,
        secure_cookies=args.secure_cookies,
        sessions=Sessions(per_user=args.sessions_per_user),
        sign_in=SignInGate(
            allow_service_accounts=args.allow_service_accounts, attempts=args.sign_in_attempts
        ),
        dev_logins=Path(args.dev_logins).resolve() if args.dev_logins else None,
    )
    host, _, port = args.listen.rpartition(":")
    # Live feeds are long-lived: give them 2 s to end on shutdown, not aiohttp's 60.
    web.run_app(
        make_app(config, _slack_bridge(args)),
        host=host or "127.0.0.1",
        port=int(port),
        print=None,
        shutdown_timeout=2,
    )
    return 0


# kopf accepts the objects of these client libraries where they are installed, and imports them
# at its own import to tell: the official client alone put 17 MB in the operator's resident set
# (measured: 74 MB against 57 MB after the operator's imports), for objects the operator never
# hands to kopf. Python's own switch: a module set to None in sys.modules fails to import.
KOPF_OPTIONAL_CLIENTS = ("kubernetes", "kubernetes_asyncio", "pykube")


def _operator(args: argparse.Namespace) -> int:
    for name in KOPF_OPTIONAL_CLIENTS:  # before kopf loads; in the operator's process only
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    from handoff.adapters.kube import Credentials  # noqa: PLC0415
    from handoff.controller.runner import Election, run  # noqa: PLC0415 - kopf loads only here

    Credentials.load(args.kubeconfig, args.context)  # none usable: one sentence now, not retries
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    audit = logging.getLogger("handoff.audit")  # bare JSON lines on stdout, for log shipping
    audit_handler = logging.StreamHandler(sys.stdout)
    audit_handler.setFormatter(logging.Formatter("%(message)s"))
    audit.addHandler(audit_handler)
    audit.propagate = False
    if not args.verbose:
        logging.getLogger("kopf").setLevel(logging.WARNING)
        logging.getLogger("aiohttp").setLevel(logging.WARNING)
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig  # kopf's own login reads it too
    election = None
    if args.leader_election:
        election = Election(
            namespace=args.leader_election_namespace, name=args.leader_election_name,
            identity=args.leader_election_identity, duration=args.lease_duration,
            renew=max(args.lease_duration / 3, 0.5),
        )  # fmt: skip
    return run(
        kubeconfig=args.kubeconfig,
        context=args.context,
        namespaces=args.namespaces,
        namespace_selector=args.namespace_selector,
        election=election,
        metrics_address=args.metrics_address,
        liveness_endpoint=args.liveness,
        redis_url=args.redis_url,
        console_url=args.console_url,
        notify_attempts=args.notify_attempts,
        retention=_retention(args.retention),
    )


def _retention(text: str) -> timedelta | None:
    from handoff.domain.durations import parse_duration  # noqa: PLC0415

    value = parse_duration(text)
    return value if value.total_seconds() > 0 else None


def _dev(args: argparse.Namespace) -> int:
    from handoff.console.devlogin import LIFETIME  # noqa: PLC0415 - as above
    from handoff.devenv.environment import DevEnvironment  # noqa: PLC0415

    environment = DevEnvironment.default()

    def say(text: str) -> None:
        if not args.quiet:
            print(text, flush=True)

    try:
        if args.dev_command == "up":
            environment.up(say, postgres=not args.without_postgres)
        elif args.dev_command == "login":
            print(environment.login_link(args.user, time.time()), flush=True)
            if not args.quiet:
                print(
                    f"Open it in a browser within {LIFETIME / 60:.0f} minutes to sign in to the"
                    f" console as {args.user}; it works once.",
                    file=sys.stderr,
                )
        elif args.dev_command == "down":
            environment.down(say)
        else:
            for name, pid in environment.status().items():
                print(f"{name:15} {'running, pid ' + str(pid) if pid else 'stopped'}")
            if environment.env_file.exists():
                print(environment.env_file.read_text(), end="")
    except (FileNotFoundError, TimeoutError, RuntimeError) as e:
        print(f"handoff dev {args.dev_command}: {e}", file=sys.stderr)
        if args.dev_command == "up":
            print("handoff dev up: not ready; nothing it started is left running", file=sys.stderr)
        return 1
    return 0
