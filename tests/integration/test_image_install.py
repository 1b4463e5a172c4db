"""The image's install steps, without a container engine: every RUN line of the Dockerfile runs
here, in order, with the same environment, in a copy of the build context (what .dockerignore lets
through) and into a clean virtual environment. Then both commands start from it.

Only two things differ from a container build: the paths the Dockerfile names in ENV (WHEELS,
HANDOFF_HOME) point at temporary folders, and pip may use its cache (the Dockerfile turns the
cache off with PIP_NO_CACHE_DIR, which is left out here to keep the test fast).
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PATHS = ("WHEELS", "HANDOFF_HOME")


def instructions() -> list[tuple[str, str]]:
    """(instruction, arguments) per line of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    parsed = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            parsed.append((keyword.upper(), rest.strip()))
    return parsed


def stages() -> list[list[tuple[dict[str, str], str]]]:
    """Per stage, each RUN command (BuildKit --mount flags removed) with the ENV set before it."""
    result: list[list[tuple[dict[str, str], str]]] = []
    env: dict[str, str] = {}
    for keyword, rest in instructions():
        if keyword == "FROM":
            result.append([])
            env = {}
        elif keyword == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = value
        elif keyword == "RUN":
            result[-1].append((dict(env), re.sub(r"^(--mount=\S+\s+)+", "", rest)))
    return result


def build_context(target: Path) -> Path:
    """What `docker build .` sends, per .dockerignore: pyproject.toml, README.md, operator/."""
    allowed = [
        line[1:]
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    assert allowed, ".dockerignore lets nothing through"
    target.mkdir()
    for name in allowed:
        source = ROOT / name.rstrip("/")
        if source.is_dir():
            shutil.copytree(
                source, target / source.name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(source, target / source.name)
    return target


def test_the_dockerfile_is_read_as_two_stages_with_install_steps() -> None:
    build, run = stages()
    assert build
    assert run
    assert "WHEELS" in build[0][0]
    assert set(PATHS) <= set(run[0][0])
    assert "--mount" not in run[0][1]


def test_the_image_install_steps_give_working_commands(tmp_path: Path) -> None:
    wheels, home = tmp_path / "wheels", tmp_path / "opt-handoff"
    context = build_context(tmp_path / "src")
    # `python` and `pip` as the base image has them: this interpreter, outside any venv.
    base_bin = tmp_path / "base-bin"
    base_bin.mkdir()
    base = Path(getattr(sys, "_base_executable", sys.executable))
    (base_bin / "python").symlink_to(base)
    (base_bin / "pip").write_text(f'#!/bin/sh\nexec "{base}" -m pip "$@"\n')
    (base_bin / "pip").chmod(0o755)
    clean = {
        "PATH": f"{base_bin}:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", str(tmp_path)),  # pip's cache
        "LANG": "C.UTF-8",
    }
    for steps, cwd in zip(stages(), [context, tmp_path], strict=True):
        for env, command in steps:
            assert "PATH" not in env, "ENV PATH before a RUN: this test would need to expand it"
            stage_env = clean | {k: v for k, v in env.items() if k != "PIP_NO_CACHE_DIR"}
            stage_env |= {"WHEELS": str(wheels), "HANDOFF_HOME": str(home)}
            result = subprocess.run(
                ["/bin/sh", "-c", command], cwd=cwd, env=stage_env, capture_output=True, text=True,
                check=False, timeout=900,
            )  # fmt: skip
            assert result.returncode == 0, (
                f"RUN {command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )

    handoff = home / "bin" / "handoff"
    for argv in ([], ["operator"], ["console"]):
        result = subprocess.run(
            [str(handoff), *argv, "--help"], env=clean, capture_output=True, text=True, check=False, timeout=120
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "usage: handoff" in result.stdout
    operator_help = subprocess.run(
        [str(handoff), "operator", "--help"], env=clean, capture_output=True, text=True, check=True
    ).stdout
    for flag in ("--leader-election", "--metrics-address", "--liveness", "--retention"):
        assert flag in operator_help  # what the chart's Deployment passes
    plugin = subprocess.run(
        [str(home / "bin" / "kubectl-handoff"), "--help"], env=clean, capture_output=True, text=True, check=False
    )  # fmt: skip
    assert plugin.returncode == 0, plugin.stderr
    # The installed package, not this checkout, with the console's templates and static files.
    where = subprocess.run(
        [str(home / "bin" / "python"), "-c", "import handoff, pathlib; print(pathlib.Path(handoff.__file__).parent)"],
        env=clean, cwd=tmp_path, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    package = Path(where)
    assert package.is_relative_to(home), where
    assert list((package / "console" / "templates").glob("*.html"))
    assert (package / "py.typed").exists()
