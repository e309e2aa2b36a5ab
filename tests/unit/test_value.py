"""minibox.value.Value: fields, defaults, immutability, equality, _replace, _asdict, inheritance."""

import pickle

import pytest

from minibox.value import Value


class Point(Value):
    x: int
    y: int = 0
    label: str = ""

    @property
    def norm1(self) -> int:
        return abs(self.x) + abs(self.y)


class Point3(Point):
    z: int = 0


class Labelled(Point3):
    label: str = "here"  # a base's field, another default: it keeps its place


class Empty(Value):
    pass


def test_fields_and_defaults():
    p = Point(1, label="a")
    assert (p.x, p.y, p.label, p.norm1) == (1, 0, "a", 1)
    assert Point._fields == ("x", "y", "label") and Point3._fields == ("x", "y", "label", "z")
    assert Point3(1, 2, z=3)._asdict() == {"x": 1, "y": 2, "label": "", "z": 3}
    given_out_of_order = Point3(z=4, label="c", x=1)
    assert given_out_of_order._values() == (1, 0, "c", 4)
    assert Point3._make(given_out_of_order._values()) == given_out_of_order


def test_bad_construction_is_refused():
    for args, kwargs in (((), {}), ((1, 2, "a", 4), {}), ((1,), {"x": 2}), ((1,), {"w": 2})):
        with pytest.raises(TypeError):
            Point(*args, **kwargs)


def test_immutable_and_replace():
    p = Point(1, 2)
    with pytest.raises(AttributeError):
        p.x = 5
    q = p._replace(y=7)
    assert (p.y, q.y, q.x) == (2, 7, 1)
    with pytest.raises(TypeError):
        p._replace(w=1)


def test_equality_and_hash_by_type_and_fields():
    assert Point(1, 2) == Point(1, 2) and Point(1, 2) != Point(2, 1)
    assert Point(1, 2) != Point3(1, 2)  # another type, even with the same values
    assert len({Point(1, 2), Point(1, 2), Point(3)}) == 2
    assert repr(Point(1)) == "Point(x=1, y=0, label='')"
    assert pickle.loads(pickle.dumps(Point3(1, 2, "b", 4))) == Point3(1, 2, "b", 4)


def test_a_subclass_keeps_base_defaults_and_may_change_them():
    assert Point3(1).label == "" and Labelled(1) == Labelled(1, 0, "here", 0)
    assert Labelled._fields == Point3._fields and Labelled(1, z=2).norm1 == 1


def test_a_value_is_a_record_not_a_sequence_of_its_type():
    """Backed by a tuple, a Value still equals only a Value of its type, is always true,
    and _make takes exactly its number of values (a memo entry of another layout is refused)."""
    assert Point(1, 2) != (1, 2, "") and (1, 2, "") != Point(1, 2)
    assert bool(Empty()) and Empty() == Empty() and Empty() != Point(1)
    assert Point._make((1, 2, "a")) == Point(1, 2, "a") and type(Point(1)._values()) is tuple
    for wrong in ((1, 2), (1, 2, "a", 4)):
        with pytest.raises(ValueError):
            Point._make(wrong)
