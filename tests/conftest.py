import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
torch.set_num_threads(1)


def script_env(python_warnings="ignore"):
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("PYTHONWARNINGS", None)
    if python_warnings:
        env["PYTHONWARNINGS"] = python_warnings
    return env


def run(script, *args, cwd=None, timeout=600, python_warnings="ignore"):
    """Run a repo script in a subprocess (cwd: where runs/ goes); returns CompletedProcess. python_warnings=None shows
    Python's warnings as a user sees them."""
    env = script_env(python_warnings)
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *map(str, args)], cwd=cwd or ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def git_head():
    """The repository's HEAD commit (what a run or an evaluation must record, with "-dirty" when files differ)."""
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def one_line_error(proc):
    """Bad input: exit status 2 and a single `error: ...` line as the last stderr line, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), proc.stderr[-2000:]
    return last


@pytest.fixture(scope="session")
def root():
    return ROOT
