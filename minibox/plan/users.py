"""`-u/--user` and `--group-add`, resolved against the image's /etc/passwd and /etc/group as Docker does.

    -u 1000          uid 1000, gid from its passwd entry if any, else 0 (as Docker)
    -u 1000:1000     exactly these
    -u nobody        by name: its uid, gid and home from passwd
    -u nobody:users  a group by name (or number)

Supplementary groups are those naming the user in /etc/group, plus --group-add. A name
that neither file knows is refused with Docker's message. Pure: the files' text in.
"""

from __future__ import annotations

from minibox.errors import InvalidSpec
from minibox.value import Value


class User(Value):
    uid: int
    gid: int
    groups: tuple[int, ...] = ()
    home: str = "/"
    name: str = ""

    @property
    def root(self) -> bool:
        return self.uid == 0


def _entries(text: str, fields: int) -> list[list[str]]:
    out = []
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            parts = line.split(":")
            if len(parts) >= fields:
                out.append(parts)
    return out


def resolve(spec: str, group_add: tuple[str, ...], passwd: str, group: str) -> User:
    """The user `spec` names ("" is root), with its groups: those naming it in /etc/group,
    and --group-add's."""
    users = _entries(passwd, 7)
    groups = _entries(group, 4)
    who, _, grp = (spec or "0").partition(":")
    entry = next((p for p in users if p[0] == who), None)
    if entry is None and who.isdigit():
        entry = next((p for p in users if p[2] == who), None)
    if entry is None and not who.isdigit():
        raise InvalidSpec(f"unable to find user {who}: no matching entries in passwd file")
    uid = _id(entry[2] if entry else who, f"the uid of user {who}")
    gid = _id(entry[3], f"the gid of user {who}") if entry and entry[3].isdigit() else 0
    name = entry[0] if entry else ""
    home = entry[5] if entry else ("/root" if uid == 0 else "/")
    if grp:
        gid = _group_id(grp, groups)
    extra = {_id(g[2], f"the gid of group {g[0]}") for g in groups if name and name in g[3].split(",")
             and g[2].isdigit()}
    extra |= {_group_id(g, groups) for g in group_add}
    return User(uid, gid, tuple(sorted(extra - {gid})), home, name)


def _group_id(text: str, groups: list[list[str]]) -> int:
    entry = next((g for g in groups if g[0] == text), None)
    if entry is not None:
        return _id(entry[2], f"the gid of group {text}")
    if text.isdigit():
        return _id(text, f"group {text}")
    raise InvalidSpec(f"unable to find group {text}: no matching entries in group file")


MAX_ID = (1 << 32) - 2  # (uid_t)-1 means "unchanged" to the kernel


def _id(text: str, what: str) -> int:
    """A uid or gid from -u or from the image's (or container's) passwd and group files,
    which the image's author wrote: a decimal number the kernel takes, or InvalidSpec."""
    if not text.isdigit() or int(text) > MAX_ID:
        raise InvalidSpec(f"{what} is {text[:20]!r}, which is not an id (0 to {MAX_ID})")
    return int(text)


def validate(spec: str) -> str:
    """The syntax of -u only (names are checked against the image's files at run)."""
    who, colon, grp = spec.partition(":")
    if not who or (colon and not grp) or any(c in spec for c in " /\n"):
        raise InvalidSpec(f'invalid --user "{spec}": use NAME, UID, NAME:GROUP or UID:GID')
    return spec
