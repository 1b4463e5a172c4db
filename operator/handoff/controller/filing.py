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
_GENERATE_ATTEMPTS = 3


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
        requested-by stamp on everything it files. Empty when it cannot be learnt; then nothing
        found is taken for the operator's, and rollbacks are not marked done."""
        if self._user is None:
            body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
            try:
                review = await self.api.create(SELF_REVIEW, body)
            except KubeError as e:
                log.warning("could not learn the operator's own user name: %s", e.message)
                return ""
            self._user = str(
                ((review.get("status") or {}).get("userInfo") or {}).get("username", "")
            )
        return self._user

    async def file(self, document: dict[str, Any], of: str, label: str, what: str) -> Filed:
        """File ``document`` (``what``, for the request ``of``, labelled ``label``=``of``) under
        its name. When that name is taken by anything but the operator's own copy, find the copy
        filed before under a generated name, or file one."""
        meta = document["metadata"]
        namespace, taken = meta["namespace"], meta["name"]
        collection = resource_path(GROUP, VERSION, REQUESTS, namespace)
        try:
            await self.api.create(collection, document)
            return Filed(taken, fresh=True)
        except Conflict:
            pass
        operator = await self.operator()
        try:
            found = await self.api.get(f"{collection}/{taken}")
        except NotFound:  # deleted meanwhile: the next pass files it under its own name
            raise KubeError(
                409, f"{namespace}/{taken} was deleted while filing; will retry"
            ) from None
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
        for _ in range(_GENERATE_ATTEMPTS):
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
