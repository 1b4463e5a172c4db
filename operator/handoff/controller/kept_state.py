"""Where the Kubernetes executor keeps an object's state around an action: the object before it
(``handoff-previous-<request uid>``) and as the action left it (``...-after``), two ConfigMaps
beside the request and owned by it (not in the request: objects and annotations have size
limits). Each is created once, never updated: a retry after a crash keeps the first copy of
the state before, and the operator needs no right to change ConfigMaps. Written and read with
the operator's own identity; no policy may let the executor change them
(``domain.executors.allowed``).
"""

import contextlib
import json
from typing import Any

from handoff import API_VERSION
from handoff.adapters.kube import Conflict, KubeApi, KubeError, NotFound, resource_path
from handoff.domain.executors import KEPT_PREFIX, KubernetesChange
from handoff.domain.resources import RequestJSON

MANAGED_BY = {"app.kubernetes.io/managed-by": "handoff"}
BEFORE, AFTER = "", "-after"
UNKNOWN: Any = object()  # no state kept as the action left it (an action of an older version)


class NotThisRequests(KubeError):
    def __init__(self, message: str) -> None:
        super().__init__(0, message)


class KeptState:
    def __init__(self, api: KubeApi) -> None:
        self.api = api  # the operator's own

    async def keep(
        self, body: RequestJSON, change: KubernetesChange, which: str, state: Any
    ) -> None:
        """Keep ``state`` (an object, or None for none), unless an earlier attempt did."""
        meta = body["metadata"]
        config_map = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": KEPT_PREFIX + meta["uid"] + which,
                "namespace": meta["namespace"],
                "labels": MANAGED_BY,
                "ownerReferences": [{"apiVersion": API_VERSION, "kind": "ActionRequest",
                                     "name": meta["name"], "uid": meta["uid"]}],
            },
            "data": {"object": json.dumps(state), "target": _target(change)},
        }  # fmt: skip
        with contextlib.suppress(Conflict):
            collection = resource_path("", "v1", "configmaps", meta["namespace"])
            await self.api.create(collection, config_map)

    async def kept(self, body: RequestJSON, change: KubernetesChange, which: str) -> Any:
        """The state kept, once it is sure to be the operator's own record of this request's
        object; ``UNKNOWN`` when none was kept."""
        meta = body["metadata"]
        path = resource_path("", "v1", "configmaps", meta["namespace"],
                             KEPT_PREFIX + meta["uid"] + which)  # fmt: skip
        try:
            kept = await self.api.get(path)
        except NotFound:
            return UNKNOWN
        owners = [o.get("uid") for o in kept["metadata"].get("ownerReferences") or []]
        data = kept.get("data") or {}
        if owners != [meta["uid"]] or data.get("target") != _target(change):
            raise NotThisRequests(
                "the state kept around the action is not this request's: nothing was restored"
            )
        try:
            return json.loads(data["object"])
        except (KeyError, ValueError) as e:
            raise NotThisRequests("the state kept around the action is unreadable") from e


def _target(change: KubernetesChange) -> str:
    return f"{change.kind_key} {change.namespace}/{change.name}"
