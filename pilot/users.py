"""A job's `user` ("www-data", "1000", "1000:1000", "www-data:www-data") →
the ids its processes run with.

Names are looked up in the image's own /etc/passwd and /etc/group, read as
files: a scratch image has no NSS configuration, and what the image says is
what the user means (Docker and runc read the same files). A numeric uid
needs no entry. Supplementary groups are what `initgroups` would set when
only a user is given (its primary group plus every /etc/group entry listing
it); an explicit group is the only group, as `su-exec`, `gosu` and runc do.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

from pilot.datatypes import Invalid

PASSWD = "/etc/passwd"
GROUP = "/etc/group"
MAX_ID = 2**32 - 2  # (uid_t)-1 means "unchanged" to the kernel


@dataclass(frozen=True)
class User:
    """Who a job's processes run as. `name` and `home` come from the passwd
    entry (None for a uid without one)."""

    spec: str  # as the user wrote it
    uid: int
    gid: int
    groups: Tuple[int, ...]
    name: Optional[str] = None
    home: Optional[str] = None


@dataclass(frozen=True)
class _Entry:
    name: str
    id: int
    gid: int = 0
    home: str = "/"
    members: Tuple[str, ...] = ()


def resolve(spec: str, passwd: str = PASSWD, group: str = GROUP) -> User:
    """`spec` → a User, or Invalid saying what is wrong with it."""
    if spec.strip() == "":
        raise Invalid("must not be empty (expected a user name or uid, optionally :group)")
    if spec.count(":") > 1:
        raise Invalid(f"'{spec}' is not a user (expected NAME, UID, NAME:GROUP or UID:GID)")
    user_part, _, group_part = spec.partition(":")
    if user_part == "" or (":" in spec and group_part == ""):
        raise Invalid(f"'{spec}' is not a user (expected NAME, UID, NAME:GROUP or UID:GID)")
    entry = _find(_read(passwd, _passwd_entry), user_part, passwd, "user")
    uid = entry.id if entry else _number(user_part)
    if group_part:
        grp = _find(_read(group, _group_entry), group_part, group, "group")
        gid = grp.id if grp else _number(group_part)
        return User(spec, uid, gid, (gid,), *_identity(entry))
    if entry is None:
        # Docker's `--user 1000` without a passwd entry: group 0, no others.
        return User(spec, uid, 0, (0,))
    return User(spec, uid, entry.gid, _initgroups(entry, group), *_identity(entry))


def _identity(entry: Optional[_Entry]) -> Tuple[Optional[str], Optional[str]]:
    return (entry.name, entry.home) if entry else (None, None)


def _initgroups(entry: _Entry, group: str) -> Tuple[int, ...]:
    """The primary group first, then each group listing the user, once."""
    found: List[int] = [entry.gid]
    for grp in _read(group, _group_entry):
        if entry.name in grp.members and grp.id not in found:
            found.append(grp.id)
    return tuple(found)


def _find(entries: Optional[List[_Entry]], text: str, path: str, what: str) -> Optional[_Entry]:
    """The entry named `text`, or for a number the entry with that id (if
    any); an unknown name is Invalid."""
    if text.isdigit():
        _number(text)
        return next((e for e in entries or () if e.id == int(text)), None)
    for entry in entries or ():
        if entry.name == text:
            return entry
    if entries is None:
        raise Invalid(f"no {what} named '{text}': {path} cannot be read (a numeric id needs no entry)")
    raise Invalid(f"no {what} named '{text}' in {path}")


def _number(text: str) -> int:
    if not text.isdigit() or int(text) > MAX_ID:
        raise Invalid(f"'{text}' is not a valid id (expected 0 to {MAX_ID})")
    return int(text)


def _read(path: str, parse) -> Optional[List[_Entry]]:
    """Entries of a passwd/group file, None when it cannot be read. Lines
    that are not well formed are skipped, as getpwnam skips them."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "surrogateescape")
    except OSError:
        return None
    entries = []
    for line in text.splitlines():
        fields = line.split(":")
        if line.startswith(("#", "+", "-")) or len(fields) < 4:
            continue
        entry = parse(fields)
        if entry is not None:
            entries.append(entry)
    return entries


def _passwd_entry(fields: List[str]) -> Optional[_Entry]:
    """name:password:uid:gid:gecos:home:shell"""
    if len(fields) < 6 or not (fields[2].isdigit() and fields[3].isdigit()):
        return None
    return _Entry(fields[0], int(fields[2]), int(fields[3]), fields[5] or "/")


def _group_entry(fields: List[str]) -> Optional[_Entry]:
    """name:password:gid:member,member"""
    if not fields[2].isdigit():
        return None
    members = tuple(m for m in fields[3].split(",") if m)
    return _Entry(fields[0], int(fields[2]), members=members)

