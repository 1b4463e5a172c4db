"""The Filer against a fake API server: where the operator's own requests end up when their
names are free, taken by its own copy, taken by a squatter, or change under it."""

import asyncio
import itertools
from typing import Any, cast

import pytest
from handoff.adapters.kube import Conflict, KubeApi, KubeError, NotFound
from handoff.controller.filing import Filer
from handoff.domain.filing import REQUESTED_BY, ROLLBACK_OF
from handoff.domain.model import Review
from handoff.domain.rollback import rollback_request

OPERATOR = "system:serviceaccount:handoff-system:handoff-operator"
AGENT_USER = "system:serviceaccount:agents:payments-agent"
COLLECTION = "/apis/handoff.dev/v1alpha1/namespaces/agents/actionrequests"
ORIGINAL = {
    "metadata": {"name": "crm-1", "namespace": "agents", "uid": "u-1"},
    "spec": {"agent": "payments-agent", "action": "crm.update", "target": "crm:42",
             "rollback": {"description": "undo", "action": "crm.update"}},
}  # fmt: skip
UNDO = rollback_request(ORIGINAL, Review("alice", "Rollback", frozenset(), ""))


class FakeApi:
    """Requests by name, stamped with whoever the fake says is calling."""

    def __init__(self, *, whoami: str | Exception = OPERATOR) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.whoami = whoami
        self.reviews = 0
        self.vanish: set[str] = set()  # taken at create, gone at get (deleted meanwhile)
        self.collide = 0  # generated names already taken, this many times
        self._suffix = itertools.count()

    def put(self, body: dict[str, Any], by: str) -> None:
        meta = body["metadata"] | {"annotations": {REQUESTED_BY: by}}
        self.objects[meta["name"]] = {**body, "metadata": meta}

    async def create(self, path: str, body: dict[str, Any]) -> Any:
        if path.endswith("selfsubjectreviews"):
            self.reviews += 1
            if isinstance(self.whoami, Exception):
                raise self.whoami
            return {"status": {"userInfo": {"username": self.whoami}}}
        meta = body["metadata"]
        if "generateName" in meta:
            if self.collide:
                self.collide -= 1
                raise Conflict(409, "already exists")
            name = f"{meta['generateName']}{next(self._suffix):05d}"
            meta = {k: v for k, v in meta.items() if k != "generateName"} | {"name": name}
            body = {**body, "metadata": meta}
        name = meta["name"]
        if name in self.objects or name in self.vanish:
            raise Conflict(409, f"{name} already exists")
        self.put(body, OPERATOR)
        return self.objects[name]

    async def get(self, path: str) -> Any:
        name = path.rsplit("/", 1)[1]
        if name in self.vanish:
            self.vanish.discard(name)
            raise NotFound(404, "gone")
        if name not in self.objects:
            raise NotFound(404, "not found")
        return self.objects[name]

    async def request(self, method: str, path: str, params: dict[str, str]) -> Any:
        assert (method, path) == ("GET", COLLECTION)
        key, value = params["labelSelector"].split("=")
        return {"items": [o for o in self.objects.values()
                          if o["metadata"].get("labels", {}).get(key) == value]}  # fmt: skip


def filing(api: FakeApi) -> Any:
    filer = Filer(cast(KubeApi, api))
    return asyncio.run(filer.file(UNDO, "crm-1", ROLLBACK_OF, "rollback"))


def test_a_free_name_is_filed_under_that_name() -> None:
    api = FakeApi()
    filed = filing(api)
    assert (filed.name, filed.fresh, filed.warning) == ("crm-1-rollback", True, None)


def test_its_own_copy_under_the_name_is_found_again() -> None:
    api = FakeApi()
    api.put(UNDO, OPERATOR)
    filed = filing(api)
    assert (filed.name, filed.fresh, filed.warning) == ("crm-1-rollback", False, None)


def test_a_squatter_is_left_alone_and_the_request_filed_under_a_generated_name() -> None:
    api = FakeApi()
    api.put(UNDO, AGENT_USER)  # a perfect copy, but the agent filed it
    filed = filing(api)
    assert filed.name == "crm-1-rollback-00000"
    assert filed.fresh
    assert filed.warning is not None
    assert f"crm-1-rollback is not the rollback Handoff files: it was filed by {AGENT_USER}" in (
        filed.warning
    )
    assert api.objects["crm-1-rollback"]["metadata"]["annotations"][REQUESTED_BY] == AGENT_USER
    # Again (a restart): the generated copy is found, nothing is filed twice.
    again = filing(api)
    assert (again.name, again.fresh, again.warning) == ("crm-1-rollback-00000", False, None)
    assert len(api.objects) == 2


def test_a_generated_name_already_taken_is_drawn_again() -> None:
    api = FakeApi()
    api.put(UNDO, AGENT_USER)
    api.collide = 2
    assert filing(api).name == "crm-1-rollback-00000"
    api = FakeApi()
    api.put(UNDO, AGENT_USER)
    api.collide = 3
    with pytest.raises(KubeError, match="could not file the rollback of agents/crm-1"):
        filing(api)


def test_a_squatter_deleted_meanwhile_frees_the_name() -> None:
    api = FakeApi()
    api.vanish.add("crm-1-rollback")
    filed = filing(api)
    assert (filed.name, filed.fresh) == ("crm-1-rollback", True)


def test_the_operators_name_is_asked_once_and_a_failure_is_retried() -> None:
    api = FakeApi(whoami=KubeError(503, "unavailable"))
    with pytest.raises(KubeError, match="learning the operator's own user name: unavailable"):
        filing(api)
    assert api.objects == {}  # nothing filed while it cannot judge what it finds
    api.whoami = OPERATOR
    filer = Filer(cast(KubeApi, api))
    asyncio.run(filer.file(UNDO, "crm-1", ROLLBACK_OF, "rollback"))
    asyncio.run(filer.file(UNDO, "crm-1", ROLLBACK_OF, "rollback"))
    assert api.reviews == 2  # one failed, then one for this filer


def test_an_undo_naming_no_plain_request_is_not_looked_up() -> None:
    api = FakeApi()
    api.put(ORIGINAL | {"status": {"rollback": {"request": "x"}}}, AGENT_USER)
    undo = {**UNDO, "spec": UNDO["spec"] | {"rollbackOf": "../crm-1"}}
    api.put(undo, OPERATOR)
    stamped = cast(Any, api.objects["crm-1-rollback"])
    original, problem = asyncio.run(Filer(cast(KubeApi, api)).undone(stamped))
    assert original is None
    assert problem is not None
    assert "is not the name of a request" in problem
