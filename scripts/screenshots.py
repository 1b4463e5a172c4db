"""Screenshots of the console for the docs, taken from a running `handoff dev up`:

.venv/bin/python scripts/screenshots.py    # writes docs/screenshots/{queue,request,feed}.png
"""

import asyncio
import json
from pathlib import Path

from handoff.sdk import Agent
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "screenshots"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


async def propose(kubeconfig: str) -> str:
    async with Agent(
        "agents", "payments-agent", kubeconfig=kubeconfig, context="payments-agent"
    ) as agent:
        await agent.propose(
            "db.query", target="analytics:orders", summary="Count yesterday's orders"
        )
        ticket = await agent.propose(
            "payments.refund", target="stripe:charge/ch_3Q9",
            parameters={"amount": 1840, "currency": "USD", "order": 4411},
            summary="Refund the double charge on order 4411 ($1,840)",
            reasoning="Two identical charges 4 seconds apart; the customer asked for one to be "
                      "returned",
            blast_radius="$1,840 leaves the company account; the customer keeps the goods",
            rollback={"description": "Charge the customer again for $1,840",
                      "action": "payments.charge"},
            confidence=0.88,
        )  # fmt: skip
        return ticket.name


def main() -> None:
    env = dict(line.split("=", 1) for line in (ROOT / ".handoff/dev/env").read_text().split())
    tokens = json.loads((ROOT / ".handoff/dev/state.json").read_text())["tokens"]
    name = asyncio.run(propose(env["KUBECONFIG"]))
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 760})
        page.goto(f"{env['CONSOLE_URL']}/login")
        page.fill("#token", tokens["alice"])
        page.click("button[type=submit]")
        page.wait_for_url("**/queue")
        page.screenshot(path=str(OUT / "queue.png"))
        page.goto(f"{env['CONSOLE_URL']}/requests/agents/{name}")
        page.locator("input[name=ack]").first.check()
        page.screenshot(path=str(OUT / "request.png"), full_page=True)
        page.goto(f"{env['CONSOLE_URL']}/feed")
        page.wait_for_timeout(1500)
        page.screenshot(path=str(OUT / "feed.png"))
        browser.close()
    print(f"wrote {OUT}/queue.png, request.png, feed.png")


if __name__ == "__main__":
    main()
