"""Test helpers for Handoff and for projects that build on it (like ``kopf.testing``).

- :class:`FixedClock`: a clock to pass as ``now`` or ``clock``, moved by hand.
- :class:`FakeKube`: an in-memory API server (objects, resourceVersions, injected 409s and
  errors) and :class:`MemoryOutbox` (Redis streams as lists), for unit tests of the controller.
- :class:`Cluster`: a real etcd and kube-apiserver on loopback with Handoff's CRDs installed,
  kubectl as any identity, fresh namespaces with agent ServiceAccounts.
- :class:`OperatorProcess`: ``handoff operator`` as a child process that a test can kill and
  start again.
The pytest fixtures in :mod:`handoff.testing.fixtures` wire these together.
"""

from handoff.adapters.outbox import MemoryOutbox
from handoff.testing.clock import FixedClock
from handoff.testing.cluster import Cluster, OperatorProcess
from handoff.testing.kube import FakeKube

__all__ = ["Cluster", "FakeKube", "FixedClock", "MemoryOutbox", "OperatorProcess"]
