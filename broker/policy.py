"""Who may connect, publish and subscribe: the broker's whole access policy, as pure functions.

Both brokers enforce these rules: the embedded amqtt broker calls the functions below for
every CONNECT, PUBLISH, SUBSCRIBE and delivery; Mosquitto gets :func:`mosquitto_acl`, an ACL
file generated from the very same rule table (``tests/unit/broker`` checks that the two agree).

Identity (CONTRACT §1): the client certificate's subject ``CN=<id>, OU=<role>`` names exactly
one :class:`~schemas.ids.Identity`. Anything else (no or several CN/OU, an unknown OU such as
the broker's own ``OU=broker``, a CN that is no VIN for a vehicle, a CA certificate, a
certificate without clientAuth) is refused with the precise reason. App ids and service names
that are themselves valid VINs are refused too: Mosquitto knows a client only by its CN, so
such a name would act as that vehicle there.

Client id: vehicles and apps must use their CN. A service may use any client id except a VIN;
nobody may take a client id whose session belongs to another identity.

Topics, derived from :class:`schemas.topics.TopicKind` (``<own>`` is the certificate's CN):

=========  ==========================================  =========================================
role       publish                                     receive (and subscribe within)
=========  ==========================================  =========================================
vehicle    ``vehicles/<own>/connection``, ``telemetry``, ``vehicles/<own>/commands/+``,
           ``shadow/reported``, ``commands/+/result``, ``shadow/desired``, ``ota/jobs``,
           ``ota/status``, ``ota/chunks/request``      ``ota/chunks/+/+``, ``errors``
app        ``apps/<own>/commands``,                    ``apps/<own>/#``
           ``apps/<own>/vehicles/+/shadow/desired``
service    every topic not starting with ``$``         every topic not starting with ``$``,
                                                       plus ``$SYS/#``
=========  ==========================================  =========================================

A topic is granted when it matches one of these filters; ids inside it (command id, VIN of an
app's shadow request) are the gateway's to validate (it answers on the errors topic, which a
silent broker drop could not do).

A subscription filter is granted only when every topic it can match is granted (MQTT filter
containment, :func:`filter_within`). So a vehicle may subscribe ``vehicles/<own>/commands/+``,
``.../ota/chunks/+/+`` or ``.../ota/chunks/<job id>/+``, but not ``vehicles/<own>/#``,
``.../commands/#`` (it covers ``commands/<id>/result``, its own uplink) nor
``.../ota/chunks/#`` (it covers ``ota/chunks/request``, its own uplink) nor
``.../ota/chunks/<job id>/#`` (``#`` also matches the parent level); ``#``, ``+/...``,
``vehicles/+/...``, ``$SYS/#`` and ``$share/...`` are refused to vehicles and apps alike.
Services may subscribe anything valid, ``$share/<group>/...`` included (Mosquitto only).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from schemas.ids import (
    Identity,
    InvalidIdentifier,
    Role,
    is_vin,
    validate_app_id,
    validate_service_name,
    validate_vin,
)
from schemas.topics import TopicError, TopicKind, topic_matches, validate_filter

SHARE_PREFIX: Final = "$share/"
SYS_FILTER: Final = "$SYS/#"
"""The broker's statistics: services may read them."""
_OWNER: Final = "+"
"""In a :attr:`TopicKind.filter` the owner (VIN or app id) is the first ``+`` level."""


class IdentityError(ValueError):
    """A certificate that names no fleetgate identity; the message says exactly why."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to one access question, with the reason (logged, and shown in tests)."""

    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


def _allow(reason: str) -> Decision:
    return Decision(True, reason)


def _deny(reason: str) -> Decision:
    return Decision(False, reason)


# --- identity --------------------------------------------------------------------------------


def identity_from_subject(subject: x509.Name) -> Identity:
    """The identity that ``CN=<id>, OU=<role>`` names, or :class:`IdentityError` saying why."""
    cns = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    ous = subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    if len(cns) != 1:
        raise IdentityError(f"the certificate subject has {len(cns)} CN attributes; exactly 1")
    if len(ous) != 1:
        raise IdentityError(f"the certificate subject has {len(ous)} OU attributes; exactly 1")
    cn, ou = str(cns[0].value), str(ous[0].value)
    try:
        role = Role(ou)
    except ValueError:
        roles = ", ".join(r.value for r in Role)
        raise IdentityError(f"unknown OU {ou!r}: a client certificate has OU {roles}") from None
    _check_id(role, cn)
    return Identity(role=role, id=cn)


def _check_id(role: Role, ident: str) -> None:
    """:class:`IdentityError` unless ``ident`` is valid for ``role`` (a VIN only for vehicles)."""
    try:
        if role is Role.VEHICLE:
            validate_vin(ident)
        elif role is Role.APP:
            validate_app_id(ident)
        else:
            validate_service_name(ident)
    except InvalidIdentifier as exc:
        raise IdentityError(f"CN of an OU={role.value} certificate: {exc}") from None
    if role is not Role.VEHICLE and is_vin(ident):
        raise IdentityError(
            f"{role.name.lower()} CN {ident!r} is a valid VIN; only vehicles may have one "
            "(a broker that knows clients by CN would take it for that vehicle)"
        )


def identity_from_certificate(cert: x509.Certificate) -> Identity:
    """The identity of a TLS client certificate (already verified against the CA chain)."""
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        basic = None
    if basic is not None and basic.ca:
        raise IdentityError("a CA certificate is not a client identity")
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = None
    if usages is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        raise IdentityError("the certificate's extended key usage does not allow clientAuth")
    return identity_from_subject(cert.subject)


# --- the rule table --------------------------------------------------------------------------


def _owned(template: str, owner: str) -> str:
    return template.replace(_OWNER, owner, 1)


def _kind_templates(role: Role, *, uplink: bool) -> tuple[str, ...]:
    return tuple(k.filter for k in TopicKind if k.role is role and k.is_uplink is uplink)


def _app_root_template() -> str:
    """``apps/+/#``: everything under an app's own root (CONTRACT §1: ``apps/<own id>/#``)."""
    root = TopicKind.APP_COMMAND.filter.split("/")[:2]
    return "/".join([*root, "#"])


_PUBLISH_TEMPLATES: Final = {
    Role.VEHICLE: _kind_templates(Role.VEHICLE, uplink=True),
    Role.APP: _kind_templates(Role.APP, uplink=True),
}
_RECEIVE_TEMPLATES: Final = {
    Role.VEHICLE: _kind_templates(Role.VEHICLE, uplink=False),
    Role.APP: (_app_root_template(),),
}


@dataclass(frozen=True, slots=True)
class Grants:
    """The filters of what one identity may publish and receive (services: everything)."""

    publish: tuple[str, ...]
    receive: tuple[str, ...]
    everything: bool = False


@functools.lru_cache(maxsize=65_536)
def grants(identity: Identity) -> Grants:
    """The rule table instantiated for ``identity`` (cached: brokers call it per message)."""
    if identity.role is Role.SERVICE:
        return Grants(publish=(), receive=(), everything=True)
    return Grants(
        publish=tuple(_owned(t, identity.id) for t in _PUBLISH_TEMPLATES[identity.role]),
        receive=tuple(_owned(t, identity.id) for t in _RECEIVE_TEMPLATES[identity.role]),
    )


def filter_within(inner: str, outer: str) -> bool:
    """Whether every topic that filter ``inner`` matches is matched by filter ``outer``.

    Both are valid filters (no ``$share/`` prefix). ``a/#`` also matches ``a`` (MQTT §4.7.1.2).
    """
    i_levels = inner.split("/")
    for n, o in enumerate(outer.split("/")):
        if o == "#":
            return True
        if n >= len(i_levels):
            return False
        i = i_levels[n]
        if i == "#":
            return False
        if o != "+" and i != o:
            return False
    return len(i_levels) == len(outer.split("/"))


# --- decisions -------------------------------------------------------------------------------


def may_connect(identity: Identity, client_id: str, *, holder: Identity | None = None) -> Decision:
    """May ``identity`` open a session as ``client_id``? ``holder``: who owns that session now.

    Vehicles and apps must use their CN. A service may use any client id but a VIN (an
    empty one lets the broker assign one). Nobody takes over another identity's session.
    """
    if identity.role is not Role.SERVICE and client_id != identity.id:
        return _deny(
            f"client id {client_id!r} differs from the certificate CN {identity.id!r}; "
            f"a {identity.role.name.lower()} connects with its CN as client id"
        )
    if identity.role is Role.SERVICE and is_vin(client_id):
        return _deny(f"service {identity.id!r} may not use a VIN ({client_id!r}) as client id")
    if holder is not None and holder != identity:
        return _deny(f"client id {client_id!r} belongs to the session of {holder}")
    return _allow(f"{identity} connects as {client_id!r}")


def _topic_problem(topic: str) -> str | None:
    if not topic:
        return "an empty topic"
    if "+" in topic or "#" in topic:
        return f"topic {topic!r} contains a wildcard"
    if "\0" in topic:
        return f"topic {topic!r} contains NUL"
    if len(topic.encode("utf-8")) > 65_535:
        return "a topic longer than 65535 bytes"
    return None


def _whose(topic: str, role: Role) -> str:
    """Why a device's topic check failed: another identity's topic, or not one of its kind."""
    levels = topic.split("/")
    own_roots = {t.split("/")[0] for t in (*_PUBLISH_TEMPLATES[role], *_RECEIVE_TEMPLATES[role])}
    if len(levels) > 1 and levels[0] in own_roots:
        return f"it is under {levels[0]}/{levels[1]}/, not the client's own {levels[0]}/<CN>/"
    return "it is not one of the client's own topics"


def may_publish(identity: Identity, topic: str) -> Decision:
    """May ``identity`` publish to ``topic``?"""
    problem = _topic_problem(topic)
    if problem is not None:
        return _deny(f"{problem} cannot be published to")
    if topic.startswith("$"):
        return _deny(f"{topic!r}: $-topics are the broker's")
    rules = grants(identity)
    if rules.everything:
        return _allow(f"{identity} is a service")
    for granted in rules.publish:
        if topic_matches(granted, topic):
            return _allow(f"{topic!r} matches {granted!r}")
    if any(topic_matches(granted, topic) for granted in rules.receive):
        return _deny(f"{identity} may not publish {topic!r}: it is a topic the cloud sends to it")
    return _deny(f"{identity} may not publish {topic!r}: {_whose(topic, identity.role)}")


def may_receive(identity: Identity, topic: str) -> Decision:
    """May a message on ``topic`` be delivered to ``identity``? (checked per delivery)"""
    problem = _topic_problem(topic)
    if problem is not None:
        return _deny(f"{problem} cannot be delivered")
    rules = grants(identity)
    if rules.everything:
        if topic.startswith("$") and not topic_matches(SYS_FILTER, topic):
            return _deny(f"{topic!r}: of $-topics services receive only $SYS/")
        return _allow(f"{identity} is a service")
    for granted in rules.receive:
        if topic_matches(granted, topic):
            return _allow(f"{topic!r} matches {granted!r}")
    return _deny(f"{identity} may not receive {topic!r}: {_whose(topic, identity.role)}")


def may_subscribe(identity: Identity, topic_filter: str) -> Decision:
    """May ``identity`` subscribe ``topic_filter``? Only if every topic it matches is granted."""
    try:
        validate_filter(topic_filter)
    except TopicError as exc:
        return _deny(str(exc))
    rules = grants(identity)
    if rules.everything:
        special = topic_filter.startswith(SHARE_PREFIX) or filter_within(topic_filter, SYS_FILTER)
        if topic_filter.startswith("$") and not special:
            return _deny(f"{topic_filter!r}: of $-topics services subscribe only $SYS/ and $share/")
        return _allow(f"{identity} is a service")
    if topic_filter.startswith(SHARE_PREFIX):
        return _deny(f"{topic_filter!r}: shared subscriptions are for services")
    for granted in rules.receive:
        if filter_within(topic_filter, granted):
            return _allow(f"{topic_filter!r} lies within {granted!r}")
    allowed = ", ".join(rules.receive)
    return _deny(
        f"{identity} may not subscribe {topic_filter!r}: it reaches beyond the client's own "
        f"downlink topics ({allowed})"
    )


# --- Mosquitto -------------------------------------------------------------------------------

MOSQUITTO_USER: Final = "%u"
"""Mosquitto's ACL pattern token for the username, i.e. the certificate CN."""


def mosquitto_acl(
    *, apps: Iterable[str], services: Iterable[str], control_user: str | None = None
) -> str:
    """The Mosquitto ``acl_file`` text that enforces this module's rules.

    For Mosquitto 2.0 with ``use_identity_as_username true`` (username = certificate CN):

    - vehicles: ``pattern`` lines with ``%u``, which apply to every client;
    - apps and services: a ``user`` block each (Mosquitto cannot see the OU, so the role of a
      CN comes from the PKI's ``apps/`` and ``services/`` directories). An app's block starts
      by denying the vehicle roots (denials are checked first), so the vehicle patterns never
      grant it ``vehicles/<app id>/...``;
    - ``control_user`` (a service) may also use ``$CONTROL/dynamic-security/#``, which the
      broker's supervisor needs to cut a revoked client's live connection.

    Mosquitto 2.0 checks ``read`` per delivered message and ``write`` per published one; it
    does not check subscriptions against an ACL file (a vehicle subscribing ``#`` gets a
    SUBACK but no message outside its own topics). Raises :class:`IdentityError` for a name
    that is not valid for its role (or is a VIN), and ``ValueError`` for a name in both lists.
    """
    app_ids = sorted(set(apps))
    service_names = sorted(set(services))
    for name, role in [
        *((a, Role.APP) for a in app_ids),
        *((s, Role.SERVICE) for s in service_names),
    ]:
        _check_id(role, name)
    both = set(app_ids) & set(service_names)
    if both:
        raise ValueError(
            f"{', '.join(sorted(both))}: an app and a service share the CN; Mosquitto, which "
            "knows clients only by CN, cannot tell them apart"
        )
    if control_user is not None and control_user not in service_names:
        raise ValueError(f"control user {control_user!r} must be one of the services")
    lines = [
        "# fleetgate broker ACL: generated from broker/policy.py; do not edit.",
        "# Usernames are certificate CNs (use_identity_as_username true).",
        "",
        "# vehicles (%u = the VIN)",
    ]
    lines += [
        f"pattern write {_owned(t, MOSQUITTO_USER)}" for t in _PUBLISH_TEMPLATES[Role.VEHICLE]
    ]
    lines += [f"pattern read {_owned(t, MOSQUITTO_USER)}" for t in _RECEIVE_TEMPLATES[Role.VEHICLE]]
    vehicle_roots = sorted(
        {
            t.split("/")[0]
            for t in (*_PUBLISH_TEMPLATES[Role.VEHICLE], *_RECEIVE_TEMPLATES[Role.VEHICLE])
        }
    )
    for app_id in app_ids:
        rules = grants(Identity(role=Role.APP, id=app_id))
        lines += ["", f"user {app_id}"]
        lines += [f"topic deny {root}/#" for root in vehicle_roots]
        lines += [f"topic write {f}" for f in rules.publish]
        lines += [f"topic read {f}" for f in rules.receive]
    for name in service_names:
        lines += ["", f"user {name}", "topic readwrite #", f"topic read {SYS_FILTER}"]
        if name == control_user:
            lines.append("topic readwrite $CONTROL/dynamic-security/#")
    return "\n".join(lines) + "\n"
