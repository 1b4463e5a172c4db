"""Handoff: human oversight for AI agents, as a Kubernetes operator."""

__version__ = "0.1.0"

GROUP = "handoff.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
REQUESTS = "actionrequests"
POLICIES = "agentactionpolicies"
