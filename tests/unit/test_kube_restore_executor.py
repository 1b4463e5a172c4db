"""The executor's rollback loop against a fake API server: an object that moves while the
rollback is written is read and judged again; a refusal that is no race is said as such; the
state kept for another request is never restored."""

import asyncio
import copy
import json
import re
from typing import Any, cast

import jsonpatch
import pytest
from handoff.adapters.kube import KubeApi, KubeError, NotFound
from handoff.controller.kubernetes_executor import KubernetesExecutor, Refused
from handoff.domain.executors import KubernetesChange

NS = "agents"
PATH = f"/apis/apps/v1/namespaces/{NS}/deployments/web"
KEPT = f"/api/v1/namespaces/{NS}/configmaps/handoff-previous-u-1"
REQUEST = {"metadata": {"name": "scale-1", "namespace": NS, "uid": "u-1"},
           "spec": {"agent": "payments-agent"}, "status": {"policy": "payments"}}  # fmt: skip
CHANGE = KubernetesChange("scale", "apps/v1", "Deployment", NS, "web", {"spec": {"replicas": 3}})


def web(replicas: int, version: int) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": NS, "resourceVersion": str(version)},
            "spec": {"replicas": replicas}}  # fmt: skip


def kept(state: dict[str, Any], owner: str = "u-1") -> dict[str, Any]:
    return {"metadata": {"ownerReferences": [{"uid": owner}]},
            "data": {"object": json.dumps(state), "target": f"apps/v1/Deployment {NS}/web"}}  # fmt: skip


class FakeApi:
    def __init__(self, current: dict[str, Any], owner: str = "u-1") -> None:
        self.objects = {PATH: current, KEPT: kept(web(1, 1), owner),
                        KEPT + "-after": kept(web(3, 2), owner)}  # fmt: skip
        self.before_patch: list[dict[str, Any]] = []  # moves the object just before a patch
        self.refuse = ""  # a 422 that is no race

    def impersonating(self, user: str) -> "FakeApi":
        return self

    async def plural(self, api_version: str, kind: str) -> str:
        return "deployments"

    async def get(self, path: str) -> Any:
        if path not in self.objects:
            raise NotFound(404, "not found")
        return copy.deepcopy(self.objects[path])

    async def json_patch(self, path: str, ops: list[dict[str, Any]]) -> Any:
        if self.before_patch:
            self.objects[path] = self.before_patch.pop(0)
        if self.refuse:
            raise KubeError(422, self.refuse)
        try:
            self.objects[path] = jsonpatch.apply_patch(self.objects[path], ops)
        except jsonpatch.JsonPatchTestFailed as e:
            raise KubeError(422, "the server rejected our request: test failed") from e
        return self.objects[path]


def restore(api: FakeApi) -> str:
    executor = KubernetesExecutor(cast(KubeApi, api))
    return asyncio.run(executor.restore(cast(Any, REQUEST), CHANGE))


def test_an_object_that_moves_meanwhile_is_judged_again() -> None:
    api = FakeApi(web(3, 2))
    api.before_patch = [web(3, 5)]  # a status update: same fields, new version
    assert "restored spec.replicas" in restore(api)
    assert api.objects[PATH]["spec"]["replicas"] == 1


def test_a_change_meanwhile_to_the_same_field_refuses() -> None:
    api = FakeApi(web(3, 2))
    api.before_patch = [web(7, 5)]
    with pytest.raises(Refused, match=re.escape("spec.replicas of Deployment/web changed since")):
        restore(api)
    assert api.objects[PATH]["spec"]["replicas"] == 7


def test_a_refusal_that_is_no_race_is_said_as_it_is() -> None:
    api = FakeApi(web(3, 2))
    api.refuse = "spec.replicas: Invalid value"
    with pytest.raises(Refused, match="the API server refused to restore Deployment/web: spec"):
        restore(api)


def test_the_state_kept_for_another_request_is_never_restored() -> None:
    api = FakeApi(web(3, 2), owner="u-2")
    with pytest.raises(KubeError, match="not this request's"):
        restore(api)
    assert api.objects[PATH]["spec"]["replicas"] == 3
