"""Which Secret an MCPServer's credentials may come from. Pure.

Writing an MCPServer that names a Secret (a database password, another team's token) must not
be a way to read it: whoever may write the Secret decides, with the annotation
``handoff.dev/mcp-server: <server>``, for which MCPServer of its namespace it is. The operator
grants the gateway ``get`` only on Secrets so marked (controller/gateway_access.py), and the
gateway sends upstream only a Secret marked for the server it calls (gateway/upstream.py): both
ask ``marked_for``.
"""

from collections.abc import Collection, Mapping
from typing import Any

CREDENTIALS_FOR = "handoff.dev/mcp-server"  # a Secret's annotation: the MCPServer it is for


def marked_for(secret: Mapping[str, Any], servers: Collection[str]) -> bool:
    """Whether the Secret's owner marked it as the credentials of one of ``servers``."""
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    return annotations.get(CREDENTIALS_FOR) in servers
