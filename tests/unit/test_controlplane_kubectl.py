"""The dev environment's kubectl waits out an API server whose admission is not ready yet.

/readyz answers 200 before ValidatingAdmissionPolicy's informers have synced; on a busy machine
the first `kubectl apply` of `handoff dev up` was refused with "not yet ready to handle request"
(a fresh machine's `make demo` found it). A fake kubectl refuses twice, then succeeds.
"""

from pathlib import Path

import pytest
from handoff.devenv.controlplane import NOT_YET_READY, ControlPlane


def fake_kubectl(bin_dir: Path, refusals: int, message: str) -> Path:
    count = bin_dir / "count"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text(
        "#!/bin/sh\n"
        f'n=$(cat {count} 2>/dev/null || echo 0); echo $((n + 1)) > {count}\n'
        f'if [ "$n" -lt {refusals} ]; then echo "Error from server (Forbidden): {message}" >&2; exit 1; fi\n'
        'echo applied\n'
    )  # fmt: skip
    (bin_dir / "kubectl").chmod(0o755)
    return count


def test_kubectl_retries_while_admission_is_not_ready(tmp_path: Path) -> None:
    count = fake_kubectl(tmp_path / "bin", 2, f"crd is forbidden: {NOT_YET_READY}")
    plane = ControlPlane(tmp_path, tmp_path / "bin", tokens={"admin": "t"})
    assert plane.kubectl("apply", "-f", "x").stdout.strip() == "applied"
    assert count.read_text().strip() == "3"


def test_kubectl_does_not_retry_other_refusals(tmp_path: Path) -> None:
    count = fake_kubectl(tmp_path / "bin", 2, "actionrequests is forbidden: User mallory cannot")
    plane = ControlPlane(tmp_path, tmp_path / "bin", tokens={"admin": "t"})
    with pytest.raises(RuntimeError, match="User mallory cannot"):
        plane.kubectl("apply", "-f", "x")
    assert count.read_text().strip() == "1"
