"""The red team of issue 15 against `handoff dev up`, kept as tests on the real parts: a hostile
agent with only an agent's rights (its ServiceAccount token for kubectl and /mcp, its Redis user,
raw HTTP) against the MCP gateway. Each attack that got through on dev up is reproduced here with
its fix; those that held and had no test yet are kept too (docs/threat-model.md rows 70 on)."""

import json
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from handoff.testing.cluster import Cluster, eventually
from handoff.testing.gateway import GatewayProcess
from mcp import Client
from mcp.shared.exceptions import MCPError

from .helpers import AGENT, apply_ready_policy
from .mcp_helpers import (
    Upstream,
    agent_token,
    bank_policy,
    call,
    request_of,
    requests,
    text,
)
from .test_hostile_gateway import _raw
from .test_mcp_tasks import OTHER, create, get, listed, result, session

pytestmark = pytest.mark.integration


def _file(cluster: Cluster, ns: str, spec: dict[str, Any], **meta: Any) -> str:
    """File an MCP request around the gateway, as the agent, with kubectl."""
    document = {
        "apiVersion": "handoff.dev/v1alpha1", "kind": "ActionRequest",
        "metadata": {"namespace": ns, "generateName": "around-", **meta},
        "spec": {"agent": AGENT, "summary": "a call", "execution": "MCP", **spec},
    }  # fmt: skip
    out = cluster.create(document, who=f"{ns}/{AGENT}")
    return str(json.loads(out.stdout)["metadata"]["name"])


def _settled(cluster: Cluster, ns: str, name: str, timeout: float = 30) -> dict[str, Any]:
    return eventually(
        lambda: (b := cluster.get("actionrequest", name, ns))["status"].get("phase")
        in ("Executed", "Failed", "RolledBack", "Denied") and b,
        timeout, f"{name} to be carried out or refused",
    )  # fmt: skip


# -- what the policy judges ------------------------------------------------------------------


def test_labels_of_the_agents_own_choice_do_not_steer_what_the_gateway_runs(
    cluster: Cluster, bank: str, gateway: GatewayProcess, upstream: Upstream
) -> None:
    """Got through on dev up: a policy's `when` may read a request's labels (`labels.lane`). The
    gateway files a call with its own label only, so a transfer through it waits for a person;
    filed around the gateway (kubectl create, execution: MCP, the mapping's exact action, target
    and arguments) with the label `lane: sandbox`, the same transfer was approved at tier 1 and
    the gateway ran it. Labels are something else the client says: the policy must judge only
    what the mapping makes of the call."""
    body = bank_policy(bank)
    sandbox = {"name": "sandbox", "actions": ["mcp.bank.*"], "tier": 1,
               "when": "'lane' in labels && labels.lane == 'sandbox'"}  # fmt: skip
    body["spec"]["rules"].insert(0, sandbox)
    apply_ready_policy(cluster, body)
    asked = {"amount": 900, "to": bank}
    through = call(gateway, agent_token(cluster, bank), "bank__transfer", asked)
    assert "awaits a person's decision" in text(through)

    name = _file(cluster, bank, {"action": "mcp.bank.transfer", "target": f"account:{bank}",
                                 "parameters": {"amount": 901, "to": bank}},
                 labels={"lane": "sandbox"})  # fmt: skip
    settled = _settled(cluster, bank, name)
    assert settled["status"]["decision"]["reason"] == "AutoApproved"  # the operator's, as before
    assert settled["status"]["phase"] == "Failed"
    assert "labels" in settled["status"]["execution"]["message"]
    assert upstream.calls(bank) == []


# -- the idempotency key ---------------------------------------------------------------------


def test_a_number_the_api_server_rewrites_neither_files_twice_nor_replays_a_result(
    cluster: Cluster, bank: str, gateway: GatewayProcess, upstream: Upstream
) -> None:
    """Got through on dev up: the gateway keyed a call by its arguments as sent, the API server
    keeps numbers as 64-bit integers or doubles. An identical retry of a transfer of
    18446744073709551617 filed a second request (stored as 18446744073709552000, the request
    found under the call's name was "another call"); a task-augmented set_limit with 5.0, made
    again after its outcome, was answered with the first call's result and never ran."""
    token = agent_token(cluster, bank)
    refused = call(gateway, token, "bank__transfer", {"amount": 2**64 + 1, "to": bank})
    assert refused.is_error
    assert "amount is an integer past 64 bits" in text(refused)
    assert "nothing was filed" in text(refused)
    assert requests(cluster, bank) == []

    asked = {"amount": 5.0, "to": bank}  # a tier-4 transfer, retried: one request
    assert request_of(call(gateway, token, "bank__transfer", asked)) == request_of(
        call(gateway, token, "bank__transfer", asked)
    )
    (filed,) = requests(cluster, bank)
    assert filed["spec"]["parameters"] == {"amount": 5, "to": bank}

    limit = {"account": bank, "limit": 5.0, "previous": 3}  # tier 2 with an inverse: runs
    first = create(gateway, token, "bank__set_limit", limit)
    assert text(result(gateway, token, first.task_id)) == f"limit of {bank} is now 5 (was 3)"
    second = create(gateway, token, "bank__set_limit", limit)
    assert second.task_id != first.task_id  # a new call once the first's outcome was delivered
    assert text(result(gateway, token, second.task_id)) == f"limit of {bank} is now 5 (was 3)"
    ran = [c for c in upstream.calls(bank) if c["tool"] == "set_limit"]
    assert [c["args"] for c in ran] == [{"account": bank, "limit": 5, "previous": 3}] * 2


# -- denial of service -----------------------------------------------------------------------


def test_task_reads_are_bounded_per_agent_with_a_clear_error(
    cluster: Cluster, bank: str, redis_server: Any, upstream: Upstream, tmp_path: Path
) -> None:
    """tasks/get and tasks/list were not rate-limited: each is a read of the API server made as
    the gateway, sharing its flow with what it does for every agent; on dev up one agent read
    in a loop as fast as its connections went. Now each agent has a bucket per replica
    (--task-reads-per-agent a second, bursts of twice that); past it a -32000 error says so."""
    own = GatewayProcess(cluster, tmp_path, redis_server.url, args=("--task-reads-per-agent=1",))
    own.start()
    try:
        mine, theirs = agent_token(cluster, bank), agent_token(cluster, bank, OTHER)
        task = create(own, mine, "bank__transfer", {"amount": 7, "to": bank}).task_id
        get_one = types.GetTaskRequest(params=types.GetTaskRequestParams(task_id=task))
        list_all = types.ListTasksRequest(params=types.PaginatedRequestParams())

        async def poll(client: Client) -> list[MCPError]:
            refused: list[MCPError] = []
            for n in range(12):  # a burst of 2 passes, then about one a second
                try:
                    if n % 2:
                        await client.session.send_request(list_all, types.ListTasksResult)
                    else:
                        await client.session.send_request(get_one, types.GetTaskResult)
                except MCPError as e:
                    refused.append(e)
            return refused

        refused = session(own, mine, poll)
        assert len(refused) >= 6
        error = next(e for e in refused if "this tasks/list was refused" in str(e))
        assert error.code == -32000
        assert "reads its tasks faster than this gateway allows one agent (1 tasks/get" in str(
            error
        )
        assert "Wait" in str(error)
        assert "poll at the task's pollInterval" in str(error)
        assert error.error.data["reason"] == "TooManyReads"
        assert error.error.data["limit"] == 1
        assert listed(own, theirs) == []  # another agent has its own bucket

        def refilled() -> bool | None:  # refused until the bucket has a read again
            try:
                return get(own, mine, task).status == "working"
            except MCPError:
                return None
            except BaseExceptionGroup as group:  # as the SDK's task group raises it
                if group.subgroup(MCPError) is None:
                    raise
                return None

        eventually(refilled, 10, "a read once refilled")
    finally:
        own.stop()


# -- held on dev up --------------------------------------------------------------------------

_CALL = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":'


def test_duplicate_keys_and_odd_numbers_are_read_one_way_by_every_part(
    cluster: Cluster, bank: str, gateway: GatewayProcess, upstream: Upstream
) -> None:
    """Held on dev up: a raw body with a key twice is read the same way (the last) where the
    gateway routes it, by the SDK, for the schema and the filing, so what is filed is what runs;
    NaN and infinities are refused before filing; -0.0 is filed and run as 0."""
    token = agent_token(cluster, bank)
    read = b'{"name":"bank__transfer","name":"bank__read_account","arguments":{"account":"%s"}}}'
    status, answer = _raw(gateway, token, _CALL + read % bank.encode())
    assert status == 200
    assert f"account {bank}: balance 1000".encode() in answer
    routed = b'{"jsonrpc":"2.0","id":1,"method":"tasks/get","method":"tools/call","params":'
    twice = b'{"name":"bank__read_account","arguments":{"account":"x","account":"%s-2"}}}'
    status, answer = _raw(gateway, token, routed + twice % bank.encode())
    assert f"account {bank}-2: balance 1000".encode() in answer
    for number in (b"NaN", b"Infinity", b"-Infinity"):
        limit = b'{"name":"bank__set_limit","arguments":{"account":"a","limit":%s,"previous":1}}}'
        status, answer = _raw(gateway, token, _CALL + limit % number)
        assert b"limit is not a finite number; nothing was filed" in answer, answer
    zero = b'{"name":"bank__set_limit","arguments":{"account":"%s","limit":-0.0,"previous":1}}}'
    status, answer = _raw(gateway, token, _CALL + zero % bank.encode())
    assert f"limit of {bank} is now 0".encode() in answer
    assert [c["args"] for c in upstream.calls(bank)] == [
        {"account": bank},
        {"account": f"{bank}-2"},
        {"account": bank, "limit": 0, "previous": 1},
    ]
    assert sorted(r["spec"]["action"] for r in requests(cluster, bank)) == [
        "mcp.bank.read_account", "mcp.bank.read_account", "mcp.bank.set_limit",
    ]  # fmt: skip
