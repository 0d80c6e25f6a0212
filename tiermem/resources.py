"""Files shipped with the package: policies and configs.

In a wheel they are the subpackages ``tiermem.policies`` and
``tiermem.configs`` (mapped from the repo's top-level ``policies/`` and
``configs/`` in pyproject.toml); in a source checkout, those folders.

>>> shipped_policy("default").name
'default.yaml'
"""

from __future__ import annotations

from pathlib import Path

from tiermem.errors import PolicyError

_REPO = Path(__file__).resolve().parent.parent
SUFFIXES = (".yaml", ".yml", ".toml", ".json")


def _folder(kind: str) -> Path:
    installed = Path(__file__).resolve().parent / kind  # tiermem/<kind> in a wheel
    return installed if installed.is_dir() else _REPO / kind


def shipped_policies() -> dict[str, Path]:
    """Name -> path of every policy shipped with tiermem."""
    folder = _folder("policies")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix in SUFFIXES}


def shipped_policy(name: str) -> Path:
    """The shipped policy `name`; PolicyError listing the choices if there is none."""
    found = shipped_policies()
    if name not in found:
        raise PolicyError(
            f"no shipped policy {name!r}; choose one of {sorted(found)} or a file path"
        )
    return found[name]


def resolve_policy(name_or_path: str | Path) -> Path:
    """A policy file: an existing path, else a shipped policy's name."""
    path = Path(name_or_path).expanduser()
    if path.suffix in SUFFIXES:
        if not path.is_file():
            raise PolicyError(f"{path}: policy file not found")
        return path
    return shipped_policy(str(name_or_path))
