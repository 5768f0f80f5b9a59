"""Stock amqtt 0.12.1 configured as close as possible to the hardened broker, to prove the
bypass regressions: amqtt's own TLS listener (it hard-codes ``ssl.CERT_OPTIONAL``) with the
fleetgate CA chain and server certificate, and an auth plugin that accepts a client whose
certificate CN equals its client id (like amqtt's ``UserAuthCertPlugin``, with the CN instead
of a SPIFFE SAN). No ACL plugin: the attacks need none.

Run: ``python -m tests.integration.broker.stock_amqtt <home> <port>``.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path

from amqtt.broker import Broker
from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session
from cryptography import x509
from cryptography.x509.oid import NameOID

from certs.layout import PkiPaths


class CnAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]
    async def authenticate(self, *, session: Session) -> bool | None:
        if not session.ssl_object:
            return False
        der = session.ssl_object.getpeercert(binary_form=True)
        if not der:
            return False
        cns = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(
            NameOID.COMMON_NAME
        )
        return bool(cns) and cns[0].value == session.client_id

    @dataclass
    class Config:
        pass


async def main(home: Path, port: int) -> None:
    paths = PkiPaths(home)
    certfile, keyfile = paths.server()
    config = {
        "listeners": {
            "default": {
                "type": "tcp",
                "bind": f"127.0.0.1:{port}",
                "ssl": True,
                "cafile": str(paths.ca_chain),
                "certfile": str(certfile),
                "keyfile": str(keyfile),
            }
        },
        "plugins": {"tests.integration.broker.stock_amqtt.CnAuthPlugin": {}},
    }
    broker = Broker(config)
    await broker.start()
    print("stock amqtt ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
