"""The maths and file-format modules must not pull in torch, transformers or accelerate."""

import os
import subprocess
import sys

import hf_linear_decay

PACKAGE_DIR = os.path.dirname(hf_linear_decay.__file__)

# Load the modules without running the package __init__ (which registers the Trainer scheduler and so imports
# transformers); that is how someone reusing refine.py alone would see it.
PROBE = f"""
import sys, types
package = types.ModuleType("hf_linear_decay")
package.__path__ = [{PACKAGE_DIR!r}]
package.__version__ = "probe"
sys.modules["hf_linear_decay"] = package
import hf_linear_decay.refine, hf_linear_decay._reference, hf_linear_decay.schedule_file, hf_linear_decay.norm_sources
heavy = sorted({{name.split(".")[0] for name in sys.modules}} & {{"torch", "transformers", "accelerate"}})
print("heavy:", heavy)
"""


def test_refine_and_file_format_import_no_torch():
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "heavy: []"
