"""Start-up hook of hf_linear_decay: `--lr_scheduler_type linear_refined` in every interpreter, however launched.

Installed with the package as `hf_linear_decay_autoload.pth`, which every Python start runs (the `site` module).
It imports nothing and costs microseconds (`python -m benchmarks.bench_cli_startup` measures it): it puts one finder
in `sys.meta_path` that waits for `transformers`; when transformers starts loading, the finder imports
`hf_linear_decay`, whose registration is itself post-import hooks. So a stock script, `trl sft`, `accelerate launch
script.py` or `torchrun script.py` accepts `linear_refined` with no code change and no runner.

Opt out: `HF_LINEAR_DECAY_AUTOLOAD=0` in the environment (then `import hf_linear_decay` or `python -m
hf_linear_decay.run` as before). A broken or half-removed package never stops the interpreter: the error is one line
on stderr, once.
"""

import os
import sys


class _WhenTransformersLoads:
    """Imports hf_linear_decay once, at the start of the first `import transformers`; inert afterwards."""

    armed = True

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != "transformers" or not cls.armed:
            return None
        cls.armed = False  # stays in sys.meta_path, inert: removing it now would shift the finders being iterated
        try:
            import hf_linear_decay  # noqa: F401  (registers linear_refined when transformers' modules load)
        except Exception as error:  # a broken install must not break the user's program
            sys.stderr.write(f"hf_linear_decay: linear_refined not registered ({type(error).__name__}: {error}); "
                             "set HF_LINEAR_DECAY_AUTOLOAD=0 to skip this hook\n")
        return None


def arm() -> None:
    if os.environ.get("HF_LINEAR_DECAY_AUTOLOAD", "1").strip().lower() in ("0", "false", "no", "off"):
        return
    if "transformers" in sys.modules:  # imported before the hook ran (not at start-up): register now
        _WhenTransformersLoads.find_spec("transformers")
    elif _WhenTransformersLoads not in sys.meta_path:
        sys.meta_path.insert(0, _WhenTransformersLoads)


arm()
