"""`RefinementSettings`: how to refine a record, validated once where it is built and trusted afterwards."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from .methods import DEFAULT_METHOD, METHODS, check_method, check_method_options
from .norms import NORM_TYPES, check_norm, norm_for_optimizer
from .refine import DEFAULT_TAU, check_power, check_tau

__all__ = ["RefinementSettings", "check_overrides"]


@dataclass(frozen=True)
class RefinementSettings:
    """How to refine a record. `None` means "the default for this record" (see `resolved`).

    Attributes:
        method (`str`, defaults to `DEFAULT_METHOD`): a key of `hf_linear_decay.core.methods.METHODS`.
        norm (`str`, *optional*): "l1" or "l2"; default: from the recorded optimizer (Adam-type -> l1), else the one
            norm the record holds, else l2.
        tau (`float`, defaults to 0.1): median-filter window as a fraction of the run, in (0, 1].
        power (`float`, *optional*): weight power p > 0; default: the norm's pairing (2 for l2, 1 for l1).
        options (`dict`, *optional*): the method's own parameters (`METHODS[method].options`); defaults filled by
            `resolved`.

    Building one validates every field (the entry point for values from users); `updated` validates only the values
    it changes, and `resolved` fills defaults from the tables without checking them again.
    """

    method: str = DEFAULT_METHOD
    norm: str | None = None
    tau: float = DEFAULT_TAU
    power: float | None = None
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        check_method(self.method)
        if self.norm is not None:
            check_norm(self.norm)
        object.__setattr__(self, "tau", check_tau(self.tau))
        if self.power is not None:
            object.__setattr__(self, "power", check_power(self.power))
        object.__setattr__(self, "options", check_method_options(self.method, self.options))

    @classmethod
    def defaults(cls) -> RefinementSettings:
        """The default settings (constants of the tables, not checked again)."""
        return cls._trusted(method=DEFAULT_METHOD, norm=None, tau=DEFAULT_TAU, power=None, options={})

    @classmethod
    def _trusted(cls, **values) -> RefinementSettings:
        """Settings from values that are already valid (no second check)."""
        settings = object.__new__(cls)
        for item in fields(cls):
            object.__setattr__(settings, item.name, values[item.name])
        return settings

    def _values(self) -> dict:
        return {item.name: getattr(self, item.name) for item in fields(self)}

    def updated(self, *, names: dict | None = None, **overrides) -> RefinementSettings:
        """A copy with the non-`None` overrides applied, each validated once (`names` maps a field to the name its
        error message uses, e.g. `{"tau": "--tau"}`). A new norm without a power resets the power; a new method
        without options resets the options."""
        return self.with_checked(check_overrides(names=names, **overrides), names=names)

    def with_checked(self, overrides: dict, *, names: dict | None = None) -> RefinementSettings:
        """`updated` for overrides that `check_overrides` already validated (the method's options are checked here,
        against the method the result has)."""
        values = self._values()
        values.update({key: value for key, value in overrides.items() if key != "options"})
        if values["method"] != self.method and "options" not in overrides:
            values["options"] = {}
        if values["norm"] != self.norm and "power" not in overrides:
            values["power"] = None
        if "options" in overrides:
            values["options"] = check_method_options(values["method"], overrides["options"],
                                                     name=(names or {}).get("options", "method_options"))
        return RefinementSettings._trusted(**values)

    def resolved(self, record) -> RefinementSettings:
        """Concrete settings for `record`: every default filled in (from the tables: nothing to check again)."""
        norm = self.norm
        if norm is None:
            held = [n.name for n in NORM_TYPES.values() if n.tensor in record.recorded]
            if record.run.optimizer:
                norm = norm_for_optimizer(record.run.optimizer)
            elif len(held) == 1:
                norm = held[0]
            else:
                norm = "l2"
        power = NORM_TYPES[norm].default_power if self.power is None else self.power
        options = {key: option.default for key, option in METHODS[self.method].options.items()} | self.options
        return RefinementSettings._trusted(**{**self._values(), "norm": norm, "power": power, "options": options})


def check_overrides(*, names: dict | None = None, **overrides) -> dict:
    """The non-`None` overrides of `RefinementSettings` fields, each validated once (the options are checked when
    the method they belong to is known, in `with_checked`)."""
    names = names or {}
    checks = {"method": check_method, "norm": check_norm, "tau": check_tau, "power": check_power}
    unknown = sorted(set(overrides) - set(checks) - {"options"})
    if unknown:
        raise TypeError(f"unknown settings {unknown}; RefinementSettings has {list(checks) + ['options']}.")
    return {key: checks[key](value, name=names.get(key, key)) if key in checks else value
            for key, value in overrides.items() if value is not None}
