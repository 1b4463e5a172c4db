"""handoff policy lint | test | diff, on policies written to a temporary folder."""

import io
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from handoff.cli import kubectl_plugin
from handoff.cli.main import main

BASE: dict[str, Any] = {
    "apiVersion": "handoff.dev/v1alpha1",
    "kind": "AgentActionPolicy",
    "metadata": {"name": "payments", "namespace": "agents"},
    "spec": {
        "agents": {"serviceAccounts": ["payments-agent"]},
        "reviewers": {"groups": ["payments-approvers"]},
        "rules": [
            {"name": "reads", "actions": ["db.query"], "tier": 1},
            {"name": "money", "actions": ["payments.*"], "tier": 4},
        ],
    },
}
CASES = {"cases": [
    {"name": "read", "request": {"agent": "payments-agent", "action": "db.query"}, "expect": {"tier": 1, "rule": "reads"}},
    {"name": "refund", "request": {"agent": "payments-agent", "action": "payments.refund"}, "expect": {"tier": 4}},
]}  # fmt: skip


def write(folder: Path, policy: dict[str, Any], cases: dict[str, Any] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    if cases is not None:
        (folder / "tests.yaml").write_text(yaml.safe_dump({"policies": ["policy.yaml"], **cases}))
    return folder


def handoff(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def variant(**spec: Any) -> dict[str, Any]:
    return BASE | {"spec": BASE["spec"] | spec}


@pytest.mark.parametrize(
    ("policy", "severity", "message"),
    [
        (variant(mode="Sometimes"), "error", "spec.mode: 'Sometimes' is not one of"),
        (variant(rules=[{"name": "r", "actions": ["x"], "tier": 1, "when": "confidence > 0.9"}]), "error", "names 'confidence'"),
        (variant(rules=[{"name": "all", "actions": ["payments.*"], "tier": 4},
                        {"name": "refunds", "actions": ["payments.refund"], "tier": 3}]),
         "warning", "rule 'refunds' can never match: rule 'all' before it takes all of its actions"),
        (variant(reviewers={}), "warning", "the policy names none"),
        (variant(tiers={"tier4": {"decisionWindow": "30s"}}), "warning", "tier4.decisionWindow 30s is shorter than 1m"),
        (variant(tiers={"tier4": {"decisionWindow": "1m", "minReviewSeconds": 90}}), "error", "leaves no time"),
    ],
)  # fmt: skip
def test_lint_findings(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    policy: dict[str, Any],
    severity: str,
    message: str,
) -> None:
    folder = write(tmp_path / "p", policy)
    code, out = handoff("policy", "lint", str(folder), capsys=capsys)
    line = next(line for line in out.splitlines() if message in line)
    assert line.startswith(f"{folder / 'policy.yaml'}:")
    assert f": {severity}: " in line
    assert code == (1 if severity == "error" else 0)


def test_lint_points_at_the_rule_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write(tmp_path / "p", variant(rules=[{"name": "all", "actions": ["*"], "tier": 4},
                                                  {"name": "late", "actions": ["db.query"], "tier": 1}]))  # fmt: skip
    _, out = handoff("policy", "lint", str(folder), capsys=capsys)
    finding = next(line for line in out.splitlines() if "'late'" in line)
    number = int(finding.split(":")[1])
    assert "- name: late" in (folder / "policy.yaml").read_text().splitlines()[number - 1]


def test_lint_flags_too_much_hitl_traffic_and_strict_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = {
        "cases": [
            {
                "name": f"pay {i}",
                "request": {"agent": "payments-agent", "action": "payments.x"},
                "expect": {},
            }
            for i in range(3)
        ]
    }
    folder = write(tmp_path / "p", BASE, cases)
    code, out = handoff("policy", "lint", str(folder), capsys=capsys)
    assert "3 of 3 sample requests (100%) wait for a person" in out
    assert code == 0
    strict, _ = handoff("policy", "lint", "--strict", str(folder), capsys=capsys)
    assert strict == 1


def test_policy_test_passes_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path / "good", BASE, CASES)
    code, out = handoff("policy", "test", str(good), capsys=capsys)
    assert code == 0
    assert "2 passed, 0 failed" in out
    wrong = {
        "cases": [
            {
                "name": "read is tier 2?",
                "request": {"agent": "payments-agent", "action": "db.query"},
                "expect": {"tier": 2},
            }
        ]
    }
    bad = write(tmp_path / "bad", BASE, wrong)
    code, out = handoff("policy", "test", str(bad), capsys=capsys)
    assert code == 1
    assert "tier: expected 2, got 1" in out
    assert "0 passed, 1 failed" in out


def test_diff_between_two_versions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = write(tmp_path / "old", BASE, CASES)
    relaxed = variant(rules=[{"name": "reads", "actions": ["db.query"], "tier": 1},
                             {"name": "refunds", "actions": ["payments.refund"], "tier": 3},
                             {"name": "money", "actions": ["payments.*"], "tier": 4}])  # fmt: skip
    new = write(tmp_path / "new", relaxed, CASES)
    code, out = handoff("policy", "diff", str(old), str(new), capsys=capsys)
    assert code == 0
    assert "1 of 2 sample requests change" in out
    lines = out.splitlines()
    before = next(line for line in lines if "before" in line)
    after = next(line for line in lines if "after" in line)
    assert "payments/money" in before
    assert "payments/refunds" in after
    _, markdown = handoff(
        "policy", "diff", "--format", "markdown", str(old), str(new), capsys=capsys
    )
    assert markdown.startswith("**Policy change: 1 of 2 sample requests change.**")
    assert (
        "| refund (`payments.refund`) | 4 · HITL · payments/money · 15m · 1 | 3 · HOTL · payments/refunds · 5m · 1 |"
        in markdown
    )


def test_diff_takes_recorded_traffic_from_a_file_of_any_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = write(tmp_path / "old", BASE, CASES)
    new = write(
        tmp_path / "new", variant(rules=[{"name": "all", "actions": ["*"], "tier": 1}]), CASES
    )
    traffic = tmp_path / "last-week.yaml"
    traffic.write_text(
        "cases:\n- name: a wire transfer\n"
        "  request: {agent: payments-agent, action: payments.wire, target: bank:1}\n"
    )
    code, out = handoff(
        "policy", "diff", "--samples", str(traffic), str(old), str(new), capsys=capsys
    )
    assert code == 0
    assert "3 of 3 sample requests change" in out
    assert "a wire transfer" in out


def test_diff_against_a_git_revision(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    write(repo / "policies", BASE, CASES)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "-C", str(repo), "add", "."], check=True)
    subprocess.run([*git, "-C", str(repo), "commit", "-qm", "base"], check=True)
    write(
        repo / "policies",
        variant(rules=[{"name": "everything", "actions": ["*"], "tier": 1}]),
        CASES,
    )
    monkeypatch.chdir(repo)
    code, out = handoff("policy", "diff", "HEAD:policies", "policies", capsys=capsys)
    assert code == 0
    assert "2 of 2 sample requests change" in out
    missing, _ = handoff("policy", "diff", "HEAD:nowhere", "policies", capsys=capsys)
    assert missing == 2


def test_explain_offline_says_which_rule_in_which_policy(tmp_path: Path) -> None:
    strict = variant(rules=[{"name": "all", "actions": ["*"], "tier": 4}]) | {
        "metadata": {"name": "strict", "namespace": "agents"}
    }
    other = variant(agents={"serviceAccounts": ["other-agent"]}) | {
        "metadata": {"name": "other", "namespace": "agents"}
    }
    write(tmp_path / "a", BASE)
    write(tmp_path / "b", strict)
    write(tmp_path / "c", other)
    request = {"apiVersion": "handoff.dev/v1alpha1", "kind": "ActionRequest", "metadata": {"namespace": "agents"},
               "spec": {"agent": "payments-agent", "action": "db.query", "summary": "read"}}  # fmt: skip
    (tmp_path / "request.yaml").write_text(yaml.safe_dump(request))
    out = io.StringIO()
    code = kubectl_plugin.main(
        ["explain", "-f", str(tmp_path / "request.yaml"), "--policies", str(tmp_path)], out=out
    )
    text = out.getvalue()
    assert code == 0
    assert "  other: does not govern payments-agent" in text
    assert "  payments: tier 1, HOOTL: rule reads matched db.query" in text
    assert "  strict: tier 4, HITL: rule all matched db.query" in text
    assert (
        "Result: tier 4, HITL, from strict/all (the highest tier wins), window 15m, 1 approval(s)"
        in text
    )
