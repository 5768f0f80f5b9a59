"""Identities: VINs, app ids, service names, and who is speaking (role + id).

Pure: no I/O, no project imports.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

VIN_ALPHABET = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
"""ISO 3779: digits and capital letters except I, O and Q."""
VIN_LENGTH = 17
_VIN_CHARS = frozenset(VIN_ALPHABET)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""App ids and service names: safe in a topic level, a file name and a certificate CN."""


class InvalidIdentifier(ValueError):
    """A VIN, app id or service name that breaks the rules; the message says exactly how."""


def validate_vin(value: str) -> str:
    """Return ``value`` if it is a VIN per ISO 3779, else raise with the precise reason."""
    if not isinstance(value, str):
        raise InvalidIdentifier(f"VIN must be a string, got {type(value).__name__}")
    if len(value) != VIN_LENGTH:
        raise InvalidIdentifier(
            f"VIN {value!r} has {len(value)} characters; a VIN has exactly {VIN_LENGTH}"
        )
    for position, char in enumerate(value, start=1):
        if char not in _VIN_CHARS:
            hint = " (I, O and Q are never used in a VIN)" if char in "IOQ" else ""
            raise InvalidIdentifier(
                f"VIN {value!r} has illegal character {char!r} at position {position}{hint}; "
                "allowed: A-H J-N P R-Z 0-9"
            )
    return value


def is_vin(value: str) -> bool:
    try:
        validate_vin(value)
    except InvalidIdentifier:
        return False
    return True


def validate_name(value: str, *, what: str = "name") -> str:
    """App ids and service names: 1-64 of ``A-Z a-z 0-9 _ . -``, not starting with a sign."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise InvalidIdentifier(
            f"{what} {value!r} is not valid: 1-64 characters of A-Z a-z 0-9 _ . -, "
            "starting with a letter or digit"
        )
    return value


def validate_app_id(value: str) -> str:
    return validate_name(value, what="app id")


def validate_service_name(value: str) -> str:
    return validate_name(value, what="service name")


def make_vin(number: int, *, wmi: str = "FGT") -> str:
    """A valid, deterministic VIN for simulated vehicle ``number`` (0 <= number < 33**11).

    ``wmi`` (3 characters of the VIN alphabet) is the world manufacturer identifier.
    """
    if len(wmi) != 3 or any(c not in _VIN_CHARS for c in wmi):
        raise InvalidIdentifier(f"WMI {wmi!r} must be 3 characters of the VIN alphabet")
    if number < 0:
        raise ValueError("number must be >= 0")
    base = len(VIN_ALPHABET)
    digits: list[str] = []
    rest = number
    for _ in range(VIN_LENGTH - 3 - 3):
        rest, d = divmod(rest, base)
        digits.append(VIN_ALPHABET[d])
    if rest:
        raise ValueError(f"number {number} is too large for a simulated VIN")
    return f"{wmi}SMV{''.join(reversed(digits))}"


class Role(enum.StrEnum):
    """Who a certificate belongs to; the value is the certificate's OU."""

    VEHICLE = "vehicles"
    APP = "apps"
    SERVICE = "services"


class Identity(BaseModel):
    """A speaker on the bus: its role and its id (VIN, app id or service name)."""

    model_config = ConfigDict(frozen=True)

    role: Role
    id: str

    def __str__(self) -> str:
        return f"{self.role.name.lower()}:{self.id}"

    @classmethod
    def of(cls, *, role: Role, id: str) -> Identity:
        """Build and validate an identity."""
        if role is Role.VEHICLE:
            validate_vin(id)
        elif role is Role.APP:
            validate_app_id(id)
        else:
            validate_service_name(id)
        return cls(role=role, id=id)


Vin = Annotated[str, AfterValidator(validate_vin)]
AppId = Annotated[str, AfterValidator(validate_app_id)]
ServiceName = Annotated[str, AfterValidator(validate_service_name)]


_ROLE_BY_PREFIX = {role.name.lower(): role for role in Role}


def parse_identity(text: str) -> Identity:
    """The inverse of ``str(identity)``: ``vehicle:<VIN>``, ``app:<id>``, ``service:<name>``.

    Raises InvalidIdentifier with the reason (e.g. for the sender header of a Kafka record).
    """
    prefix, sep, rest = text.partition(":") if isinstance(text, str) else ("", "", "")
    role = _ROLE_BY_PREFIX.get(prefix)
    if not sep or role is None:
        raise InvalidIdentifier(
            f"identity {text!r} must be vehicle:<VIN>, app:<id> or service:<name>"
        )
    return Identity.of(role=role, id=rest)
