"""``./run``: setup is quiet on success (no pip or setuptools output before the demo), loud on failure."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

RUN = Path(__file__).resolve().parents[1] / "run"


def _quiet_function() -> str:
    text = RUN.read_text()
    match = re.search(r"^quiet\(\) \{\n.*?^\}\n", text, re.S | re.M)
    assert match, "./run has no quiet() helper"
    return match.group(0)


def _bash(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", f"set -euo pipefail\n{_quiet_function()}\n{script}"],
                          capture_output=True, text=True, timeout=60)


def test_setup_output_is_shown_only_when_a_step_fails():
    ok = _bash('quiet bash -c "echo BuildBackendWarning; echo noise >&2"; echo done')
    assert ok.returncode == 0 and ok.stdout == "done\n" and ok.stderr == ""
    bad = _bash('quiet bash -c "echo why it failed; exit 3" || echo "status $?"')
    assert "why it failed" in bad.stderr and "status 3" in bad.stdout


def test_every_pip_call_in_run_goes_through_quiet():
    for line in RUN.read_text().splitlines():
        if re.search(r"-m pip (install|download)", line):
            assert line.strip().startswith("quiet "), line
