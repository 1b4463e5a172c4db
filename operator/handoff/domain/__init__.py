"""The domain layer: policies, classification and decisions.

Nothing here talks to Kubernetes, Redis, the clock or the network; an import-linter contract in
CI keeps it that way.
"""
