"""The operator: kopf handlers that gather, call the domain core, and apply what it returns."""
