"""What the operator lets the MCP gateway read: exactly the Secrets a namespace's MCPServers
name and their owners marked for them, by name, bound to the gateway's ServiceAccount. Pure."""

from typing import Any

from handoff.controller.gateway_access import ROLE, credentials_access, parse_account
from handoff.domain.mcpsecrets import CREDENTIALS_FOR, marked_for


def test_the_role_names_exactly_the_secrets_and_binds_only_the_gateway() -> None:
    role, binding = credentials_access("bank", ["b", "a", "b"], ("handoff-system", "gw"))
    assert role["kind"] == "Role"
    assert role["metadata"] == {"name": ROLE, "namespace": "bank",
                                "labels": {"app.kubernetes.io/managed-by": "handoff"}}  # fmt: skip
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["a", "b"]}
    ]
    assert binding["roleRef"]["name"] == ROLE
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "gw", "namespace": "handoff-system"}
    ]


def test_the_gateway_account_is_namespace_slash_name_or_none() -> None:
    assert parse_account("handoff-system/handoff-gateway") == ("handoff-system", "handoff-gateway")
    for value in ("", " ", "handoff-gateway", "/x", "x/"):
        assert parse_account(value) is None


def test_only_a_secret_marked_for_a_server_that_names_it_counts() -> None:
    def secret(annotations: dict[str, str] | None) -> dict[str, Any]:
        return {"metadata": {"name": "s", "annotations": annotations}}

    assert marked_for(secret({CREDENTIALS_FOR: "bank"}), {"bank", "vault"})
    for annotations in (None, {}, {CREDENTIALS_FOR: "other"}, {CREDENTIALS_FOR: ""},
                        {"handoff.dev/mcp-server ": "bank"}):  # fmt: skip
        assert not marked_for(secret(annotations), {"bank"}), annotations
