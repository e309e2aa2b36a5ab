"""Immutable records declared like NamedTuples, but defined without generating code.

    class PortMapping(Value):
        host_ip: str
        host_port: int
        proto: str = "tcp"

Fields come from the class annotations, in order (a base class's first), defaults from the
class attributes. Instances are immutable, compare and hash by type and fields, and have
NamedTuple's `_fields`, `_replace` and `_asdict`.

Why not NamedTuple or a frozen dataclass: both compile methods when the class is defined.
minibox defines about eighty such classes, and every command pays for them before doing
anything: measured on this project's machine kind, a frozen dataclass costs ~1.5 ms to
define, a typing.NamedTuple ~0.25 ms, a Value ~0.02 ms. Building an instance costs a few
microseconds more than a NamedTuple's, which a command does a few hundred times at most.
"""

from __future__ import annotations

from typing import Any

_MISSING = object()


class Value:
    __slots__ = ("__dict__",)
    _fields: tuple[str, ...] = ()
    _defaults: dict[str, Any] = {}

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        fields: list[str] = []
        defaults: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            for name in klass.__dict__.get("__annotations__", {}):
                if name.startswith("_") or name in fields:
                    continue
                fields.append(name)
                default = klass.__dict__.get(name, _MISSING)
                if default is not _MISSING and not isinstance(default, (property, classmethod, staticmethod)):
                    defaults[name] = default
        cls._fields = tuple(fields)
        cls._defaults = defaults

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        fields = self._fields
        if len(args) > len(fields):
            raise TypeError(f"{type(self).__name__} takes {len(fields)} values, {len(args)} given")
        values = dict(zip(fields, args))
        for name, value in kwargs.items():
            if name not in fields or name in values:
                raise TypeError(f"{type(self).__name__}: unexpected or repeated field {name!r}")
            values[name] = value
        for name in fields:
            if name not in values:
                if name not in self._defaults:
                    raise TypeError(f"{type(self).__name__}: missing field {name!r}")
                values[name] = self._defaults[name]
        object.__setattr__(self, "__dict__", values)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: use _replace({name}=...)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.__dict__ == self.__dict__

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash((type(self).__name__,) + self._values())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{f}={self.__dict__[f]!r}' for f in self._fields)})"

    def __reduce__(self):
        return (type(self), self._values())

    def _replace(self, **changes: Any):
        unknown = set(changes) - set(self._fields)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {sorted(unknown)[0]!r}")
        new = object.__new__(type(self))
        object.__setattr__(new, "__dict__", {**self.__dict__, **changes})
        return new

    @classmethod
    def _from_mapping(cls, data: dict[str, Any]):
        """An instance of the fields `data` has (other keys ignored, defaults filled in): what
        a record read back from JSON takes. `ps` builds thousands; this is ~3x cheaper than
        cls(**fields), which checks for unknown and repeated names that cannot occur here."""
        defaults = cls._defaults
        values = {}
        for name in cls._fields:
            if name in data:
                values[name] = data[name]
            elif name in defaults:
                values[name] = defaults[name]
            else:
                raise TypeError(f"{cls.__name__}: missing field {name!r}")
        new = object.__new__(cls)
        object.__setattr__(new, "__dict__", values)
        return new

    @classmethod
    def _make(cls, values):
        """An instance of `values`, in field order and all given, unchecked: what a memo whose
        checksum held takes (engine.listing), ~5x cheaper than cls(*values)."""
        new = object.__new__(cls)
        object.__setattr__(new, "__dict__", dict(zip(cls._fields, values, strict=True)))
        return new

    def _values(self) -> tuple:
        """Its values in field order, whatever order they were given in: the inverse of _make."""
        return tuple(map(self.__dict__.__getitem__, self._fields))

    def _asdict(self) -> dict[str, Any]:
        return {f: self.__dict__[f] for f in self._fields}
