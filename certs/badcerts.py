"""Deliberately bad certificates, for tests that prove the broker refuses them. Pure.

Each one names a real identity (``CN=<VIN>, OU=vehicles`` and so on), so the only reason to
refuse it is the one the function's name says.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from certs.pki import Issued, Lifetimes, Validity, create_issuing_ca, create_root_ca, issue_leaf
from schemas.ids import Identity


def foreign_pki(*, now: datetime, lifetimes: Lifetimes | None = None) -> tuple[Issued, Issued]:
    """Another root and issuing CA with the very same names as fleetgate's, but other keys."""
    lifetimes = lifetimes or Lifetimes()
    root = create_root_ca(validity=Validity.starting(now, lifetimes.root))
    return root, create_issuing_ca(root, validity=Validity.starting(now, lifetimes.issuing))


def foreign_leaf(identity: Identity, *, now: datetime) -> Issued:
    """A currently valid certificate for ``identity`` from another PKI."""
    _, issuing = foreign_pki(now=now)
    return issue_leaf(issuing, identity, validity=Validity.starting(now, Lifetimes().leaf))


def expired_leaf(ca: Issued, identity: Identity, *, now: datetime) -> Issued:
    """Signed by ``ca`` but expired a day before ``now``."""
    validity = Validity(not_before=now - timedelta(days=30), not_after=now - timedelta(days=1))
    return issue_leaf(ca, identity, validity=validity)


def not_yet_valid_leaf(ca: Issued, identity: Identity, *, now: datetime) -> Issued:
    """Signed by ``ca`` but valid only from a day after ``now``."""
    validity = Validity(not_before=now + timedelta(days=1), not_after=now + timedelta(days=30))
    return issue_leaf(ca, identity, validity=validity)
