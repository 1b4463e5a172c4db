"""Leader election on a coordination.k8s.io Lease: of several operator replicas, one is active.

The protocol is client-go's: the holder renews ``spec.renewTime`` every ``renew`` seconds; a
candidate takes the Lease over when it has seen the same holder and renew time, unchanged, for
longer than ``leaseDurationSeconds`` *by its own clock* (so clock skew between replicas does not
matter). Every write is a PUT guarded by the resourceVersion the writer read, so two candidates
can never both win the same round. A leader that cannot renew within the lease duration stops
acting and the process exits, for its Deployment to restart it as a candidate.

Overlap is harmless by construction: every decision the operator writes is a
resourceVersion-guarded status patch, so even two active replicas could not decide a request
twice. The Lease only keeps the standby from doing the work twice.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from handoff.adapters import metrics
from handoff.adapters.kube import Conflict, KubeApi, KubeError, NotFound, resource_path

log = logging.getLogger("handoff.leadership")


def _micro_time(moment: datetime) -> str:
    """The Lease's MicroTime format."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class LeaseSettings:
    namespace: str
    name: str
    identity: str
    duration: float = 15.0  # seconds a holder's claim lasts without renewal
    renew: float = 5.0  # how often the holder renews
    retry: float = 2.0  # how often a candidate looks again


class LeaderElector:
    def __init__(
        self,
        api: KubeApi,
        settings: LeaseSettings,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.api = api
        self.settings = settings
        self._monotonic = monotonic
        self._wall = wall
        self._observed: tuple[str, str] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0
        self.leading = False
        self.holder = ""  # the holder seen last
        self.last_renewal = 0.0  # monotonic time of the last successful renewal

    @property
    def path(self) -> str:
        s = self.settings
        return resource_path("coordination.k8s.io", "v1", "leases", s.namespace, s.name)

    async def acquire(self) -> None:
        """Wait until this replica holds the Lease."""
        log.info(
            "waiting for the Lease %s/%s as %s",
            self.settings.namespace, self.settings.name, self.settings.identity,
        )  # fmt: skip
        while True:
            if await self.try_acquire():
                break
            await asyncio.sleep(self.settings.retry)
        log.info("this replica (%s) now leads", self.settings.identity)

    async def try_acquire(self) -> bool:
        """One round: True when this replica holds the Lease afterwards."""
        try:
            lease = await self.api.get(self.path)
        except NotFound:
            return await self._create()
        except KubeError as e:
            log.warning("reading the Lease: %s", e)
            return False
        spec = lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        renewed = str(spec.get("renewTime") or "")
        now = self._monotonic()
        if (holder, renewed) != self._observed:
            self._observed, self._observed_at = (holder, renewed), now
        duration = float(spec.get("leaseDurationSeconds") or self.settings.duration)
        expired = not holder or now - self._observed_at > duration
        self.holder = holder
        if holder != self.settings.identity and not expired:
            return False
        return await self._write(lease, taking_over=holder != self.settings.identity)

    async def keep(self) -> None:
        """Renew the Lease until renewal fails for longer than the lease duration; then return
        (leadership is lost)."""
        while True:
            await asyncio.sleep(self.settings.renew)
            if await self.try_acquire():
                continue
            taken = self.holder not in ("", self.settings.identity)
            if taken or self._monotonic() - self.last_renewal > self.settings.duration:
                self.leading = False
                metrics.LEADER.set(0)
                log.error("lost the Lease %s/%s", self.settings.namespace, self.settings.name)
                return

    async def release(self) -> None:
        """Give the Lease up on a clean shutdown, so a standby takes over at once."""
        if not self.leading:
            return
        try:
            lease = await self.api.get(self.path)
            if (lease.get("spec") or {}).get("holderIdentity") == self.settings.identity:
                lease["spec"]["holderIdentity"] = ""
                lease["spec"]["leaseDurationSeconds"] = 1
                await self.api.request("PUT", self.path, lease)
        except KubeError as e:
            log.warning("releasing the Lease: %s", e)
        self.leading = False
        metrics.LEADER.set(0)

    async def _create(self) -> bool:
        now = _micro_time(self._wall())
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.settings.name, "namespace": self.settings.namespace},
            "spec": {
                "holderIdentity": self.settings.identity,
                "leaseDurationSeconds": max(int(self.settings.duration), 1),
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            },
        }
        path = resource_path("coordination.k8s.io", "v1", "leases", self.settings.namespace)
        try:
            await self.api.create(path, body)
        except KubeError as e:  # someone else created it first, or no access
            log.debug("creating the Lease: %s", e)
            return False
        return self._won()

    async def _write(self, lease: dict[str, Any], *, taking_over: bool) -> bool:
        now = _micro_time(self._wall())
        spec = lease.setdefault("spec", {})
        if taking_over:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        spec["holderIdentity"] = self.settings.identity
        spec["leaseDurationSeconds"] = max(int(self.settings.duration), 1)
        spec["renewTime"] = now
        try:  # the body carries the resourceVersion read: a PUT that races loses with 409
            await self.api.request("PUT", self.path, lease)
        except Conflict:
            return False
        except KubeError as e:
            log.warning("renewing the Lease: %s", e)
            return False
        return self._won()

    def _won(self) -> bool:
        self.leading = True
        self.last_renewal = self._monotonic()
        metrics.LEADER.set(1)
        return True
