"""A standing grant made from the web console while approving, in real headless Chromium: the
grant option shows only for a grantable rule, and the grant is created with the reviewer's own
identity and covers the next matching request."""

import json
from pathlib import Path

import pytest
from handoff.devenv.environment import console_reader
from handoff.devenv.redis import RedisServer
from handoff.testing.cluster import Cluster, ConsoleProcess, OperatorProcess
from playwright.sync_api import Browser

from .grant_helpers import GRANTED, RULES, phase_of, refund_request
from .helpers import apply_ready_policy, policy, wait_for

pytestmark = pytest.mark.integration


def test_a_reviewer_grants_while_approving_in_the_console(
    cluster: Cluster, operator: OperatorProcess, namespace: str, redis_server: RedisServer,
    tmp_path: Path, browser: Browser,
) -> None:  # fmt: skip
    ns = namespace
    apply_ready_policy(cluster, policy(ns, rules=RULES))
    console = ConsoleProcess(cluster, tmp_path, [ns], console_reader(redis_server, tmp_path))
    console.start()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        small, large = refund_request(cluster, ns, 50), refund_request(cluster, ns, 5000)
        wait_for(cluster, ns, small, "phase", "AwaitingApproval")
        wait_for(cluster, ns, large, "phase", "AwaitingApproval")
        page.goto(f"{console.url}/login")
        page.fill("#token", cluster.token("alice"))
        page.click("button[type=submit]")
        page.wait_for_url("**/queue")
        page.goto(f"{console.url}/requests/{ns}/{large}")  # money: not grantable, no option
        assert page.locator("#grant-duration").count() == 0
        page.goto(f"{console.url}/requests/{ns}/{small}")
        offered = page.locator("#grant-duration option").all_inner_texts()
        assert offered == ["no grant", "15m", "1h"]
        for box in page.locator("input[name=ack]").all():
            box.check()
        page.select_option("#grant-duration", "15m")
        page.fill("#grant-count", "2")
        page.click("#approve-button")
        page.wait_for_selector("p.notice")
        assert "Your approval is recorded" in page.inner_text("p.notice")
    finally:
        context.close()
        console.stop()
    grants = json.loads(cluster.kubectl("get", "agr", "-n", ns, "-o", "json").stdout)["items"]
    assert [(g["spec"]["grantedBy"], g["spec"]["maxUses"], g["spec"]["request"])
            for g in grants] == [("alice", 2, small)]  # fmt: skip
    assert phase_of(cluster, ns, refund_request(cluster, ns, 10)) == GRANTED
