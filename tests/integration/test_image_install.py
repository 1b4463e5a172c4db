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
PATHS = ("WHEELS", "HANDOFF_HOME", "HANDOFF_ROOT")


def instructions() -> list[tuple[str, str]]:
    """(instruction, arguments) per line of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    parsed = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            parsed.append((keyword.upper(), rest.strip()))
    return parsed


def stages() -> list[list[tuple[str, dict[str, str], str]]]:
    """Per stage, each RUN (BuildKit --mount flags removed) and COPY, with the ENV set before it."""
    result: list[list[tuple[str, dict[str, str], str]]] = []
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
            result[-1].append(("RUN", dict(env), re.sub(r"^(--mount=\S+\s+)+", "", rest)))
        elif keyword == "COPY":
            result[-1].append(("COPY", dict(env), rest))
    return result


def final_env() -> dict[str, str]:
    """The ENV of the last stage, as the running container has it."""
    env: dict[str, str] = {}
    for keyword, rest in instructions():
        if keyword == "FROM":
            env = {}
        elif keyword == "ENV":
            env.update(pair.partition("=")[::2] for pair in shlex.split(rest))
    return env


def copy(arguments: str, context: Path, env: dict[str, str]) -> None:
    """COPY from the build context, its destination's ${VARIABLES} taken from ``env``."""
    *sources, destination = shlex.split(arguments)
    for key, value in env.items():
        destination = destination.replace("${" + key + "}", value).replace("$" + key, value)
    target = Path(destination)
    assert target.is_absolute(), destination
    assert str(target).startswith(tuple(env[k] for k in PATHS)), (
        f"COPY to {destination}: write it with one of {PATHS} so this test can place it"
    )
    target.mkdir(parents=True, exist_ok=True)
    for pattern in sources:
        matches = sorted(context.glob(pattern))
        assert matches, f"COPY {pattern}: nothing in the build context"
        for match in matches:
            shutil.copy2(match, target / match.name)


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


def without_cache(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != "PIP_NO_CACHE_DIR"}


def execute(command: str, cwd: Path, env: dict[str, str]) -> None:
    result = subprocess.run(
        ["/bin/sh", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, check=False,
        timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, (
        f"RUN {command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )


def test_the_dockerfile_is_read_as_two_stages_with_install_steps() -> None:
    build, run = stages()
    assert [kind for kind, _, _ in build].count("RUN") >= 1
    runs = [(env, text) for kind, env, text in run if kind == "RUN"]
    assert runs
    assert "WHEELS" in runs[0][0]
    assert "HANDOFF_HOME" in runs[0][0]
    assert "--mount" not in runs[0][1]
    assert any(kind == "COPY" for kind, _, _ in run)


def test_the_image_install_steps_give_working_commands(tmp_path: Path) -> None:
    wheels, home, share = tmp_path / "wheels", tmp_path / "opt-handoff", tmp_path / "share"
    local = {"WHEELS": str(wheels), "HANDOFF_HOME": str(home), "HANDOFF_ROOT": str(share)}
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
    build, run = stages()
    # The build stage's COPY lines fill its WORKDIR from the context: here the context is the cwd.
    for kind, env, text in build:
        if kind == "RUN":
            execute(text, context, clean | without_cache(env) | local)
    for kind, env, text in run:
        assert "PATH" not in env, "ENV PATH before a step: this test would need to expand it"
        if kind == "RUN":
            execute(text, tmp_path, clean | without_cache(env) | local)
        else:
            copy(text, context, env | local)
    # The image's final environment, but PATH and HOME (the venv's bin is called by path here).
    final = {k: v for k, v in final_env().items() if k not in ("PATH", "HOME")}
    assert final["PYTHONDONTWRITEBYTECODE"] == "1"  # nothing written beside the code at run time
    image_env = clean | final | {"HANDOFF_ROOT": str(share)}

    handoff = home / "bin" / "handoff"
    for argv in ([], ["operator"], ["console"]):
        result = subprocess.run(
            [str(handoff), *argv, "--help"], env=image_env, capture_output=True, text=True, check=False, timeout=120
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "usage: handoff" in result.stdout
    operator_help = subprocess.run(
        [str(handoff), "operator", "--help"],
        env=image_env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for flag in ("--leader-election", "--metrics-address", "--liveness", "--retention"):
        assert flag in operator_help  # what the chart's Deployment passes
    plugin = subprocess.run(
        [str(home / "bin" / "kubectl-handoff"), "--help"], env=image_env, capture_output=True, text=True, check=False
    )  # fmt: skip
    assert plugin.returncode == 0, plugin.stderr
    # Policy lint finds the CRD schema the image carries, with no checkout around.
    lint = subprocess.run(
        [str(handoff), "policy", "lint", str(ROOT / "policies" / "payments")],
        env=image_env, cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "0 errors" in lint.stdout
    # The installed package, not this checkout, with the console's templates and static files.
    where = subprocess.run(
        [str(home / "bin" / "python"), "-c", "import handoff, pathlib; print(pathlib.Path(handoff.__file__).parent)"],
        env=image_env, cwd=tmp_path, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    package = Path(where)
    assert package.is_relative_to(home), where
    assert list((package / "console" / "templates").glob("*.html"))
    assert (package / "py.typed").exists()
