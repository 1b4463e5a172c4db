"""Reviewers' calls to the API server, made with the reviewer's own credentials.

RBAC and the admission policies judge the person; this client only makes their refusals read
as one clear sentence.
"""

import asyncio
import re
from collections.abc import Sequence
from typing import Any

from handoff import GROUP, REQUESTS, VERSION
from handoff.adapters.kube import KubeApi, KubeError, NotFound, resource_path

_ADMISSION = re.compile(
    r"(?:Validating|Mutating)AdmissionPolicy '[^']+' with binding '[^']+' denied request: "
)


class ReviewError(Exception):
    """A refusal in one sentence, safe to show to the person."""


def plain(error: KubeError) -> str:
    """The API server's refusal without the machinery around it."""
    message = _ADMISSION.sub("", error.message)
    if error.status == 403 and "is forbidden" in message and "denied request" not in error.message:
        who = re.search(r'User "([^"]+)"', message)
        return f"{who.group(1) if who else 'You'} may not do this: {message.split(': ', 1)[-1]}"
    return message


class ReviewClient:
    def __init__(self, api: KubeApi) -> None:
        self.api = api

    async def whoami(self) -> tuple[str, list[str]]:
        """The caller's user name and groups, as the API server sees them (SelfSubjectReview)."""
        review = await self.api.create(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )
        info = (review.get("status") or {}).get("userInfo") or {}
        return str(info.get("username", "")), list(info.get("groups") or [])

    async def can(
        self, verb: str, resource: str, namespace: str, name: str = "", subresource: str = ""
    ) -> bool:
        attributes = {"group": GROUP, "resource": resource, "verb": verb, "namespace": namespace}
        if name:
            attributes["name"] = name
        if subresource:
            attributes["subresource"] = subresource
        review = await self.api.create(
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
             "spec": {"resourceAttributes": attributes}},
        )  # fmt: skip
        return bool((review.get("status") or {}).get("allowed"))

    async def requests(
        self, namespaces: Sequence[str] | None, *, skip_forbidden: bool = False
    ) -> list[dict[str, Any]]:
        """Requests in these namespaces (None: all, which needs a cluster-wide list right).
        A namespace the caller may not read is an error, or skipped with ``skip_forbidden``."""
        if namespaces is None:
            return await self._list(resource_path(GROUP, VERSION, REQUESTS))
        found: list[dict[str, Any]] = []
        for namespace in namespaces:
            try:
                found += await self._list(resource_path(GROUP, VERSION, REQUESTS, namespace))
            except ReviewError:
                if not skip_forbidden:
                    raise
        return found

    async def _list(self, path: str) -> list[dict[str, Any]]:
        try:
            listing = await self.api.get(path)
        except KubeError as e:
            raise ReviewError(plain(e)) from e
        return list(listing.get("items") or [])

    async def get(self, namespace: str, name: str) -> dict[str, Any]:
        try:
            return dict(
                await self.api.get(resource_path(GROUP, VERSION, REQUESTS, namespace, name))
            )
        except NotFound as e:
            raise ReviewError(f"there is no request {name} in {namespace}") from e
        except KubeError as e:
            raise ReviewError(plain(e)) from e

    async def review(
        self,
        namespace: str,
        name: str,
        reviewer: str,
        decision: str,
        *,
        acknowledged: Sequence[str] = (),
        comment: str = "",
        after_decision: bool = False,
        break_glass: bool = False,
        once: bool = False,
        stage: str | None = None,
    ) -> dict[str, Any]:
        """Append one review through the status subresource; retry if the request changed.
        ``once``: refuse when the reviewer's same decision is already there (a replayed or
        repeated submission), checked on the resourceVersion the patch is guarded by. A
        request with approval stages is reviewed at ``stage`` (the stage the person was shown;
        None: the open one), which admission takes only while it is open."""
        entry: dict[str, Any] = {"reviewer": reviewer, "decision": decision}
        if break_glass:
            entry["breakGlass"] = True
        if acknowledged:
            entry["acknowledged"] = list(acknowledged)
        if comment:
            entry["comment"] = comment
        path = resource_path(GROUP, VERSION, REQUESTS, namespace, name) + "/status"
        for _ in range(5):
            body = await self.get(namespace, name)
            status = body.get("status") or {}
            if status.get("decision") and not after_decision:
                d = status["decision"]
                raise ReviewError(
                    f"{name} was already decided: {d.get('outcome')} ({d.get('reason')})"
                )
            if "reviews" not in status and not after_decision:
                raise ReviewError(
                    f"{name} is not waiting for reviews (phase {status.get('phase', 'Pending')})"
                )
            if once and any(
                isinstance(r, dict) and r.get("reviewer") == reviewer
                and r.get("decision") == decision
                for r in status.get("reviews") or []
            ):  # fmt: skip
                done = "approved" if decision == "Approve" else "denied"
                raise ReviewError(f"{reviewer} already {done} {name}; nothing more was written.")
            if status.get("stages") and not after_decision:
                entry["stage"] = stage or status.get("stage") or ""
            ops = [
                {
                    "op": "test",
                    "path": "/metadata/resourceVersion",
                    "value": body["metadata"]["resourceVersion"],
                },
                {"op": "add", "path": "/status/reviews/-", "value": entry}
                if "reviews" in status
                else {"op": "add", "path": "/status/reviews", "value": [entry]},
            ]
            try:
                return dict(await self.api.json_patch(path, ops))
            except KubeError as e:
                if e.status == 409 or (e.status == 422 and "test" in e.message.lower()):
                    await asyncio.sleep(0.2)
                    continue
                raise ReviewError(plain(e)) from e
        raise ReviewError(f"{name} kept changing while the review was being written; try again")
