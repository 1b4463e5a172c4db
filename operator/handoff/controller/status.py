"""Writing a request's status: every write is a JSON merge patch guarded by the resourceVersion
the decision was made from, so a write made on a stale view is refused (409) instead of
overwriting what changed meanwhile (a review, another operator)."""

from typing import Any, cast

from handoff import GROUP, REQUESTS, VERSION
from handoff.adapters.kube import KubeApi, resource_path
from handoff.domain.resources import RequestJSON

ATTEMPTS = 8  # reads and writes of one request in a row that may conflict before giving up


def request_path(namespace: str, name: str) -> str:
    return resource_path(GROUP, VERSION, REQUESTS, namespace, name)


def status_path(body: RequestJSON) -> str:
    meta = body["metadata"]
    return request_path(meta["namespace"], meta["name"]) + "/status"


class StatusWriter:
    def __init__(self, api: KubeApi) -> None:
        self.api = api

    async def read(self, namespace: str, name: str) -> RequestJSON:
        return cast(RequestJSON, await self.api.get(request_path(namespace, name)))

    async def write(self, body: RequestJSON, patch: dict[str, Any]) -> RequestJSON:
        """Patch ``status`` of the version in ``body``; Conflict when it is no longer current."""
        document = {"metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
                    "status": patch}  # fmt: skip
        return cast(RequestJSON, await self.api.merge_patch(status_path(body), document))
