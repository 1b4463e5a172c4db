"""How deep, how wide and how large an agent's free-form values may be.

``spec.parameters`` (and ``spec.rollback.parameters``) are free-form JSON the API server stores
as sent, up to 10,000 levels deep and 1.5 MB large. Nested 9,990 deep, one request made
``kubectl get actionrequests`` fail for the whole namespace (Go's JSON decoder stops at 10,000
levels, and the Table kubectl asks for wraps each object a few levels deeper). The bounds below
are kept by admission (``crds/admission/parameters.yaml``, generated from ``admission_size``):

- **32 levels** of maps and lists, ``parameters`` itself the first. Every client meets them with
  room to spare: Go's decoder (kubectl, the API server's Table) stops at 10,000, Python's at its
  recursion limit (1,000), the operator's CEL at 100. The deepest real arguments we know, a
  Deployment manifest for the Kubernetes executor
  (``manifest.spec.template.spec.containers[].env[].valueFrom.secretKeyRef.name``), are 10 deep.
- **256 items** in any one list or map (the top level stays at the CRD's 64). Admission has to
  walk the values to measure them, and the API server's CEL costs quadratic time in the length
  of a list it walks (its runtime cost tracker searches a stack that grows with each item: a
  walk of 40,000 items took 13 s). Checking each container's size before walking it bounds that
  to a fraction of a second even for the 1.5 MB the API server takes at most.
- **64 KiB** in all, counted like compact JSON (strings and keys by their length plus their
  quotes, every value at least two characters). Arguments are for a reviewer to read, and every
  request is held in the operator's memory while it waits: 10,000 waiting requests with 64 KiB
  each are 640 MB. (A payload of more than about 50,000 values reaches the API server's CEL cost
  limit before its size is known and is refused for that, with the admission policy's name.)
"""

from collections.abc import Mapping

MAX_DEPTH = 32  # levels of maps and lists, parameters itself the first
MAX_ITEMS = 256  # items in any one list or map
MAX_SIZE = 65_536  # characters, counted like compact JSON
TOO_MUCH = 1 << 40  # the measure of values that break a bound other than the size


def measure(value: object, depth: int = MAX_DEPTH) -> int:
    """The size of ``value`` as ``admission_size`` counts it: about its compact JSON length, or
    at least TOO_MUCH when it nests deeper than ``depth`` or holds more than MAX_ITEMS items."""
    if isinstance(value, Mapping | list):
        if depth == 0 or len(value) > MAX_ITEMS:
            return TOO_MUCH
        if isinstance(value, Mapping):
            return 2 + sum(len(str(k)) + 3 + measure(v, depth - 1) for k, v in value.items())
        return 2 + sum(measure(item, depth - 1) for item in value)
    return len(value) + 2 if isinstance(value, str) else 2


def admission_size(root: str, depth: int = MAX_DEPTH) -> str:
    """The CEL expression that measures ``root`` as ``measure`` does, for a
    ValidatingAdmissionPolicy. CEL has no recursion, so it is unrolled ``depth`` times; each
    level names its values once, so the text grows linearly (about 280 characters a level)."""
    return _size(root, depth)


def _size(value: str, depth: int) -> str:
    container = f"(type({value}) == map || type({value}) == list)"
    leaf = f"(type({value}) == string ? size({value}) + 2 : 2)"
    if depth == 0:
        return f"({container} ? {TOO_MUCH} : {leaf})"
    d = depth
    items = (
        f"(type({value}) == map ? {value}.map(k{d}, [dyn(size(k{d}) + 3), {value}[k{d}]])"
        f" : {value}.map(i{d}, [dyn(0), i{d}]))"
    )
    inner = f"([2] + {items}.map(p{d}, p{d}[0] + {_size(f'p{d}[1]', depth - 1)})).sum()"
    return f"({container} ? (size({value}) > {MAX_ITEMS} ? {TOO_MUCH} : {inner}) : {leaf})"
