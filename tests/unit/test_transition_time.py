"""A condition's lastTransitionTime moves when its status does, as Kubernetes conditions keep it
(domain.model.transition_time: the policy's Ready and an MCPServer's Ready and Governed)."""

from handoff.domain.model import transition_time

EARLIER, NOW = "2026-12-02T13:00:00Z", "2026-12-02T14:00:00Z"
WRITTEN = [
    {"type": "Ready", "status": "False", "lastTransitionTime": EARLIER},
    {"type": "Governed", "status": "True", "lastTransitionTime": EARLIER},
]


def test_a_status_that_holds_keeps_its_time() -> None:
    assert transition_time(WRITTEN, "Ready", "False", NOW) == EARLIER
    assert transition_time(WRITTEN, "Governed", "True", NOW) == EARLIER


def test_a_status_that_changes_takes_now() -> None:
    assert transition_time(WRITTEN, "Ready", "True", NOW) == NOW
    assert transition_time(WRITTEN, "Governed", "False", NOW) == NOW


def test_a_new_condition_or_one_without_a_time_takes_now() -> None:
    assert transition_time(WRITTEN, "Degraded", "False", NOW) == NOW
    assert transition_time([], "Ready", "False", NOW) == NOW
    assert transition_time([{"type": "Ready", "status": "False"}], "Ready", "False", NOW) == NOW


def test_a_time_that_is_no_time_is_not_copied_on() -> None:
    """Written by hand with the status's rights: the CRD would refuse every write that kept it."""
    for bad in ("yesterday", "", None, 5):
        written = [{"type": "Ready", "status": "False", "lastTransitionTime": bad}]
        assert transition_time(written, "Ready", "False", NOW) == NOW
