"""A MCPServer mapping whose cost the agent's arguments decide runs in the sandbox, within a CPU
budget: it passed every check of the source (no comprehension nested in another), yet with 32
items in each of two arguments it held the gateway's event loop for 2 s, with 256 for minutes.
Now it is a clear refusal within the budget, and the loop runs meanwhile."""

import asyncio

import pytest
from handoff.adapters.sandbox import Sandbox
from handoff.gateway.budget import mapping_values
from handoff.gateway.filing import Call, request_body
from handoff.gateway.servers import MappingError, compile_server

RUNAWAY = "string(args.a.map(x, args.b)" + ".map(l, l + l)" * 4 + ".size())"


def server(target: str) -> object:
    return compile_server({
        "metadata": {"name": "bank", "namespace": "ns", "generation": 1},
        "spec": {"url": "http://bank", "agents": {"serviceAccounts": ["a"]},
                 "tools": [{"name": "sweep", "target": target}]},
    })  # fmt: skip


def test_a_runaway_mapping_is_refused_within_the_budget_and_the_loop_keeps_running() -> None:
    bank = server(RUNAWAY)
    assert not bank.problems  # every check of the source lets it through
    mapping = bank.mapping("sweep")
    assert mapping.costly() == [RUNAWAY]
    hostile = {"a": list(range(256)), "b": ["x" * 200] * 256}

    async def scenario() -> tuple[object, int]:
        sandbox = Sandbox()
        await sandbox.start()
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        try:
            values = await mapping_values(sandbox, ("ns", "a"), mapping, hostile)
        finally:
            task.cancel()
            await sandbox.close()
        return values, ticks

    values, ticks = asyncio.run(scenario())
    assert "exceeded the evaluation budget" in str(values[RUNAWAY])
    assert ticks > 0  # the loop ran while the child spent its budget
    call = Call(bank, mapping, hostile, {}, "Sweep", values)  # type: ignore[arg-type]
    with pytest.raises(MappingError, match="exceeded the evaluation budget"):
        request_body(call, "a", "mcp-x")  # nothing can be filed with it


def test_a_costly_mapping_gives_its_value_from_the_sandbox_and_never_runs_in_process() -> None:
    bank = server("'accounts:' + args.ids.filter(i, i > 2).map(i, string(i)).join(',')")
    mapping = bank.mapping("sweep")
    call = Call(bank, mapping, {"ids": [1, 3, 4]}, {}, "Sweep")  # type: ignore[arg-type]
    with pytest.raises(MappingError, match="was not evaluated"):
        request_body(call, "a", "mcp-x")  # no sandbox answer: refused, never evaluated here

    async def scenario() -> object:
        sandbox = Sandbox()
        try:
            return await mapping_values(sandbox, ("ns", "a"), mapping, {"ids": [1, 3, 4]})
        finally:
            await sandbox.close()

    values = asyncio.run(scenario())
    call = Call(bank, mapping, {"ids": [1, 3, 4]}, {}, "Sweep", values)  # type: ignore[arg-type]
    assert request_body(call, "a", "mcp-x")["spec"]["target"] == "accounts:3,4"
    cheap = server("'account:' + args.account").mapping("sweep")
    assert cheap.costly() == []  # linear in the arguments: evaluated in the loop, no child
