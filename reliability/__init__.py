"""`make reliability`: a mixed load on the real control plane, Redis and PostgreSQL while faults
are injected (run.py), then an independent check of everything the load filed (checker.py).

The checker imports nothing of the operator's decision logic: it re-derives what each request
should have become from the scenario the harness wrote and the raw data read back.
"""
