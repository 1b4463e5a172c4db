"""The local environment: a real control plane on loopback, and what runs beside it."""
