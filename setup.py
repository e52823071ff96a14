"""Which packages the wheel holds: found, never listed by hand.

pyproject.toml's [tool.setuptools.package-dir] keeps the user's layout (tasks/ installs as tabduel.tasks, flows/ as
tabduel.flows, data/datasets/ as tabduel.datasets). Every folder with an __init__.py under tabduel/ or under one of
those folders is a package of the wheel, so a subpackage added later ships without an edit here.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent


def discovered(layout: dict[str, str]) -> list[str]:
    """tabduel, its subpackages, and each mapped package with the subpackages below its folder."""
    roots = {"tabduel": "tabduel", **layout}
    found: dict[str, str] = {}
    for name, folder in roots.items():
        for package in [name] + [f"{name}.{sub}" for sub in find_packages(str(ROOT / folder))]:
            if package in found:
                raise SystemExit(f"setup.py: package {package} is in both {found[package]}/ and {folder}/")
            found[package] = folder
    return sorted(found)


LAYOUT = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
setup(packages=discovered(LAYOUT))
