"""Commands that only parse flags stay light: `--help` of every command imports none of the heavy libraries."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("numpy", "pandas", "torch", "mlflow", "prefect", "xgboost", "sklearn", "matplotlib", "pyarrow", "optuna")

PROBE = f"""
import argparse, contextlib, io, json, sys
from tabduel.cli import build_parser, main

def commands(parser, prefix=()):
    yield list(prefix)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*prefix, name))

seen = []
for argv in commands(build_parser()):
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            main([*argv, "--help"])
        except SystemExit:
            pass
    seen.append(argv)
print(json.dumps({{"commands": seen, "heavy": sorted(m for m in {HEAVY!r} if m in sys.modules)}}))
"""


def test_help_of_every_command_imports_no_heavy_library():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    found = json.loads(out.strip().splitlines()[-1])
    assert ["run"] in found["commands"] and ["train", "mlp"] in found["commands"], found["commands"]
    assert found["heavy"] == [], f"--help imported {found['heavy']}"
