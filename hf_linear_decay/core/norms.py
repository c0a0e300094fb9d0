"""The gradient-norm vocabulary: which norms are recorded, under which tensor name, and which power refines them.

This table is the one place that knows the norms. The record, the schedule file, the measurement on every backend,
the callback, the readers and the CLI all iterate over `NORM_TYPES`, so adding a norm (say ℓ∞) is one row here.
No torch, no numpy: the CLI imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_NORM", "NORM_TYPES", "NormType", "TRAINER_NORM", "check_norm", "norm_for_optimizer", "norm_type"]


@dataclass(frozen=True)
class NormType:
    """One gradient-norm statistic.

    Attributes:
        name (`str`): what users type (`norm="l1"`, `--norm l1`).
        tensor (`str`): the record column and safetensors tensor that hold it, one value per optimizer step.
        order (`float`): the `ord` of `torch.linalg.vector_norm` that measures it.
        default_power (`float`): the refinement power p the paper pairs with it (η_t ∝ ĝ_t^-p · Σ_{s>t} ĝ_s^-p).
        pairs_with (`str`): the optimizer family it describes, for messages and docs.
        optimizers (`tuple[str]`): fragments of optimizer class names that default to this norm (empty: the default
            for every optimizer no row claims).
        from_trainer (`bool`): the Trainer computes this norm itself (its logged, pre-clip `grad_norm`): the
            callback takes the Trainer's value instead of measuring it, and a value of unknown kind is taken for it.
    """

    name: str
    tensor: str
    order: float
    default_power: float
    pairs_with: str
    optimizers: tuple = ()
    from_trainer: bool = False


#: Every norm the package records, in record order. Alg. 1 of the paper: l2 & p=2 (SGD); Alg. 2: l1 & p=1 (Adam):
#: optimizers that scale each coordinate by its own statistics pair with l1, all others with l2.
NORM_TYPES: dict[str, NormType] = {
    "l2": NormType("l2", "grad_norm_l2", 2.0, 2.0, "SGD-type optimizers (paper Alg. 1)", from_trainer=True),
    "l1": NormType("l1", "grad_norm_l1", 1.0, 1.0, "Adam-type, coordinate-wise optimizers (paper Alg. 2)",
                   optimizers=("adam", "lamb", "lion", "adafactor", "adagrad", "adadelta", "rmsprop", "sophia", "came",
                               "adan", "ademamix", "apollo", "galore", "lomo", "grokadam", "stableadam")),
}
#: The norm the Trainer computes (its `grad_norm`), which is also what a value of unknown kind is taken for.
TRAINER_NORM = DEFAULT_NORM = next(norm.name for norm in NORM_TYPES.values() if norm.from_trainer)


def check_norm(norm, *, name: str = "norm") -> str:
    """Return `norm` if it names a recorded norm, else raise a `ValueError` naming the parameter and the choices."""
    if not isinstance(norm, str) or norm not in NORM_TYPES:
        raise ValueError(f"`{name}` must be one of {list(NORM_TYPES)}, got {name}={norm!r}; "
                         + "; ".join(f"{n.name} for {n.pairs_with}" for n in NORM_TYPES.values()) + ".")
    return norm


def norm_type(norm) -> NormType:
    """The `NormType` row of a norm name (validated)."""
    return NORM_TYPES[check_norm(norm)]


def norm_for_optimizer(optimizer_name: str) -> str:
    """The norm an optimizer pairs with: the row whose `optimizers` match its class name ("l1" for Adam-family,
    coordinate-wise adaptive optimizers), else the default ("l2", SGD-family)."""
    lowered = optimizer_name.lower()
    return next((norm.name for norm in NORM_TYPES.values() if any(key in lowered for key in norm.optimizers)),
                DEFAULT_NORM)
