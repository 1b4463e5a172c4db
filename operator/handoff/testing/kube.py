"""An in-memory Kubernetes API for unit tests of the controller's orchestration: objects by
path, a resourceVersion per write, a guarded write refused with 409 when it is stale, and
injected errors (``fail``) for the calls a test names.

It answers the subset of ``handoff.adapters.kube.KubeApi`` the controller calls: get (an object
or a list), create (``generateName`` too), merge_patch (of an object or its ``/status``), apply,
request("DELETE") with a uid precondition, and delete. A SubjectAccessReview is answered by
``access`` (everything is allowed unless a test says otherwise) and not stored.
"""

import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from handoff.adapters.kube import Conflict, KubeError, NotFound


@dataclass
class Fault:
    method: str  # GET, POST, PATCH, APPLY, DELETE
    path: str  # the call's path ends with this
    error: KubeError
    times: int


def merged(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merged(out.get(key), value)
    return out


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}  # the object's path -> the object
        self.calls: list[tuple[str, str]] = []  # (method, path), in order
        self.faults: list[Fault] = []
        self._versions = itertools.count(1)
        self._uids = itertools.count(1)
        self.access: Callable[[dict[str, Any]], bool] = lambda _spec: True

    # -- setting up and looking ---------------------------------------------------------------

    def add(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """Store ``body`` at ``path`` (its collection path plus its name), as created."""
        body = copy.deepcopy(body)
        meta = body.setdefault("metadata", {})
        meta.setdefault("uid", f"uid-{next(self._uids)}")
        meta["resourceVersion"] = str(next(self._versions))
        self.objects[path] = body
        return copy.deepcopy(body)

    def fail(self, method: str, path: str, error: KubeError, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` on a path ending with ``path`` raise ``error``."""
        self.faults.append(Fault(method, path, error, times))

    def conflict(self, path: str, times: int = 1) -> None:
        self.fail("PATCH", path, Conflict(409, "the object has been modified"), times)

    def created(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects.values() if o.get("kind") == kind]

    def count(self, method: str, path: str = "") -> int:
        return sum(1 for m, p in self.calls if m == method and p.endswith(path))

    # -- the API ------------------------------------------------------------------------------

    async def get(self, path: str) -> Any:
        self._call("GET", path)
        if path in self.objects:
            return copy.deepcopy(self.objects[path])
        items = [copy.deepcopy(o) for p, o in sorted(self.objects.items()) if _in(p, path)]
        if items or _is_collection(path):
            return {"kind": "List", "metadata": {}, "items": items}
        raise NotFound(404, f"{path} not found")

    async def create(self, path: str, body: Any) -> Any:
        self._call("POST", path)
        body = copy.deepcopy(body)
        if path.endswith("/subjectaccessreviews"):
            return body | {"status": {"allowed": self.access(body.get("spec") or {})}}
        meta = body.setdefault("metadata", {})
        if not meta.get("name"):
            meta["name"] = f"{meta.get('generateName', 'x-')}{next(self._uids)}"
        item = f"{path}/{meta['name']}"
        if item in self.objects:
            raise KubeError(409, f"{meta['name']} already exists")
        return self.add(item, body)

    async def merge_patch(self, path: str, body: Any, params: Any = None) -> Any:
        self._call("PATCH", path)
        item = path.removesuffix("/status")
        if item not in self.objects:
            raise NotFound(404, f"{item} not found")
        current = self.objects[item]
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted is not None and wanted != current["metadata"]["resourceVersion"]:
            raise Conflict(409, "the object has been modified; please apply your changes")
        if path.endswith("/status"):
            body = {"status": body.get("status")}
        updated = merged(current, {k: v for k, v in body.items() if k != "metadata"})
        updated["metadata"]["resourceVersion"] = str(next(self._versions))
        self.objects[item] = updated
        return copy.deepcopy(updated)

    async def apply(self, body: dict[str, Any], manager: str = "handoff-operator") -> Any:
        meta = body["metadata"]
        path = f"apply/{body['kind']}/{meta.get('namespace', '')}/{meta['name']}"
        self._call("APPLY", path)
        return self.add(path, body)

    async def request(self, method: str, path: str, body: Any = None, **_: Any) -> Any:
        if method != "DELETE":
            raise NotImplementedError(method)
        return await self.delete(path, uid=((body or {}).get("preconditions") or {}).get("uid"))

    async def delete(self, path: str, params: Any = None, *, uid: str | None = None) -> Any:
        self._call("DELETE", path)
        if path not in self.objects:
            raise NotFound(404, f"{path} not found")
        if uid is not None and self.objects[path]["metadata"]["uid"] != uid:
            raise Conflict(409, "the uid precondition failed")
        return self.objects.pop(path)

    def _call(self, method: str, path: str) -> None:
        self.calls.append((method, path))
        for fault in self.faults:
            if fault.method == method and path.endswith(fault.path) and fault.times > 0:
                fault.times -= 1
                raise fault.error


def _is_collection(path: str) -> bool:
    parts = path.strip("/").split("/")
    # /api/v1/<plural>, /apis/<group>/<version>/<plural>, and the namespaced forms
    base = 2 if parts[0] == "api" else 3
    return len(parts) == base + 1 or (len(parts) == base + 3 and parts[base] == "namespaces")


def _in(item: str, collection: str) -> bool:
    """Whether ``item`` (an object's path) is in ``collection`` (a list path, namespaced or
    across namespaces)."""
    if not _is_collection(collection):
        return False
    if item.rsplit("/", 1)[0] == collection:
        return True
    parts, cparts = item.strip("/").split("/"), collection.strip("/").split("/")
    across = "namespaces" not in cparts and len(parts) > 4 and parts[-4] == "namespaces"
    return across and [*parts[:-4], parts[-2]] == cparts
