"""Register `linear_refined` as a Trainer `lr_scheduler_type`. The only code that touches transformers' registries.

`import hf_linear_decay` calls `register()`, which must not import torch or transformers (the CLI imports the
package too). So each change is made when transformers loads the module it belongs to, through a post-import hook
(`when_imported`), or at once if that module is already loaded:

- `transformers.trainer_utils`: a `SchedulerType.LINEAR_REFINED` member, so `TrainingArguments(lr_scheduler_type=
  "linear_refined")` and `HfArgumentParser` (`--lr_scheduler_type linear_refined`, listed in `--help`) accept it;
- `transformers.optimization`: the `TYPE_TO_SCHEDULER_FUNCTION` entry that `get_scheduler` calls;
- `transformers.integrations.deepspeed`: a guard that refuses a DeepSpeed `scheduler` block with linear_refined;
- `transformers.trainer`: `AutoRecorder` in `DEFAULT_CALLBACKS`, so that the flag alone makes every Trainer
  check its scheduler kwargs at construction and record the norms of pass 1 (see `auto_recorder`).

Import the package before building a parser or `TrainingArguments`: the parser freezes its choices when it is
created. For unmodified scripts use `python -m hf_linear_decay.run script.py`.
"""

from __future__ import annotations

import functools
import importlib.abc
import sys
import threading

from .scheduler_kwargs import SCHEDULER_NAME

_MEMBER_NAME = "LINEAR_REFINED"

# ----- post-import hooks -------------------------------------------------------------------------------------------
_hooks: dict[str, list] = {}
_lock = threading.RLock()


class _RunHooksAfterExec(importlib.abc.Loader):
    """Wraps a module's loader: executes the module, then its hooks, then puts the original loader back."""

    def __init__(self, loader, name: str):
        self._loader, self._name = loader, name

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        module.__loader__ = module.__spec__.loader = self._loader
        with _lock:
            hooks = _hooks.pop(self._name, [])
        for hook in hooks:
            hook(module)

    def __getattr__(self, name):  # get_source, is_package, ... of the original loader
        return getattr(self._loader, name)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname not in _hooks:
            return None
        for finder in sys.meta_path:  # ask the finders after us (path, editable installs, zip imports ...)
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _RunHooksAfterExec(spec.loader, fullname)
                return spec
        return None


_FINDER = _PostImportFinder()


def when_imported(module_name: str, hook) -> None:
    """Call `hook(module)` once `module_name` has been imported: now if it is loaded, else right after it loads."""
    module = sys.modules.get(module_name)
    if module is not None and getattr(getattr(module, "__spec__", None), "_initializing", False) is False:
        hook(module)
        return
    with _lock:
        _hooks.setdefault(module_name, []).append(hook)
        if _FINDER not in sys.meta_path:
            sys.meta_path.insert(0, _FINDER)


# ----- the registrations -------------------------------------------------------------------------------------------
def _extend_str_enum(enum_cls, name: str, value: str):
    """Add a member to an existing `(str, Enum)` class in place; returns the existing member if already there.

    Python < 3.13 has no public API for this, so it does what `enum` does when it builds a member: set the member's
    private fields, then add it to the class attribute, the iteration order, the name map and the value map.
    """
    existing = enum_cls._value2member_map_.get(value)
    if existing is not None:
        return existing
    if name in enum_cls._member_map_:
        raise KeyError(f"{enum_cls.__name__}.{name} already exists with another value; cannot register {value!r}.")
    member = str.__new__(enum_cls, value)
    member._name_, member._value_ = name, value
    member.__objclass__ = enum_cls
    member.__init__(value)
    member._sort_order_ = len(enum_cls._member_names_)
    setattr(enum_cls, name, member)  # before _member_map_: EnumType.__setattr__ refuses to rebind a known member
    enum_cls._member_names_.append(name)
    enum_cls._member_map_[name] = member
    enum_cls._value2member_map_[value] = member
    return member


def _add_enum_member(trainer_utils) -> None:
    _extend_str_enum(trainer_utils.SchedulerType, _MEMBER_NAME, SCHEDULER_NAME)


def _add_scheduler_function(optimization) -> None:
    from .scheduler import get_linear_refined_schedule

    member = _extend_str_enum(optimization.SchedulerType, _MEMBER_NAME, SCHEDULER_NAME)
    current = optimization.TYPE_TO_SCHEDULER_FUNCTION.get(member)
    if current is not None and current is not get_linear_refined_schedule:
        raise KeyError(f"another function is already registered for {SCHEDULER_NAME!r}: {current!r}.")
    # Mutate the dict in place: get_scheduler reads this very object.
    optimization.TYPE_TO_SCHEDULER_FUNCTION[member] = get_linear_refined_schedule


def check_deepspeed_scheduler_conflict(lr_scheduler_type, deepspeed_config: dict | None) -> None:
    """Raise if `linear_refined` is requested while the DeepSpeed config defines its own `scheduler` block.

    transformers would silently use DeepSpeed's scheduler and never call ours.
    """
    if str(getattr(lr_scheduler_type, "value", lr_scheduler_type)) != SCHEDULER_NAME:
        return
    if isinstance(deepspeed_config, dict) and "scheduler" in deepspeed_config:
        block = deepspeed_config["scheduler"]
        kind = block.get("type") if isinstance(block, dict) else None
        raise ValueError(
            f"lr_scheduler_type='linear_refined' was requested, but the DeepSpeed config has its own `scheduler` block "
            f"(type {kind!r}), which transformers would use instead, silently. Remove the `scheduler` block from the "
            "DeepSpeed config to use linear_refined, or choose the DeepSpeed scheduler and drop linear_refined."
        )


def _guard_deepspeed(hf_deepspeed) -> None:
    # Verified against transformers 5.24: `deepspeed_init` looks `deepspeed_optim_sched` up in its module at call
    # time, so replacing the module attribute suffices (tests/test_registration.py fails if that changes).
    original = hf_deepspeed.deepspeed_optim_sched
    if getattr(original, "_hf_linear_decay_guard", False):
        return

    @functools.wraps(original)
    def guarded(trainer, hf_deepspeed_config, args, num_training_steps, model_parameters):
        check_deepspeed_scheduler_conflict(args.lr_scheduler_type, getattr(hf_deepspeed_config, "config", None))
        return original(trainer, hf_deepspeed_config, args, num_training_steps, model_parameters)

    guarded._hf_linear_decay_guard = True
    hf_deepspeed.deepspeed_optim_sched = guarded


def _add_default_callback(trainer_module) -> None:
    from .auto_recorder import AutoRecorder

    # Verified against transformers 5.24: Trainer.__init__ reads the module global DEFAULT_CALLBACKS when it builds its
    # callback handler and instantiates classes, so every later Trainer gets an AutoRecorder of its own.
    if AutoRecorder not in trainer_module.DEFAULT_CALLBACKS:
        trainer_module.DEFAULT_CALLBACKS.append(AutoRecorder)


def register() -> None:
    """Make `linear_refined` a Trainer scheduler type (now or when transformers loads). Idempotent."""
    when_imported("transformers.trainer_utils", _add_enum_member)
    when_imported("transformers.optimization", _add_scheduler_function)
    when_imported("transformers.integrations.deepspeed", _guard_deepspeed)
    when_imported("transformers.trainer", _add_default_callback)


def is_registered() -> bool:
    """Whether `get_scheduler("linear_refined", ...)` works in this process (imports transformers)."""
    from transformers import optimization
    from transformers.trainer_utils import SchedulerType

    member = SchedulerType._value2member_map_.get(SCHEDULER_NAME)
    return member is not None and member in optimization.TYPE_TO_SCHEDULER_FUNCTION
