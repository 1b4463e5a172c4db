"""The Kubernetes executor: Handoff itself applies approved kubernetes.* actions, after approval
only, as the policy's own executor ServiceAccount (``controller/executor_access.py``), which
holds exactly the kinds and namespaces the policy lists: never with the operator's identity.

Every path is built from the change's validated parts, one escaped segment each, and every
object the API server answers with must be the one asked for. The object's state before and
after the change is kept beside the request (``controller/kept_state.py``), so a rollback can
put back what the action changed, and only that (``domain/kuberestore.py``): a field changed
since is never overwritten; the rollback is refused instead, naming it.

The executor makes no dry run: what reviewers see of the live object they compute with their
own rights (``review/livediff.py``), and ``status.preview`` comes from the spec alone.
"""

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from handoff.adapters.kube import Conflict, KubeApi, KubeError, NotFound, resource_path
from handoff.controller.executor_access import executor_user
from handoff.controller.kept_state import AFTER, BEFORE, UNKNOWN, KeptState
from handoff.domain.executors import KubernetesChange, returned_problem
from handoff.domain.kubemerge import after_change
from handoff.domain.kubenames import name_problem
from handoff.domain.kuberestore import changed_fields, names, plan
from handoff.domain.resources import RequestJSON

FIELD_MANAGER = "handoff-"  # + the request's uid: each request applies as its own manager
_VOLATILE = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp",
             "selfLink")  # fmt: skip
_ATTEMPTS = 5  # re-reads when the object moves while the rollback is written
_MESSAGE_MAX = 1500


class Refused(KubeError):
    """The executor would not go on: what the API server answered, or what is kept, is not
    what the request asked for, or a rollback would undo a later change."""

    def __init__(self, message: str) -> None:
        super().__init__(0, message[:_MESSAGE_MAX])


class KubernetesExecutor:
    def __init__(self, api: KubeApi) -> None:
        self.api = api  # the operator's own: discovery and the kept state only
        self.kept = KeptState(api)

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

    async def execute(self, body: RequestJSON, change: KubernetesChange) -> str:
        """Keep the previous state (once: a retry after a crash keeps the first), apply, then
        keep the state the action left."""
        acting = self.acting(body)
        path = await self.object_path(change)
        before = await self._current(acting, change, path)
        await self.kept.keep(body, change, BEFORE, before)
        after = await self._perform(acting, change, path, FIELD_MANAGER + body["metadata"]["uid"])
        await self.kept.keep(body, change, AFTER, after)
        return (
            f"{change.operation} {change.kind}/{change.name} in {change.namespace} done by Handoff"
        )

    async def restore(self, body: RequestJSON, change: KubernetesChange) -> str:
        """Put back what the action changed, if nothing changed it since; else refuse."""
        before = await self.kept.kept(body, change, BEFORE)
        if before is UNKNOWN:
            raise Refused("no state was kept before the action: there is nothing to restore")
        after = await self.kept.kept(body, change, AFTER)
        if after is UNKNOWN:  # kept by an older version: what the change makes of the object
            after = after_change(before, change)
        if before is not None:
            self._check(change, before)
        undo = _Undo(self.acting(body), change, await self.object_path(change), before, after)
        last: _Moved | None = None
        for _ in range(_ATTEMPTS):
            current = await self._current(undo.acting, change, undo.path)
            if last is not None and current is not None and _version(current) == last.version:
                raise Refused(f"the API server refused to restore {undo.target}: {last.message}")
            if current is not None and after is not None and _uid(after) not in ("", _uid(current)):
                raise Refused(  # the same values, maybe; another object, a later change's
                    f"{undo.target} was deleted and created again since the action: it is"
                    " another object, and the rollback would undo that later change. Restore"
                    " by hand what should be restored"
                )
            try:
                if current is None:
                    return await self._recreate(undo)
                if after is None:
                    return _replaced_since(undo, current)
                if before is None:
                    return await self._delete_created(undo, current)
                return await self._restore_fields(undo, current)
            except _Moved as e:
                last = e
        raise Refused(
            f"{undo.target} kept changing while the rollback was being made: nothing was"
            " restored. Ask again, or restore it by hand"
        )

    async def _recreate(self, undo: "_Undo") -> str:
        """The object is gone: the action deleted it (re-create it), or someone did since."""
        if undo.after is not None:
            raise Refused(
                f"{undo.target} was deleted since the action: it is not re-created, which would"
                " undo that later deletion. Re-create it by hand if it should exist"
            )
        if undo.before is None:
            return f"{undo.target} does not exist, as before the action: nothing to undo"
        restored = dict(undo.before)
        restored["metadata"] = {
            k: v for k, v in undo.before["metadata"].items() if k not in _VOLATILE
        }
        restored.pop("status", None)
        collection = await self.object_path(undo.change, collection=True)
        created = await _write(undo.acting.create(collection, restored), {})  # 409: it is back
        self._check(undo.change, created)
        return f"{undo.target} re-created as it was"

    async def _delete_created(self, undo: "_Undo", current: dict[str, Any]) -> str:
        """The action created the object: delete it, if nothing changed it since."""
        since = changed_fields(undo.after, current)
        if since:
            raise Refused(_changed_since(undo.target, since, "deleting it"))
        conditions = {"uid": current["metadata"].get("uid"), "resourceVersion": _version(current)}
        options = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": conditions}
        await _write(undo.acting.request("DELETE", undo.path, options), current)
        return f"{undo.target} did not exist before the action, nor changed since: deleted"

    async def _restore_fields(self, undo: "_Undo", current: dict[str, Any]) -> str:
        restore = plan(undo.before, undo.after, current)
        if restore.changed_since:
            raise Refused(_changed_since(undo.target, restore.changed_since, "restoring"))
        fields = names(restore.restored)
        if restore.already:
            return f"{undo.target}: {fields} hold their values before the action already"
        if not restore.ops:
            return f"{undo.target}: the action changed no field a rollback restores"
        guard = {"op": "test", "path": "/metadata/resourceVersion", "value": _version(current)}
        answer = await _write(undo.acting.json_patch(undo.path, [guard, *restore.ops]), current)
        self._check(undo.change, answer)
        return f"{undo.target}: restored {fields} as before the action; nothing else was written"

    async def _current(
        self, acting: KubeApi, change: KubernetesChange, path: str
    ) -> dict[str, Any] | None:
        try:
            return self._check(change, await acting.get(path))
        except NotFound:
            return None

    async def _perform(
        self, acting: KubeApi, change: KubernetesChange, path: str, manager: str
    ) -> dict[str, Any] | None:
        """Make the change; the object as it left it (None: deleted).

        A server-side apply removes the fields its field manager applied before and applies no
        more: with one manager for every request, an approved "add a label" that omits what an
        earlier request set would remove that too, while every reviewer's diff (which adds only
        what the manifest says) showed a label. Each request is its own manager, which owns
        nothing before it applies, so an apply only ever sets what its manifest says."""
        if change.operation in ("scale", "patch"):
            return self._check(change, await acting.merge_patch(path, dict(change.body)))
        if change.operation == "apply":
            manifest = dict(change.body)
            manifest["metadata"] = dict(manifest["metadata"]) | {"namespace": change.namespace}
            query = {"fieldManager": manager, "force": "true"}
            answer = await acting.request(
                "PATCH", path, manifest, "application/apply-patch+yaml", query
            )
            return self._check(change, answer)
        await acting.delete(path)
        return None

    @staticmethod
    def _check(change: KubernetesChange, answer: Any) -> dict[str, Any]:
        problem = returned_problem(change, answer)
        if problem is not None:
            raise Refused(problem)
        return dict(answer)


@dataclass(frozen=True)
class _Undo:
    acting: KubeApi
    change: KubernetesChange
    path: str
    before: Any  # the object before the action, None when there was none
    after: Any  # as the action left it, None when it deleted it

    @property
    def target(self) -> str:
        return f"{self.change.kind}/{self.change.name}"


def _replaced_since(undo: _Undo, current: dict[str, Any]) -> str:
    """The action deleted the object, and it exists again."""
    if not changed_fields(undo.before, current):
        return f"{undo.target} is as it was before the action: restored already"
    raise Refused(
        f"{undo.target} was created again since the action deleted it: it is not replaced,"
        " which would undo that later change. Compare and restore it by hand"
    )


async def _write(call: Awaitable[Any], current: dict[str, Any]) -> Any:
    """A write guarded by the object's version: if the object moved (a failed test is a 422, a
    failed precondition a 409), it is read again and judged again."""
    try:
        return await call
    except KubeError as e:
        if isinstance(e, Conflict) or e.status == 422:
            raise _Moved(e, _version(current)) from e
        raise


class _Moved(KubeError):
    """A guarded write failed: the object may have moved since it was read."""

    def __init__(self, error: KubeError, version: str) -> None:
        super().__init__(error.status, error.message)
        self.version = version


def _uid(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("uid", ""))


def _version(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


def _changed_since(target: str, fields: tuple[str, ...], undoing: str) -> str:
    return (
        f"the rollback changed nothing: {names(fields)} of {target} changed since the action,"
        f" and {undoing} would undo that later change. Restore by hand what should be restored"
    )
