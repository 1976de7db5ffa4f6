"""The command line starts without torch: decode workers re-import it as their main program."""

import subprocess
import sys


def test_importing_the_cli_loads_no_torch():
    code = "import sys, pipeline.cli; print(sorted(m for m in ('torch', 'open_clip', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"
