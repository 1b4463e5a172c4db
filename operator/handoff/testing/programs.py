"""Programs a test can hide, to see what a machine without them would see."""

import os
from pathlib import Path


def hidden_path(folder: Path, *hidden: str) -> str:
    """A PATH with every program of the real one except ``hidden`` (symlinks in ``folder``,
    which is made)."""
    folder.mkdir(parents=True)
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            target = folder / entry.name
            if entry.name not in hidden and not target.exists() and os.access(entry.path, os.X_OK):
                target.symlink_to(entry.path)
    return str(folder)
