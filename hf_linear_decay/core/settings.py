"""`RefinementSettings`: how to refine a record. One way to make them: the constructor validates every field, and a
change is `dataclasses.replace` (or `updated`, which adds the resets a user expects), so it validates too."""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field, replace

from .methods import DEFAULT_METHOD, METHODS, check_method, check_method_options
from .norms import NORM_TYPES, check_norm, norm_for_optimizer
from .refine import DEFAULT_TAU, check_power, check_tau

__all__ = ["RefinementSettings"]

_FIELDS = ("method", "norm", "tau", "power", "options")


@dataclass(frozen=True)
class RefinementSettings:
    """How to refine a record. `None` means "the default for this record" (see `resolved`).

    Attributes:
        method (`str`, defaults to `DEFAULT_METHOD`): a key of `hf_linear_decay.core.methods.METHODS`.
        norm (`str`, *optional*): "l1" or "l2"; default: from the recorded optimizer (Adam-type -> l1), else the one
            norm the record holds, else the first row of the norm table.
        tau (`float`, defaults to 0.1): median-filter window as a fraction of the run, in (0, 1].
        power (`float`, *optional*): weight power p > 0; default: the norm's pairing (2 for l2, 1 for l1).
        options (`dict`, *optional*): the method's own parameters (`METHODS[method].options`); defaults filled by
            `resolved`.
        names (init only, `dict`, *optional*): the name each field has where the value came from (e.g.
            `{"tau": "--tau"}`), for the error messages.
        known_valid (init only, `tuple`): fields copied from settings that validated them already (what `updated`
            and `resolved` pass): each value is checked once, where it first enters a `RefinementSettings`.
    """

    method: str = DEFAULT_METHOD
    norm: str | None = None
    tau: float = DEFAULT_TAU
    power: float | None = None
    options: dict = field(default_factory=dict)
    names: InitVar[dict | None] = None
    known_valid: InitVar[tuple] = ()

    def __post_init__(self, names, known_valid):
        names = names or {}

        def check(field_name, checker, *args):
            if field_name not in known_valid:
                object.__setattr__(self, field_name, checker(*args, getattr(self, field_name),
                                                             name=names.get(field_name, field_name)))

        check("method", check_method)
        if self.norm is not None:
            check("norm", check_norm)
        check("tau", check_tau)
        if self.power is not None:
            check("power", check_power)
        if "options" not in known_valid or "method" not in known_valid:  # options belong to the method
            object.__setattr__(self, "options", check_method_options(self.method, self.options,
                                                                     name=names.get("options", "method_options")))

    def updated(self, *, names: dict | None = None, **overrides) -> RefinementSettings:
        """A copy with the non-`None` overrides, each checked (`names` as in the constructor). A new norm without a
        power resets the power; a new method without options resets the options."""
        unknown = sorted(set(overrides) - set(_FIELDS))
        if unknown:
            raise TypeError(f"unknown settings {unknown}; RefinementSettings has {', '.join(_FIELDS)}.")
        return self._copy({key: value for key, value in overrides.items() if value is not None}, (), names)

    def taking(self, given: RefinementSettings, fields, *, options=None, names: dict | None = None):
        """`updated` with `given`'s values for `fields`: settings built from the same input a moment before (to check
        it before any other work), so those values are not checked again; `options`, which belong to the method the
        copy ends up with, are checked here."""
        changes = {name: getattr(given, name) for name in fields}
        if options is not None:
            changes["options"] = options
        return self._copy(changes, tuple(name for name in fields if name != "options"), names)

    def _copy(self, changes: dict, checked: tuple, names) -> RefinementSettings:
        if changes.get("method", self.method) != self.method and "options" not in changes:
            changes["options"] = {}
        if changes.get("norm", self.norm) != self.norm and "power" not in changes:
            changes["power"] = None
        unchanged = tuple(name for name in _FIELDS if name not in changes or name in checked)
        return replace(self, names=names, known_valid=unchanged, **changes)

    def resolved(self, record) -> RefinementSettings:
        """Concrete settings for `record`: every default filled in."""
        norm = self.norm
        if norm is None:
            held = [n.name for n in NORM_TYPES.values() if n.tensor in record.recorded]
            if record.run.optimizer:
                norm = norm_for_optimizer(record.run.optimizer)
            elif len(held) == 1:
                norm = held[0]
            else:
                norm = next(iter(NORM_TYPES))
        power = NORM_TYPES[norm].default_power if self.power is None else self.power
        options = {key: option.default for key, option in METHODS[self.method].options.items()} | self.options
        # Defaults from the tables joined to values this object validated: nothing new to check.
        return replace(self, norm=norm, power=power, options=options, known_valid=_FIELDS)
