"""The bounds on an agent's free-form values: the admission policy is what ``limits`` generates,
and ``measure`` (the Python twin of its CEL) counts what the docstring says.

Regenerate the policy after changing ``handoff.domain.limits``:
``.venv/bin/python -m tests.unit.test_parameter_limits > crds/admission/parameters.yaml``
(then ``make chart-crds``).
"""

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from handoff.domain.limits import (
    MAX_DEPTH,
    MAX_ITEMS,
    MAX_SIZE,
    TOO_MUCH,
    admission_size,
    measure,
)

POLICY = Path(__file__).parents[2] / "crds" / "admission" / "parameters.yaml"
FIELDS = (
    ("parametersSize", "spec.parameters", "!has(object.spec.parameters)"),
    ("rollbackParametersSize", "spec.rollback.parameters",
     "!has(object.spec.rollback) || !has(object.spec.rollback.parameters)"),
)  # fmt: skip

RULE = {
    "apiGroups": ["handoff.dev"],
    "apiVersions": ["v1alpha1"],
    "operations": ["CREATE"],
    "resources": ["actionrequests"],
}
HEADER = f"""\
# Admission policy for ActionRequests: how deep, how wide and how large an agent's free-form
# values (spec.parameters, spec.rollback.parameters) may be. The API server stores them as sent,
# up to 10,000 levels deep: nested 9,990 deep, one request made `kubectl get actionrequests` fail
# for the whole namespace. Why these bounds: operator/handoff/domain/limits.py. The expressions
# are generated from it (tests/unit/test_parameter_limits.py says how, and checks they agree):
# do not edit them by hand.
#
# - at most {MAX_DEPTH} levels of maps and lists (parameters itself the first);
# - at most {MAX_ITEMS} items in any one list or map (checked before the list is walked: the API
#   server's CEL takes quadratic time over a long list);
# - at most {MAX_SIZE} characters in all, counted like compact JSON.
"""


def generated() -> str:
    validations: list[dict[str, str]] = []
    variables: list[dict[str, str]] = []
    for variable, field, absent in FIELDS:
        root = "object." + field
        variables.append({"name": variable, "expression": f"{absent} ? 0 : {admission_size(root)}"})
        validations += [
            {"expression": f"variables.{variable} < {TOO_MUCH}",
             "message": f"{field} nest deeper than {MAX_DEPTH} levels, or one of their lists or"
                        f" maps holds more than {MAX_ITEMS} items: send a flatter, smaller value"
                        " (or a reference to where the data is)",
             "reason": "Invalid"},
            {"expression": f"variables.{variable} <= {MAX_SIZE}",
             "messageExpression": f'"{field} are " + string(variables.{variable}) + " characters'
                                  f' as compact JSON, over {MAX_SIZE}: send a smaller value (or a'
                                  ' reference to where the data is)"',
             "reason": "Invalid"},
        ]  # fmt: skip
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "handoff-parameters"},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [RULE]},
            "variables": variables,
            "validations": validations,
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": "handoff-parameters"},
        "spec": {"policyName": "handoff-parameters", "validationActions": ["Deny"]},
    }
    dump = {"sort_keys": False, "width": 1_000_000}
    return HEADER + yaml.safe_dump(policy, **dump) + "---\n" + yaml.safe_dump(binding, **dump)


def test_the_admission_policy_is_the_generated_one() -> None:
    assert POLICY.read_text() == generated(), f"regenerate {POLICY}: see this file's docstring"


def nested(depth: int, leaf: Any = 1) -> Any:
    """``depth`` levels of maps, the outermost included."""
    value = leaf
    for _ in range(depth):
        value = {"x": value}
    return value


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ({}, 2),
        ({"a": 1}, len('{"a":1}') + 1),  # each scalar counts at least two
        ({"a": "bc"}, len('{"a":"bc"}')),
        ({"a": [1, 2]}, len('{"a":[1,2]}') + 1),
        ({"a": None, "b": True, "c": 12345}, 2 + 3 * (1 + 3 + 2)),
        ({"€": "€€"}, len('{"€":"€€"}')),  # characters, not bytes, as CEL's size() counts
    ],
)
def test_measure_counts_like_compact_json(value: Any, size: int) -> None:
    assert measure(value) == size
    assert measure(value) <= len(json.dumps(value, separators=(",", ":"), ensure_ascii=False)) + 3


def test_measure_marks_what_is_too_deep_or_too_wide() -> None:
    assert measure(nested(MAX_DEPTH)) < TOO_MUCH
    assert measure(nested(MAX_DEPTH + 1)) >= TOO_MUCH
    assert measure({"l": list(range(MAX_ITEMS))}) < TOO_MUCH
    assert measure({"l": list(range(MAX_ITEMS + 1))}) >= TOO_MUCH
    assert measure({"s": "x" * MAX_SIZE}) > MAX_SIZE


def test_the_expression_grows_linearly_with_the_depth() -> None:
    assert len(admission_size("v", 2 * MAX_DEPTH)) < 2.2 * len(admission_size("v", MAX_DEPTH))
    assert len(admission_size("object.spec.parameters")) < 12_000


if __name__ == "__main__":
    print(generated(), end="")


def nested_lists(depth: int, leaf: Any = "ab") -> Any:
    """``depth`` levels of lists, the outermost included."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


# Each row: a value with lists, and its measure. Items of a list count like any value (a string
# by its length and quotes), and each list is one level deeper: 32 levels of lists are allowed,
# not 33, whether they hold lists or maps.
@pytest.mark.parametrize(
    ("value", "size"),
    [
        (["abc", "d"], 2 + 5 + 3),  # no commas counted
        ([["abc"], {"k": "vw"}], 2 + (2 + 5) + (2 + 4 + 4)),
        (nested_lists(1), len('["ab"]')),
        (nested_lists(MAX_DEPTH), 2 * MAX_DEPTH + 4),
        (nested_lists(MAX_DEPTH + 1), TOO_MUCH + 2 * MAX_DEPTH),
        (nested_lists(MAX_DEPTH - 1, {"x": "ab"}), 2 * (MAX_DEPTH - 1) + 2 + 4 + 4),
        (nested_lists(MAX_DEPTH, {"x": "ab"}), TOO_MUCH + 2 * MAX_DEPTH),
    ],
)
def test_measure_walks_lists_one_level_deeper_each(value: Any, size: int) -> None:
    assert measure(value) == size
