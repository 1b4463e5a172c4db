"""The raw JSON shapes of Handoff's resources, as the API server stores them.

These TypedDicts describe input; the domain works on the frozen values built from them.
``crds/`` is the one source of truth for the schema: keep these in step with it.
"""

from typing import Any, NotRequired, TypedDict


class ObjectMeta(TypedDict, total=False):
    name: str
    namespace: str
    uid: str
    generation: int
    resourceVersion: str
    creationTimestamp: str
    labels: dict[str, str]
    annotations: dict[str, str]
    finalizers: list[str]
    deletionTimestamp: str


class ChecklistItemJSON(TypedDict):
    id: str
    text: str


class ReviewersJSON(TypedDict, total=False):
    users: list[str]
    groups: list[str]


class StageJSON(TypedDict, total=False):
    name: str
    reviewers: ReviewersJSON
    approvals: int
    checklist: list[ChecklistItemJSON]
    escalateAfter: str
    escalateTo: list[str]


class LaneJSON(TypedDict, total=False):
    oversight: str
    holdFor: str
    decisionWindow: str
    approvals: int
    checklist: list[ChecklistItemJSON]
    escalateAfter: str
    escalateTo: list[str]
    minReviewSeconds: int
    stages: list[StageJSON]


class SecretKeyJSON(TypedDict):
    name: str
    key: str


class NotificationJSON(TypedDict, total=False):
    name: str
    format: str
    url: str
    urlSecretRef: SecretKeyJSON
    hmacSecretRef: SecretKeyJSON
    events: list[str]
    channel: str  # format SlackApp: the Slack channel ID the bot posts to


class GrantableJSON(TypedDict, total=False):
    maxDuration: str
    maxCount: int


class RuleJSON(TypedDict, total=False):
    name: str
    actions: list[str]
    targets: list[str]
    when: str
    tier: int
    decisionWindow: str
    approvals: int
    checklist: list[ChecklistItemJSON]
    stages: list[StageJSON]
    grantable: GrantableJSON


class PolicySpecJSON(TypedDict, total=False):
    agents: dict[str, list[str]]
    mode: str
    defaultTier: int
    reviewers: ReviewersJSON
    tiers: dict[str, LaneJSON]
    rules: list[RuleJSON]
    notifications: list[NotificationJSON]
    executors: dict[str, Any]
    budgets: list[dict[str, Any]]
    credentials: list[dict[str, Any]]


class PolicyJSON(TypedDict):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: PolicySpecJSON
    status: NotRequired[dict[str, Any]]


class RollbackJSON(TypedDict, total=False):
    description: str
    action: str
    parameters: dict[str, Any]


class RequestSpecJSON(TypedDict, total=False):
    agent: str
    action: str
    target: str
    parameters: dict[str, Any]
    summary: str
    reasoning: str
    blastRadius: str
    rollback: RollbackJSON
    confidence: float
    stateRef: str
    rollbackOf: str
    execution: str


class ReviewJSON(TypedDict, total=False):
    reviewer: str
    decision: str
    acknowledged: list[str]
    comment: str
    breakGlass: bool
    stage: str


class ConditionJSON(TypedDict, total=False):
    type: str
    status: str
    reason: str
    message: str
    lastTransitionTime: str
    observedGeneration: int


class RequestJSON(TypedDict):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: RequestSpecJSON
    status: NotRequired[dict[str, Any]]
