"""Build hooks: install the start-up hook `hf_linear_decay_autoload.pth` next to the package (see that module).

setuptools runs `build_py` for wheels and `editable_wheel` for `pip install -e`; each gets the one-line .pth file.
Everything else is in setup.cfg.
"""

import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH_NAME = "hf_linear_decay_autoload.pth"
# One line: site.py executes lines that start with "import"; a missing or broken module must not print a traceback.
PTH_LINE = "import sys; exec('try:\\n import hf_linear_decay_autoload\\nexcept Exception:\\n pass')\n"


def write_pth(folder: str) -> None:
    with open(os.path.join(folder, PTH_NAME), "w") as handle:
        handle.write(PTH_LINE)


class BuildPyWithHook(build_py):
    def run(self):
        super().run()
        write_pth(self.build_lib)


commands = {"build_py": BuildPyWithHook}
try:
    from setuptools.command.editable_wheel import editable_wheel

    class EditableWheelWithHook(editable_wheel):
        def _run_build_commands(self, dist_name, unpacked_wheel, build_lib, tmp_dir):
            # setuptools >= 64 puts what is in `unpacked_wheel` into the editable wheel (tests/test_autoload.py
            # checks that the hook is installed by `pip install -e .`)
            result = super()._run_build_commands(dist_name, unpacked_wheel, build_lib, tmp_dir)
            write_pth(unpacked_wheel)
            return result

    commands["editable_wheel"] = EditableWheelWithHook
except ImportError:  # setuptools < 64: no PEP 660 editable installs
    pass

setup(cmdclass=commands)
