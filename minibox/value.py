"""Immutable records declared like NamedTuples, but defined without generating code.

    class PortMapping(Value):
        host_ip: str
        host_port: int
        proto: str = "tcp"

Fields come from the class annotations, in order (a base class's first), defaults from the
class attributes. Instances are immutable, compare and hash by type and fields, and have
NamedTuple's `_fields`, `_replace` and `_asdict`.

Why not NamedTuple or a frozen dataclass: both compile methods when the class is defined.
minibox defines about a hundred such classes, and every command pays for them before doing
anything: measured on this project's machine kind, a frozen dataclass costs ~1.5 ms to
define, a typing.NamedTuple ~0.25 ms, a Value ~0.02 ms.

A Value is a tuple of its values, read through namedtuple's own field descriptor, as a
NamedTuple is. It was a dict of them: making a 21-field dict costs ~9,000 instructions
(each key inserted, the table grown three times), a tuple ~1,700, and `ps` at a thousand
containers makes three Values each (measured with callgrind). A field read costs ~80
instructions more than a dict's. Unlike a plain tuple, a Value equals only a Value of its
type, and is always true (as a tuple with fields is: no Python code runs to tell).
"""

from __future__ import annotations

from collections import _tuplegetter  # namedtuple's field descriptor (a property where C lacks it)
from typing import Any

_MISSING = object()


class Value(tuple):
    __slots__ = ()
    _fields: tuple[str, ...] = ()
    _defaults: dict[str, Any] = {}

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        fields: list[str] = []
        defaults: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            if klass is not cls and "_defaults" in klass.__dict__:
                defaults.update(klass._defaults)  # its class attributes, before they became descriptors
            for name in klass.__dict__.get("__annotations__", {}):
                if name.startswith("_"):
                    continue
                if name not in fields:
                    fields.append(name)
                default = klass.__dict__.get(name, _MISSING)
                if default is not _MISSING and not isinstance(default, (property, classmethod, staticmethod,
                                                                        _tuplegetter)):
                    defaults[name] = default
        cls._fields = tuple(fields)
        cls._defaults = defaults
        for i, name in enumerate(fields):  # a subclass's defaults are its own class attributes: replaced too
            setattr(cls, name, _tuplegetter(i, None))
        if not fields:  # a record, not a sequence: true even with no fields (with fields, a tuple is)
            cls.__bool__ = lambda self: True

    def __new__(cls, *args: Any, **kwargs: Any):
        fields = cls._fields
        if len(args) > len(fields):
            raise TypeError(f"{cls.__name__} takes {len(fields)} values, {len(args)} given")
        if not kwargs and len(args) == len(fields):
            return tuple.__new__(cls, args)
        given = dict(zip(fields, args))
        for name, value in kwargs.items():
            if name not in fields or name in given:
                raise TypeError(f"{cls.__name__}: unexpected or repeated field {name!r}")
            given[name] = value
        values = []
        for name in fields:
            if name in given:
                values.append(given[name])
            elif name in cls._defaults:
                values.append(cls._defaults[name])
            else:
                raise TypeError(f"{cls.__name__}: missing field {name!r}")
        return tuple.__new__(cls, values)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: use _replace({name}=...)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash((type(self).__name__, *self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{f}={v!r}' for f, v in zip(self._fields, self))})"

    def __reduce__(self):
        return (type(self), tuple(self))

    def _replace(self, **changes: Any):
        unknown = set(changes) - set(self._fields)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {sorted(unknown)[0]!r}")
        return tuple.__new__(type(self), [changes.get(f, v) for f, v in zip(self._fields, self)])

    @classmethod
    def _from_mapping(cls, data: dict[str, Any]):
        """An instance of the fields `data` has (other keys ignored, defaults filled in): what
        a record read back from JSON takes. `ps` builds thousands; this is ~3x cheaper than
        cls(**fields), which checks for unknown and repeated names that cannot occur here."""
        defaults = cls._defaults
        values = []
        for name in cls._fields:
            if name in data:
                values.append(data[name])
            elif name in defaults:
                values.append(defaults[name])
            else:
                raise TypeError(f"{cls.__name__}: missing field {name!r}")
        return tuple.__new__(cls, values)

    @classmethod
    def _make(cls, values):
        """An instance of `values`, in field order and all given, unchecked but for their
        number: what a memo whose checksum held takes (engine.listing)."""
        new = tuple.__new__(cls, values)
        if len(new) != len(cls._fields):
            raise ValueError(f"{cls.__name__} takes {len(cls._fields)} values, {len(new)} given")
        return new

    def _values(self) -> tuple:
        """Its values in field order, as a plain tuple (one marshal can keep): the inverse of _make."""
        return tuple(self)

    def _asdict(self) -> dict[str, Any]:
        return dict(zip(self._fields, self))
