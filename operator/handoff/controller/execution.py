"""Handoff's own executors: the Kubernetes executor (the spec's change as a preview while the
request waits, then the change once approved) and the webhook executor (the approved action
posted, signed, to the policy's URL). Each outcome then takes the one outcome path
(``recording.Outcomes.recorded``), like an agent's."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from handoff.adapters.kube import Conflict, KubeError
from handoff.adapters.webhooks import Delivery, DeliveryError, WebhookSender
from handoff.controller.kubernetes_executor import KubernetesExecutor
from handoff.controller.policies import PolicyIndex
from handoff.controller.recording import Outcomes
from handoff.controller.secrets import secret_value
from handoff.controller.status import ATTEMPTS, StatusWriter
from handoff.domain.execution import OUTCOMES, execution_patch
from handoff.domain.executors import kubernetes_change
from handoff.domain.kubediff import requested
from handoff.domain.policy import WebhookExecutor
from handoff.domain.reasons import EXECUTING, Outcome, Phase
from handoff.domain.resources import RequestJSON
from handoff.domain.timefmt import format_time


@dataclass
class Execution:
    status: StatusWriter
    policies: PolicyIndex
    clock: Callable[[], datetime]
    outcomes: Outcomes  # the one outcome path
    kubernetes: KubernetesExecutor | None
    sender: WebhookSender

    async def run_kubernetes(self, body: RequestJSON, *, started_waiting: bool) -> None:
        """The Kubernetes executor's part: the spec's change as a preview while the request
        waits, the change once it is approved, and nothing else."""
        if self.kubernetes is None:
            return
        meta, status = body["metadata"], body.get("status") or {}
        change = kubernetes_change(body["spec"], meta["namespace"])
        if isinstance(change, str):
            return  # refused at classification (Invalid)
        if started_waiting:
            await self._write_preview(body, requested(change))
            return
        decision = status.get("decision") or {}
        if decision.get("outcome") != Outcome.APPROVED or status.get("execution"):
            return
        try:
            outcome, message = Phase.EXECUTED, await self.kubernetes.execute(body, change)
        except KubeError as e:
            outcome, message = Phase.FAILED, f"the API server refused it: {e.message}"
        patch = execution_patch(status, outcome, message, self.clock())
        if patch is not None:
            body = await self.status.write(body, patch)
            await self.outcomes.recorded(body, outcome, message)

    async def _write_preview(self, body: RequestJSON, preview: str) -> None:
        """``status.preview``: the change as the spec asks for it (kubediff.requested), from
        the spec alone, so it tells no reader anything of the live object. Guarded like every
        status write; a conflict reads the request again and writes it unless it is there."""
        for _ in range(ATTEMPTS):
            if (body.get("status") or {}).get("preview"):
                return
            try:
                await self.status.write(body, {"preview": preview})
                return
            except Conflict:
                meta = body["metadata"]
                body = await self.status.read(meta["namespace"], meta["name"])

    async def run_webhook(self, body: RequestJSON) -> None:
        """Post the approved action to the policy's executor, signed, with the request's uid as
        the idempotency key. Marked Executing first: a restart before the answer posts again
        (the executor dedups on the key), never silently drops it."""
        meta, status = body["metadata"], body.get("status") or {}
        if (status.get("decision") or {}).get("outcome") != Outcome.APPROVED:
            return
        if (status.get("execution") or {}).get("outcome") in OUTCOMES:
            return
        policy = self.policies.named(meta["namespace"], status.get("policy"))
        if (status.get("execution") or {}).get("outcome") != EXECUTING:
            marker = {"execution": {"outcome": EXECUTING, "at": format_time(self.clock()),
                                    "message": "posting to the webhook executor"}}  # fmt: skip
            try:
                body = await self.status.write(body, marker)
            except Conflict:
                return  # the next event brings the newer version
        if policy is None or policy.webhook is None:
            outcome, message = Phase.FAILED, "the policy no longer names a webhook executor"
        else:
            outcome, message = await self._post(body, policy.webhook)
        patch = execution_patch(body.get("status") or {}, outcome, message, self.clock())
        if patch is None:
            return
        body = await self.status.write(body, patch)
        await self.outcomes.recorded(body, outcome, message)

    async def _post(self, body: RequestJSON, executor: WebhookExecutor) -> tuple[Phase, str]:
        meta, spec, status = body["metadata"], body["spec"], body.get("status") or {}
        payload = {
            "idempotencyKey": meta["uid"],
            "request": {"namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"]},
            "agent": spec.get("agent"), "action": spec.get("action"), "target": spec.get("target"),
            "parameters": spec.get("parameters") or {}, "summary": spec.get("summary"),
            "approvedBy": (status.get("decision") or {}).get("by") or [],
            "specDigest": status.get("specDigest"),
        }  # fmt: skip
        namespace = meta["namespace"]
        try:
            url = executor.url or await secret_value(
                self.status.api, namespace, executor.url_secret
            )
            key = None
            if executor.hmac_secret is not None:
                key = (
                    await secret_value(self.status.api, namespace, executor.hmac_secret)
                ).encode()
            attempts = await self.sender.send(Delivery(url, payload, meta["uid"], key))
        except (DeliveryError, KubeError) as e:
            return Phase.FAILED, f"the webhook executor did not accept it: {e}"
        return Phase.EXECUTED, f"the webhook executor accepted it (attempt {attempts})"
