"""Message ids for the ``fg-message-id`` header: UUID-formatted text, unique without a call
to the OS per message (``uuid.uuid4()`` costs more than routing a message)."""

from __future__ import annotations

import uuid


class MessageIds:
    """``<random 80-bit prefix, fixed per instance><48-bit counter>`` as 8-4-4-4-12 hex: a
    version-4-shaped UUID, unique per instance by its random prefix and across its life by
    the counter (2**48 ids before the prefix is renewed)."""

    __slots__ = ("_count", "_prefix")

    def __init__(self) -> None:
        self._prefix = ""
        self._count = 1 << 48
        self._renew()

    def _renew(self) -> None:
        text = str(uuid.uuid4())
        self._prefix = text[:24]  # xxxxxxxx-xxxx-4xxx-yxxx- (version and variant kept)
        self._count = 0

    def next(self) -> str:
        if self._count >= 1 << 48:
            self._renew()
        count = self._count
        self._count = count + 1
        return f"{self._prefix}{count:012x}"
