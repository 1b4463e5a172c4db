"""The MCP gateway: agents call their tools through it, and each call becomes an ActionRequest
filed with the agent's own token; what a policy or a person approves is what the gateway runs,
once. See docs/mcp-gateway.md."""
