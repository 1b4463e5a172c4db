"""Where Handoff finds its own files: the project checkout, the built control plane, the CRDs."""

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def project_root() -> Path:
    """The checkout Handoff runs from: $HANDOFF_ROOT, else the source tree this package is in,
    else the working directory."""
    if root := os.environ.get("HANDOFF_ROOT"):
        return Path(root).resolve()
    source_tree = _PACKAGE.parent.parent
    if (source_tree / "crds").is_dir() and (source_tree / "pyproject.toml").is_file():
        return source_tree
    return Path.cwd()


def bin_dir() -> Path:
    """Where ``make controlplane`` puts etcd, kube-apiserver and kubectl."""
    return Path(os.environ.get("HANDOFF_BIN_DIR") or project_root() / ".handoff" / "bin")


def crd_dir() -> Path:
    return project_root() / "crds"


def admission_dir() -> Path:
    """The ValidatingAdmissionPolicies shipped with the CRDs."""
    return project_root() / "crds" / "admission"


def dev_dir() -> Path:
    """The state of ``handoff dev up``; $HANDOFF_DEV_DIR runs a second one beside it."""
    if folder := os.environ.get("HANDOFF_DEV_DIR"):
        return Path(folder).resolve()
    return project_root() / ".handoff" / "dev"
