"""Run an unmodified training script with `linear_refined` available.

    python -m hf_linear_decay.run SCRIPT.py [SCRIPT ARGS...]
    accelerate launch -m hf_linear_decay.run SCRIPT.py [SCRIPT ARGS...]

Registers the scheduler type, then runs SCRIPT.py as `__main__` with `sys.argv = [SCRIPT.py, ARGS...]` and the
script's folder first on `sys.path`, exactly as `python SCRIPT.py ARGS...` would. Stock scripts such as transformers'
examples then accept `--lr_scheduler_type linear_refined`.
"""

from __future__ import annotations

import os
import runpy
import sys


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stdout if argv else sys.stderr)
        raise SystemExit(0 if argv else 2)
    script = argv[0]
    if not os.path.isfile(script):
        print(f"hf_linear_decay.run: error: SCRIPT {script!r} is not a file", file=sys.stderr)
        raise SystemExit(2)
    import hf_linear_decay  # noqa: F401  (registers linear_refined)

    sys.argv = argv
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
