"""Offline tools for a policy repository: lint, test, diff and explain, no cluster needed."""
