"""Filing the operator's own requests (a rollback, a post-incident review) under names it can
trust, and trusting a rollback only when it filed it.

The operator files ``<name>-rollback`` and ``<name>-pir``. Admission refuses those names to
everyone else, but a cluster installed without the admission policies, or one where a request
was filed under such a name before they existed, may hold a squatter there. So a name already
taken counts as filed only when the request under it is the operator's own (``same_filing``);
otherwise the operator files under a generated name, and says so.
"""

import logging
from dataclasses import dataclass
from typing import Any

from handoff import GROUP, REQUESTS, VERSION
from handoff.adapters.kube import Conflict, KubeApi, KubeError, NotFound, resource_path
from handoff.domain.filing import (
    is_name,
    label_value,
    name_taken,
    same_filing,
    squatter,
    under_generated_name,
)
from handoff.domain.resources import RequestJSON
from handoff.domain.rollback import untrusted_undo

log = logging.getLogger("handoff.operator")
SELF_REVIEW = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
_ATTEMPTS = 3


@dataclass(frozen=True)
class Filed:
    name: str  # where the request is
    fresh: bool  # filed now (False: found, filed before a restart or by another replica)
    warning: str | None = None  # the operator's name was taken first: what a reviewer should know


class Filer:
    def __init__(self, api: KubeApi) -> None:
        self.api = api
        self._user: str | None = None

    async def operator(self) -> str:
        """The operator's own user name, as the API server sees it (a SelfSubjectReview): the
        requested-by stamp on everything it files. Asked once; a KubeError while it cannot be
        learnt (the caller retries, as after any failed call)."""
        if self._user is None:
            body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
            try:
                review = await self.api.create(SELF_REVIEW, body)
            except KubeError as e:
                message = f"learning the operator's own user name: {e.message}"
                raise KubeError(e.status, message) from e
            user = ((review.get("status") or {}).get("userInfo") or {}).get("username", "")
            self._user = str(user)
        return self._user

    async def file(self, document: dict[str, Any], of: str, label: str, what: str) -> Filed:
        """File ``document`` (``what``, for the request ``of``, labelled ``label``=``of``) under
        its name. When that name is taken by anything but the operator's own copy, find the copy
        filed before under a generated name, or file one."""
        meta = document["metadata"]
        namespace, taken = meta["namespace"], meta["name"]
        collection = resource_path(GROUP, VERSION, REQUESTS, namespace)
        operator = await self.operator()
        found = await self._create_or_get(collection, document)
        if found is None:
            return Filed(taken, fresh=True)
        if same_filing(found, document, operator):
            return Filed(taken, fresh=False)
        by = squatter(found)
        earlier = await self._earlier(collection, document, label_value(of), label, operator)
        if earlier is not None:
            log.info(
                "%s/%s: its %s is %s, filed before under a generated name (%s was filed by %s)",
                namespace, of, what, earlier, taken, by,
            )  # fmt: skip
            return Filed(earlier, fresh=False)
        for _ in range(_ATTEMPTS):
            try:
                created = await self.api.create(collection, under_generated_name(document))
            except Conflict:  # a generated name that happened to be taken: draw another
                continue
            name = str(created["metadata"]["name"])
            log.warning(
                "%s/%s: %s was taken by a request filed by %s; filed the %s as %s",
                namespace, of, taken, by, what, name,
            )  # fmt: skip
            return Filed(name, fresh=True, warning=name_taken(taken, by, what, name))
        raise KubeError(409, f"could not file the {what} of {namespace}/{of}; will retry")

    async def _create_or_get(self, collection: str, document: dict[str, Any]) -> Any:
        """None when ``document`` is filed now, else what is already under its name."""
        name = document["metadata"]["name"]
        for _ in range(_ATTEMPTS):
            try:
                await self.api.create(collection, document)
                return None
            except Conflict:
                pass
            try:
                return await self.api.get(f"{collection}/{name}")
            except NotFound:  # deleted meanwhile: the name is free again
                continue
        raise KubeError(409, f"{name} keeps appearing and disappearing; will retry")

    async def _earlier(
        self, collection: str, document: dict[str, Any], value: str, label: str, operator: str
    ) -> str | None:
        listing = await self.api.request(
            "GET", collection, params={"labelSelector": f"{label}={value}"}
        )
        for item in listing.get("items") or []:
            if same_filing(item, document, operator):
                return str(item["metadata"]["name"])
        return None

    async def undone(self, undo: RequestJSON) -> tuple[RequestJSON | None, str | None]:
        """The request ``undo`` rolls back (None when it is gone), and why ``undo`` may not mark
        it RolledBack (None when it may)."""
        meta, target = undo["metadata"], undo["spec"].get("rollbackOf")
        original: RequestJSON | None = None
        if is_name(target):
            path = resource_path(GROUP, VERSION, REQUESTS, meta["namespace"], str(target))
            try:
                original = await self.api.get(path)
            except NotFound:
                original = None
        return original, untrusted_undo(undo, original, await self.operator())
