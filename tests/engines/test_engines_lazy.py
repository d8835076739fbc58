"""The embedded default never imports Dask: every command loads without it."""

from __future__ import annotations

import subprocess
import sys


def test_no_command_imports_dask_until_its_executor_runs() -> None:
    # A fresh interpreter: this test process may have imported Dask for other tests.
    probe = (
        "import sys, nbia_audit, nbia_audit.cli.main, nbia_audit.engines.daskexec;"
        "from nbia_audit.cli.main import cli;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
