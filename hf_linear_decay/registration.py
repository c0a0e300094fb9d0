"""Register `linear_refined` as a Trainer `lr_scheduler_type`. The only code that touches transformers' registries.

`import hf_linear_decay` calls `register()` once. From then on `TrainingArguments(lr_scheduler_type="linear_refined")`,
`--lr_scheduler_type linear_refined` (HfArgumentParser lists it in `--help`), `get_scheduler("linear_refined", ...)`,
and pickle/JSON of the arguments work. Import the package before building a parser or `TrainingArguments`: the
parser freezes its choices when it is created. For unmodified scripts use `python -m hf_linear_decay.run script.py`.
"""

from __future__ import annotations

import functools

from .constants import SCHEDULER_NAME

_MEMBER_NAME = "LINEAR_REFINED"


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


def check_deepspeed_scheduler_conflict(lr_scheduler_type, deepspeed_config: dict | None) -> None:
    """Raise if `linear_refined` is requested while the DeepSpeed config defines its own `scheduler` block.

    transformers would silently use DeepSpeed's scheduler and never call ours.
    """
    if str(getattr(lr_scheduler_type, "value", lr_scheduler_type)) != SCHEDULER_NAME:
        return
    if isinstance(deepspeed_config, dict) and "scheduler" in deepspeed_config:
        kind = deepspeed_config["scheduler"].get("type") if isinstance(deepspeed_config["scheduler"], dict) else None
        raise ValueError(
            f"lr_scheduler_type='linear_refined' was requested, but the DeepSpeed config has its own `scheduler` block "
            f"(type {kind!r}), which transformers would use instead, silently. Remove the `scheduler` block from the "
            "DeepSpeed config to use linear_refined, or choose the DeepSpeed scheduler and drop linear_refined."
        )


def _guard_deepspeed(deepspeed_optim_sched):
    @functools.wraps(deepspeed_optim_sched)
    def guarded(trainer, hf_deepspeed_config, args, num_training_steps, model_parameters):
        check_deepspeed_scheduler_conflict(args.lr_scheduler_type, getattr(hf_deepspeed_config, "config", None))
        return deepspeed_optim_sched(trainer, hf_deepspeed_config, args, num_training_steps, model_parameters)

    guarded._hf_linear_decay_guard = True
    return guarded


def register() -> None:
    """Make `linear_refined` a Trainer scheduler type. Idempotent; never changes a built-in type."""
    from transformers import optimization
    from transformers.integrations import deepspeed as hf_deepspeed
    from transformers.trainer_utils import SchedulerType

    from .scheduler import get_linear_refined_schedule

    member = _extend_str_enum(SchedulerType, _MEMBER_NAME, SCHEDULER_NAME)
    current = optimization.TYPE_TO_SCHEDULER_FUNCTION.get(member)
    if current is not None and current is not get_linear_refined_schedule:
        raise KeyError(f"another function is already registered for {SCHEDULER_NAME!r}: {current!r}.")
    # Mutate the dict in place: get_scheduler reads this very object.
    optimization.TYPE_TO_SCHEDULER_FUNCTION[member] = get_linear_refined_schedule
    # deepspeed_init looks this function up in its module at call time, so wrapping the module attribute suffices.
    if not getattr(hf_deepspeed.deepspeed_optim_sched, "_hf_linear_decay_guard", False):
        hf_deepspeed.deepspeed_optim_sched = _guard_deepspeed(hf_deepspeed.deepspeed_optim_sched)


def is_registered() -> bool:
    from transformers import optimization
    from transformers.trainer_utils import SchedulerType

    member = SchedulerType._value2member_map_.get(SCHEDULER_NAME)
    return member is not None and member in optimization.TYPE_TO_SCHEDULER_FUNCTION
