"""Who is clicking in Slack, as the cluster will see them: the administrators' mapping, then
whether this console may act as that identity at all.

The mapping (a ConfigMap only administrators edit) and the console's impersonation RBAC
(``resourceNames`` in the chart values) are kept by hand in two places; when they disagree the
clicking person is told in a sentence, and the administrators see it as a Warning Event
``SlackMappingUnusable`` on the ConfigMap and the same line in the console's log, rather than
the API server's 403 about impersonation.
"""

import logging
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from handoff.adapters.kube import KubeApi, KubeError, NotFound, resource_path
from handoff.domain.reasons import Slack
from handoff.domain.timefmt import format_time
from handoff.review.slackusers import Identity, parse

log = logging.getLogger("handoff.console")
_EVENT_EVERY = 600.0  # seconds between two Events about the same entry (a clicking loop)


class Refused(Exception):
    """Said to the clicking person, ephemerally; nothing is written."""


@dataclass
class Mapping:
    """The ConfigMap ``namespace/name`` and the console's own API client."""

    api: KubeApi
    namespace: str
    name: str
    _told: dict[tuple[str, str], float] = field(default_factory=dict)

    async def identity(self, user: str) -> Identity:
        """The mapped identity of this Slack user, which the console may impersonate."""
        path = resource_path("", "v1", "configmaps", self.namespace, self.name)
        try:
            data = (await self.api.get(path)).get("data") or {}
        except NotFound:
            data = {}
        except KubeError as e:
            log.warning("cannot read the Slack user mapping: %s", e)
            raise Refused("Handoff cannot read its Slack user mapping right now; try again.") from e
        mapping, _ = parse(data)
        if user not in mapping:
            raise Refused(
                f"Your Slack account ({user or 'unknown'}) is not mapped to a Kubernetes user, so"
                " Handoff cannot let the cluster judge your decision. Ask an administrator to add"
                f" it to ConfigMap {self.name}."
            )
        identity = mapping[user]
        missing = await self._missing(identity)
        if missing:
            await self._unusable(user, missing)
            raise Refused(
                f"Handoff may not act as {missing}, which your Slack account ({user}) is mapped"
                " to, so nothing was written. An administrator must list it in"
                f" console.slack.impersonate (the chart values) or correct ConfigMap {self.name}."
            )
        return identity

    async def _missing(self, identity: Identity) -> str | None:
        """The first of the identity's user and groups the console may not impersonate."""
        for kind, name in (("user", identity.user), *(("group", g) for g in identity.groups)):
            attributes = {"group": "", "resource": f"{kind}s", "verb": "impersonate", "name": name}
            try:
                review = await self.api.create(
                    "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                    {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                     "spec": {"resourceAttributes": attributes}},
                )  # fmt: skip
            except KubeError as e:
                raise Refused("Handoff cannot check its own rights right now; try again.") from e
            if not (review.get("status") or {}).get("allowed"):
                return f"{kind} {name}"
        return None

    async def _unusable(self, user: str, missing: str) -> None:
        message = (
            f"Slack user {user} is mapped to {missing}, which this console may not impersonate:"
            " list it in console.slack.impersonate (the chart values) or correct the entry"
        )
        log.warning("%s: %s", Slack.MAPPING_UNUSABLE, message)
        now = time.monotonic()
        if now - self._told.get((user, missing), -_EVENT_EVERY) < _EVENT_EVERY:
            return
        if len(self._told) > 1000:
            self._told.clear()
        self._told[(user, missing)] = now
        stamp = format_time(datetime.now(UTC))
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{self.name}.", "namespace": self.namespace},
            "involvedObject": {"apiVersion": "v1", "kind": "ConfigMap", "name": self.name,
                               "namespace": self.namespace},
            "reason": str(Slack.MAPPING_UNUSABLE), "message": message[:1024], "type": "Warning",
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
            "source": {"component": "handoff-console"},
            "reportingComponent": "handoff.dev/console", "reportingInstance": socket.gethostname(),
        }  # fmt: skip
        try:
            await self.api.create(resource_path("", "v1", "events", self.namespace), event)
        except KubeError as e:
            log.warning("could not post the %s Event: %s", Slack.MAPPING_UNUSABLE, e)
