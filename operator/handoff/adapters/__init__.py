"""Adapters: the only code that talks to the outside (Kubernetes, Redis, PostgreSQL, metrics)."""
