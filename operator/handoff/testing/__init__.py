"""Test helpers for Handoff and for projects that build on it (like ``kopf.testing``).

- :class:`FixedClock`: a clock to pass as ``now`` or ``clock``, moved by hand.
- :class:`Cluster`: a real etcd and kube-apiserver on loopback with Handoff's CRDs installed,
  kubectl as any identity, fresh namespaces with agent ServiceAccounts.
- :class:`OperatorProcess`: ``handoff operator`` as a child process that a test can kill and
  start again.
The pytest fixtures in :mod:`handoff.testing.fixtures` wire these together.
"""

from handoff.testing.clock import FixedClock
from handoff.testing.cluster import Cluster, OperatorProcess

__all__ = ["Cluster", "FixedClock", "OperatorProcess"]
