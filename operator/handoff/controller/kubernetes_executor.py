"""The Kubernetes executor: Handoff itself applies approved kubernetes.* actions, with its own
identity, after approval only, in the kinds and namespaces the policy allows. The object's
state before the change is kept in a ConfigMap beside the request (not in the request: objects
and annotations have size limits), so a rollback can put it back."""

import contextlib
import json
from typing import Any

from handoff import API_VERSION
from handoff.adapters.kube import Conflict, KubeApi, NotFound, resource_path
from handoff.domain.executors import KubernetesChange, diff
from handoff.domain.resources import RequestJSON

FIELD_MANAGER = "handoff-operator"
_VOLATILE = (
    "managedFields",
    "resourceVersion",
    "generation",
    "uid",
    "creationTimestamp",
    "selfLink",
)


def comparable(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a reviewer cares about in an object: labels, annotations, spec and data."""
    if obj is None:
        return None
    meta = obj.get("metadata") or {}
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items() if "kubernetes.io/" not in k
    }
    view = {"metadata": {"labels": meta.get("labels") or {}, "annotations": annotations}}
    for field in ("spec", "data", "stringData"):
        if field in obj:
            view[field] = obj[field]
    return view


class KubernetesExecutor:
    def __init__(self, api: KubeApi) -> None:
        self.api = api

    async def object_path(self, change: KubernetesChange) -> str:
        plural = await self.api.plural(change.api_version, change.kind)
        group, _, version = change.api_version.rpartition("/")
        return resource_path(group, version, plural, change.namespace, change.name)

    async def current(self, change: KubernetesChange) -> dict[str, Any] | None:
        try:
            return dict(await self.api.get(await self.object_path(change)))
        except NotFound:
            return None

    async def preview(self, change: KubernetesChange) -> str:
        """What would change, from a server-side dry run: one line per changed field."""
        before = await self.current(change)
        if change.operation == "delete":
            return "the object would be deleted" if before else "the object does not exist"
        after = await self._perform(change, dry_run=True)
        lines = diff(comparable(before), comparable(after))
        if before is None:
            lines.insert(0, "the object would be created")
        return "\n".join(lines)[:8000] or "no change"

    async def execute(self, body: RequestJSON, change: KubernetesChange) -> str:
        """Keep the previous state (once: a retry after a crash keeps the first), then apply."""
        before = await self.current(change)
        await self._keep(body, change, before)
        await self._perform(change, dry_run=False)
        return (
            f"{change.operation} {change.kind}/{change.name} in {change.namespace} done by Handoff"
        )

    async def restore(self, body: RequestJSON, change: KubernetesChange) -> str:
        kept = await self.api.get(self._kept_path(body))
        previous = json.loads(kept["data"]["object"])
        path = await self.object_path(change)
        current = await self.current(change)
        if previous is None:
            if current is not None:
                await self.api.delete(path)
            return f"{change.kind}/{change.name} did not exist before: deleted"
        restored = dict(previous)
        restored["metadata"] = {k: v for k, v in previous["metadata"].items() if k not in _VOLATILE}
        restored.pop("status", None)
        if current is None:
            collection = path.rsplit("/", 1)[0]
            await self.api.create(collection, restored)
            return f"{change.kind}/{change.name} re-created as it was"
        restored["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        await self.api.request("PUT", path, restored)
        return f"{change.kind}/{change.name} restored to its state before the action"

    async def _perform(self, change: KubernetesChange, *, dry_run: bool) -> dict[str, Any]:
        path = await self.object_path(change)
        params = {"dryRun": "All"} if dry_run else {}
        if change.operation in ("scale", "patch"):
            return dict(await self.api.merge_patch(path, dict(change.body), params or None))
        if change.operation == "apply":
            query = params | {"fieldManager": FIELD_MANAGER, "force": "true"}
            return dict(
                await self.api.request(
                    "PATCH", path, dict(change.body), "application/apply-patch+yaml", query
                )
            )
        await self.api.delete(path, params or None)
        return {}

    def _kept_path(self, body: RequestJSON) -> str:
        meta = body["metadata"]
        return resource_path(
            "", "v1", "configmaps", meta["namespace"], f"handoff-previous-{meta['uid']}"
        )

    async def _keep(
        self, body: RequestJSON, change: KubernetesChange, before: dict[str, Any] | None
    ) -> None:
        meta = body["metadata"]
        config_map = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": f"handoff-previous-{meta['uid']}",
                "namespace": meta["namespace"],
                "labels": {"app.kubernetes.io/managed-by": "handoff"},
                "ownerReferences": [{"apiVersion": API_VERSION, "kind": "ActionRequest",
                                     "name": meta["name"], "uid": meta["uid"]}],
            },
            "data": {
                "object": json.dumps(before),
                "target": f"{change.kind_key} {change.namespace}/{change.name}",
            },
        }  # fmt: skip
        # Kept by an earlier attempt already? That one is the state before the action: keep it.
        with contextlib.suppress(Conflict):
            collection = resource_path("", "v1", "configmaps", meta["namespace"])
            await self.api.create(collection, config_map)
