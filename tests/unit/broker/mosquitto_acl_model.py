"""An independent model of how Mosquitto 2.0.11 evaluates an ``acl_file`` (for the tests).

Follows ``src/security.c`` (``acl__check_dollar``) and ``src/security_default.c``
(``aclfile__parse``, ``add__acl``, ``mosquitto_acl_check_default``) of Mosquitto v2.0.11:
``deny`` lines go to the front of a user's list; user lines whose topic does not start with
``$`` never match a ``$`` topic; patterns apply to every client after its user lines, with
``%u`` (username) and ``%c`` (client id) substituted; subscriptions are not checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

READ = 1
WRITE = 2
NONE = 0
_ACCESS = {"read": READ, "write": WRITE, "readwrite": READ | WRITE, "deny": NONE}


@dataclass
class AclFile:
    users: dict[str | None, list[tuple[int, str]]] = field(default_factory=dict)
    patterns: list[tuple[int, str]] = field(default_factory=list)


def _add(entries: list[tuple[int, str]], access: int, topic: str) -> None:
    if access == NONE:
        entries.insert(0, (access, topic))
    else:
        entries.append((access, topic))


def parse(text: str) -> AclFile:
    acl = AclFile()
    user: str | None = None
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line or line.startswith("#"):
            continue
        token, _, rest = line.partition(" ")
        if token in ("topic", "pattern"):
            access_s, _, topic = rest.partition(" ")
            if not topic:
                access, topic = READ | WRITE, access_s
            else:
                access = _ACCESS[access_s]
            topic = topic.strip()
            if token == "topic":
                _add(acl.users.setdefault(user, []), access, topic)
            else:
                _add(acl.patterns, access, topic)
        elif token == "user":
            user = rest.strip()
        else:
            raise ValueError(f"invalid ACL line {line!r}")
    return acl


def matches_sub(sub: str, topic: str) -> bool:
    """``mosquitto_topic_matches_sub``."""
    if topic.startswith("$") and sub[:1] in ("+", "#"):
        return False
    s_levels, t_levels = sub.split("/"), topic.split("/")
    for i, level in enumerate(s_levels):
        if level == "#":
            return True
        if i >= len(t_levels) or (level != "+" and level != t_levels[i]):
            return False
    return len(s_levels) == len(t_levels)


def check(acl: AclFile, *, username: str, client_id: str, topic: str, access: int) -> bool:
    """Whether Mosquitto grants ``access`` (READ: delivery, WRITE: publish) on ``topic``."""
    if topic.startswith("$"):
        if topic.startswith("$SYS"):
            if access == WRITE and not matches_sub("$SYS/broker/connection/+/state", topic):
                return False
        elif topic.startswith("$share") and access in (READ, WRITE):
            return False
    for entry_access, entry_topic in acl.users.get(username, []):
        if topic.startswith("$") and not entry_topic.startswith("$"):
            continue
        if matches_sub(entry_topic, topic):
            if entry_access == NONE:
                return False
            if access & entry_access:
                return True
    if acl.patterns and any(c in username + client_id for c in "+#"):
        return False
    for entry_access, pattern in acl.patterns:
        local = pattern.replace("%c", client_id).replace("%u", username)
        if matches_sub(local, topic):
            if entry_access == NONE:
                return False
            if access & entry_access:
                return True
    return False
