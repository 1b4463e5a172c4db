"""The Kubernetes executor: Handoff itself applies approved kubernetes.* actions, after approval
only, as the policy's own executor ServiceAccount (``controller/executor_access.py``), which
holds exactly the kinds and namespaces the policy lists: never with the operator's identity.

Every path is built from the change's validated parts, one escaped segment each, and every
object the API server answers with must be the one asked for. The object's state before the
change is kept in a ConfigMap beside the request (not in the request: objects and annotations
have size limits), so a rollback can put it back.
"""

import contextlib
import json
from typing import Any

from handoff import API_VERSION
from handoff.adapters.kube import Conflict, KubeApi, KubeError, NotFound, resource_path
from handoff.controller.executor_access import (
    executor_user,
    review_path,
    service_account_review,
)
from handoff.domain.executors import KEPT_PREFIX, KubernetesChange, returned_problem
from handoff.domain.kubediff import preview
from handoff.domain.kubenames import name_problem
from handoff.domain.resources import RequestJSON

FIELD_MANAGER = "handoff-operator"
MANAGED_BY = {"app.kubernetes.io/managed-by": "handoff"}
_VOLATILE = (
    "managedFields",
    "resourceVersion",
    "generation",
    "uid",
    "creationTimestamp",
    "selfLink",
)


class Refused(KubeError):
    """The executor would not go on: what the API server answered, or what is kept, is not
    what the request asked for."""

    def __init__(self, message: str) -> None:
        super().__init__(0, message)


class KubernetesExecutor:
    def __init__(self, api: KubeApi) -> None:
        self.api = api  # the operator's own: discovery, access reviews and the kept state only

    def acting(self, body: RequestJSON) -> KubeApi:
        """The API as the executor of the policy that decided the request."""
        policy = (body.get("status") or {}).get("policy")
        if name_problem(policy, "status.policy") is not None:
            raise Refused("the request names no policy whose executor could act")
        return self.api.impersonating(executor_user(body["metadata"]["namespace"], str(policy)))

    async def object_path(self, change: KubernetesChange, *, collection: bool = False) -> str:
        plural = await self.api.plural(change.api_version, change.kind)
        name = None if collection else change.name
        return resource_path(change.group, change.version, plural, change.namespace, name)

    async def preview(self, body: RequestJSON, change: KubernetesChange) -> str:
        """What would change, from a server-side dry run made as the executor: one line per
        changed field, with values only when the agent could read the object itself."""
        acting = self.acting(body)
        path = await self.object_path(change)
        before = await self._current(acting, change, path)
        if change.operation == "delete":
            return "the object would be deleted" if before else "the object does not exist"
        agent = str(body["spec"].get("agent", ""))
        try:
            after = await self._perform(acting, change, path, dry_run=True)
        except KubeError as e:
            # The API server's answer quotes the object as it would be (its labels, a whole
            # template for some kinds): values of the stored object, so only when the agent
            # may read them.
            if await self._agent_reads(body, change):
                raise
            raise KubeError(
                e.status,
                f"the API server refused it (HTTP {e.status}); its answer is not shown here"
                f" because it can quote values of {change.kind} {change.namespace}/{change.name},"
                f" which {agent} may not read and this preview is readable by {agent}. Try the"
                " change with kubectl --dry-run=server to see why",
            ) from e
        if await self._agent_reads(body, change):
            return preview(before, after, values=True)
        why = (
            f"{agent} may not read {change.kind} {change.namespace}/{change.name}, and it can read"
            " this preview: it shows which fields change, not their values"
        )
        return preview(before, after, values=False, hidden_because=why)

    async def execute(self, body: RequestJSON, change: KubernetesChange) -> str:
        """Keep the previous state (once: a retry after a crash keeps the first), then apply."""
        acting = self.acting(body)
        path = await self.object_path(change)
        before = await self._current(acting, change, path)
        await self._keep(body, change, before)
        await self._perform(acting, change, path, dry_run=False)
        return (
            f"{change.operation} {change.kind}/{change.name} in {change.namespace} done by Handoff"
        )

    async def restore(self, body: RequestJSON, change: KubernetesChange) -> str:
        previous = await self._kept(body, change)
        acting = self.acting(body)
        path = await self.object_path(change)
        current = await self._current(acting, change, path)
        if previous is None:
            if current is not None:
                await acting.delete(path)
            return f"{change.kind}/{change.name} did not exist before: deleted"
        restored = dict(previous)
        restored["metadata"] = {k: v for k, v in previous["metadata"].items() if k not in _VOLATILE}
        restored.pop("status", None)
        if current is None:
            collection = await self.object_path(change, collection=True)
            self._check(change, await acting.create(collection, restored))
            return f"{change.kind}/{change.name} re-created as it was"
        restored["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        self._check(change, await acting.request("PUT", path, restored))
        return f"{change.kind}/{change.name} restored to its state before the action"

    async def _current(
        self, acting: KubeApi, change: KubernetesChange, path: str
    ) -> dict[str, Any] | None:
        try:
            return self._check(change, await acting.get(path))
        except NotFound:
            return None

    async def _perform(
        self, acting: KubeApi, change: KubernetesChange, path: str, *, dry_run: bool
    ) -> dict[str, Any]:
        params = {"dryRun": "All"} if dry_run else {}
        if change.operation in ("scale", "patch"):
            return self._check(
                change, await acting.merge_patch(path, dict(change.body), params or None)
            )
        if change.operation == "apply":
            manifest = dict(change.body)
            manifest["metadata"] = dict(manifest["metadata"]) | {"namespace": change.namespace}
            query = params | {"fieldManager": FIELD_MANAGER, "force": "true"}
            answer = await acting.request(
                "PATCH", path, manifest, "application/apply-patch+yaml", query
            )
            return self._check(change, answer)
        await acting.delete(path, params or None)
        return {}

    @staticmethod
    def _check(change: KubernetesChange, answer: Any) -> dict[str, Any]:
        problem = returned_problem(change, answer)
        if problem is not None:
            raise Refused(problem)
        return dict(answer)

    async def _agent_reads(self, body: RequestJSON, change: KubernetesChange) -> bool:
        """May the agent that filed the request get the object itself? (a SubjectAccessReview)"""
        plural = await self.api.plural(change.api_version, change.kind)
        attributes = {"verb": "get", "group": change.group, "version": change.version,
                      "resource": plural, "namespace": change.namespace,
                      "name": change.name}  # fmt: skip
        agent = str(body["spec"].get("agent", ""))
        review = service_account_review(body["metadata"]["namespace"], agent, attributes)
        try:
            answer = await self.api.create(review_path(), review)
        except KubeError:
            return False
        return bool((answer.get("status") or {}).get("allowed"))

    def _kept_path(self, body: RequestJSON) -> str:
        meta = body["metadata"]
        return resource_path("", "v1", "configmaps", meta["namespace"], KEPT_PREFIX + meta["uid"])

    @staticmethod
    def _target(change: KubernetesChange) -> str:
        return f"{change.kind_key} {change.namespace}/{change.name}"

    async def _kept(self, body: RequestJSON, change: KubernetesChange) -> dict[str, Any] | None:
        """The state kept before the action, once it is sure to be the operator's own record
        of this request's object."""
        kept = await self.api.get(self._kept_path(body))
        owners = [o.get("uid") for o in kept["metadata"].get("ownerReferences") or []]
        data = kept.get("data") or {}
        if owners != [body["metadata"]["uid"]] or data.get("target") != self._target(change):
            raise Refused("the state kept before the action is not this request's: not restored")
        previous = json.loads(data["object"])
        if previous is not None:
            self._check(change, previous)
        return None if previous is None else dict(previous)

    async def _keep(
        self, body: RequestJSON, change: KubernetesChange, before: dict[str, Any] | None
    ) -> None:
        meta = body["metadata"]
        config_map = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": KEPT_PREFIX + meta["uid"],
                "namespace": meta["namespace"],
                "labels": MANAGED_BY,
                "ownerReferences": [{"apiVersion": API_VERSION, "kind": "ActionRequest",
                                     "name": meta["name"], "uid": meta["uid"]}],
            },
            "data": {"object": json.dumps(before), "target": self._target(change)},
        }  # fmt: skip
        # Kept by an earlier attempt already? That one is the state before the action: keep it.
        with contextlib.suppress(Conflict):
            collection = resource_path("", "v1", "configmaps", meta["namespace"])
            await self.api.create(collection, config_map)
