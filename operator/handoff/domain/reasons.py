"""The one place where Handoff's CamelCase words live.

The same strings appear in conditions, Events, metric labels, the CLI and the console, so they
are defined once here and nowhere else.
"""

from enum import StrEnum


class Reason(StrEnum):
    """Why a request was decided, or why it is still waiting."""

    # Final decisions (status.decision.reason).
    AUTO_APPROVED = "AutoApproved"  # tier 1, HOOTL
    LOGGED = "Logged"  # tier 2, HOTL: approved at once, logged with its rollback
    NOT_VETOED = "NotVetoed"  # tier 3 HOTL: the hold passed with no veto
    HUMAN_APPROVED = "HumanApproved"
    HUMAN_DENIED = "HumanDenied"
    BREAK_GLASS_APPROVED = "BreakGlassApproved"  # approved with a break-glass review
    GRANT_APPROVED = "GrantApproved"  # covered by a reviewer's standing grant (ActionGrant)
    VETOED = "Vetoed"  # tier 3 HOTL: a reviewer denied during the hold
    EXPIRED = "Expired"  # the decision window passed: fail safe to Denied
    NO_POLICY = "NoPolicy"
    MISSING_ROLLBACK_PLAN = "MissingRollbackPlan"  # tier 2 without rollback: sent to review
    BUDGET_EXCEEDED = "BudgetExceeded"  # tier 1-2 past the policy's budget: sent to review
    INVALID = "Invalid"

    # Waiting (the Decided condition while status.decision is unset).
    AWAITING_REVIEW = "AwaitingReview"
    IN_VETO_WINDOW = "InVetoWindow"
    STAGE_OPENED = "StageOpened"  # the Event when a staged request's next stage opens

    # The Classified condition.
    RULE_MATCHED = "RuleMatched"
    DEFAULT_TIER = "DefaultTier"
    FAIL_CLOSED = "FailClosed"  # the policy is not Ready or a rule could not be evaluated
    # Tier 4: a governing policy compiles but is not enforced yet (Ready=False, CredentialsFailed:
    # its credentials or its executor's Role are not in place). Held for a person, never freer.
    POLICY_NOT_READY = "PolicyNotReady"
    POST_INCIDENT_REVIEW = "PostIncidentReview"  # filed after a break-glass approval: tier 4

    # Policy conditions.
    COMPILED = "Compiled"
    COMPILE_FAILED = "CompileFailed"
    CREDENTIALS_FAILED = "CredentialsFailed"  # compiled, but a database credential is not in place
    BREAK_GLASS_ACTIVE = "BreakGlassActive"  # the break-glass annotation is in effect
    BREAK_GLASS_ENDED = "BreakGlassEnded"  # its until has passed; the groups lost the verb
    BREAK_GLASS_INVALID = "BreakGlassInvalid"  # malformed, or too long a window: not granted

    # ActionGrants (status.refused, and the Event on a grant the operator refuses).
    GRANT_REFUSED = "GrantRefused"  # wider than the request that prompted it, or malformed
    # Its author no longer holds the verb approve on its policy (asked at each use, by a
    # SubjectAccessReview): it covers nothing from then on.
    GRANT_AUTHOR_UNENTITLED = "GrantAuthorUnentitled"

    # Events about what an agent reported on its outcome stream.
    REJECTED_OUTCOME = "RejectedOutcome"  # an entry that can never be recorded: dropped


class Phase(StrEnum):
    PENDING = "Pending"  # not classified yet (shown, never written)
    QUEUED = "Queued"
    AWAITING_APPROVAL = "AwaitingApproval"
    APPROVED = "Approved"
    DENIED = "Denied"
    EXECUTED = "Executed"
    FAILED = "Failed"
    ROLLED_BACK = "RolledBack"


class Transition(StrEnum):
    """Which transition a step of the decision core makes (``Step.transition``): what follows a
    decision (announce, arm or stop a timer, count a metric) depends on it."""

    NONE = "None"  # nothing new: decided before, or still waiting as it was
    STARTED_WAITING = "StartedWaiting"  # classified now; waits for people until its deadline
    PROGRESSED = "Progressed"  # still waiting; the Decided condition says where reviews stand
    STAGE_OPENED = "StageOpened"  # still waiting; its next approval stage opened just now
    DECIDED = "Decided"  # decided as it was classified: it never waited
    DECIDED_AFTER_WAITING = "DecidedAfterWaiting"  # it waited: a review or its deadline decided


class Oversight(StrEnum):
    HOOTL = "HOOTL"  # human out of the loop: let it run
    HOTL = "HOTL"  # human on the loop: act (or hold) and log, a human may veto or roll back
    HITL = "HITL"  # human in the loop: stop and ask


class Outcome(StrEnum):
    APPROVED = "Approved"
    DENIED = "Denied"


class Mode(StrEnum):
    ENFORCE = "Enforce"
    AUDIT = "Audit"


class ReviewDecision(StrEnum):
    APPROVE = "Approve"
    DENY = "Deny"
    ROLLBACK = "Rollback"  # after execution: undo it (a reversible request)


# Condition types.
READY = "Ready"
BREAK_GLASS = "BreakGlass"  # a policy's break-glass annotation: active, ended or invalid
CLASSIFIED = "Classified"
DECIDED = "Decided"


class Filing(StrEnum):
    """Events about the requests the operator files itself (rollbacks, post-incident reviews)."""

    NAME_TAKEN = "NameTaken"  # its name was taken first by a request Handoff did not file
    UNTRUSTED_ROLLBACK = "UntrustedRollback"  # says it undoes a request; Handoff did not file it
    POST_INCIDENT_REVIEW_FILED = "PostIncidentReviewFiled"


EXECUTING = "Executing"  # status.execution.outcome while the webhook executor is posted to


class Announcement(StrEnum):
    """What a policy's notification targets are told about (``notifications[].events``)."""

    PENDING = "Pending"  # it started waiting for people
    ESCALATED = "Escalated"  # still undecided at status.escalation.at
    DECIDED = "Decided"  # decided after waiting


class Rollback(StrEnum):
    """Events and audit lines about rolling an executed request back."""

    REQUESTED = "RollbackRequested"  # a reviewer asked; the rollback request is filed
    ROLLED_BACK = "RolledBack"  # undone (also the request's phase then)
    FAILED = "RollbackFailed"  # the Kubernetes executor could not put the object back


class GrantLine(StrEnum):
    """Audit lines (``event``) about an ActionGrant itself, beside the requests it decides."""

    GRANTED = "Granted"  # a reviewer created it
    USED_UP = "UsedUp"  # its last use was taken
    REFUSED = "Refused"  # the operator found it wider than the request that prompted it
    REVOKED = "Revoked"  # deleted: it covers nothing from now on


class Gateway(StrEnum):
    """The MCP gateway's words: why it refused a call, how a call ended (metric labels), and
    its MCPServers' Ready reasons."""

    UNAUTHENTICATED = "Unauthenticated"  # no bearer token, or one the API server does not know
    NOT_ALLOWED = "NotAllowed"  # the MCPServer does not list the calling agent
    UNKNOWN_TOOL = "UnknownTool"  # no such server or tool
    AMBIGUOUS_TOOL = "AmbiguousTool"  # its action is also another tool's: which to run is unclear
    INVALID_ARGUMENTS = "InvalidArguments"  # fail the tool's input schema or the size bounds
    UPSTREAM_UNAVAILABLE = "UpstreamUnavailable"  # the upstream did not answer
    TOO_MANY_HELD = "TooManyHeld"  # the agent holds --max-held-per-agent requests open already
    TOO_MANY_READS = "TooManyReads"  # the agent reads tasks past --task-reads-per-agent a second
    MAPPING_MISMATCH = "MappingMismatch"  # a request whose spec is not its tool's mapping
    AWAITING = "Awaiting"  # still waits for a person: the client calls again
    COMPLETED = "Completed"  # the upstream's result was returned
    REFUSED = "Refused"  # denied or expired: an error result
    TASK_CREATED = "TaskCreated"  # a task-augmented call: answered with its task at once
    TOOLS_LISTED = "ToolsListed"  # Ready: the upstream answered and the spec compiles
    INVALID_SPEC = "InvalidSpec"  # a target or inverse that does not compile
    GOVERNED = "Governed"  # a policy rule names every tool's action
    UNGOVERNED_TOOLS = "UngovernedTools"  # some tools' actions fall to a defaultTier
    FAST_DECLINED = "Declined"  # not an unconditional tier 1 here: waits for the operator
    FAST_TAKEN = "Taken"  # tier 1 classified by the gateway: forwarded at once
    FAST_AGREED = "Agreed"  # the operator then decided AutoApproved too
    FAST_DISAGREED = "Disagreed"  # the operator decided otherwise (a policy changed meanwhile)


class Slack(StrEnum):
    """The Slack bridge's words to administrators (Events on its mapping, log lines)."""

    MAPPING_UNUSABLE = "SlackMappingUnusable"  # a mapped identity the console may not impersonate
