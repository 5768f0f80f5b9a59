"""Which client names the PKI refuses beyond the syntax rules of :mod:`schemas.ids`. Pure.

- An app id or a service name that is a valid VIN: a broker that knows a client only by its
  CN (Mosquitto) would apply a vehicle's rules to it, and the embedded broker's policy
  refuses such a certificate anyway.
- An app and a service with the same name: Mosquitto's ACL has one ``user <CN>`` block per
  name and refuses to start when a name is both (``broker.policy.mosquitto_acl``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from schemas.ids import InvalidIdentifier, Role, is_vin

_WHAT = {Role.APP: "app id", Role.SERVICE: "service name"}
_OTHER = {Role.APP: Role.SERVICE, Role.SERVICE: Role.APP}


class NameClash(ValueError):
    """An app id that is already a service name, or the reverse."""


def other_role(role: Role) -> Role | None:
    """The role whose names ``role``'s names must not collide with (None for vehicles)."""
    return _OTHER.get(role)


def refuse_vins(role: Role, ids: Iterable[str]) -> None:
    """Raise ``InvalidIdentifier`` if an app id or a service name in ``ids`` is a VIN."""
    if role is Role.VEHICLE:
        return
    for ident in ids:
        if is_vin(ident):
            raise InvalidIdentifier(
                f"{_WHAT[role]} {ident!r} is a valid VIN; only vehicles may have a VIN as name"
            )


def refuse_clashes(role: Role, ids: Sequence[str], *, taken: Iterable[str]) -> None:
    """Raise :class:`NameClash` if one of ``ids`` is in ``taken`` (the other role's names)."""
    other = other_role(role)
    if other is None:
        return
    clash = sorted(set(ids) & set(taken))
    if clash:
        names = ", ".join(repr(name) for name in clash)
        article = "an" if other is Role.APP else "a"
        verb = f"is already {article}" if len(clash) == 1 else "are already"
        plural = "" if len(clash) == 1 else "s"
        raise NameClash(
            f"{_WHAT[role]}{plural} {names} {verb} {_WHAT[other]}{plural}; an app and a service "
            "may not share a name (Mosquitto knows clients only by their CN)"
        )
