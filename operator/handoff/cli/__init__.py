"""Command lines: ``handoff`` and ``kubectl-handoff``."""
