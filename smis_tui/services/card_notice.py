"""What home tells a person about the card they logged in with (docs/architecture.md,
"Cards"): a certificate that runs out soon still logs in, but its holder should renew
it before the day the kiosk refuses it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from smis_tui.core.domain import CardKind

if TYPE_CHECKING:
    from card.identity import CardIdentity

__all__ = ["EXPIRY_WARNING_DAYS", "CertificateExpiry", "certificate_expiry"]

EXPIRY_WARNING_DAYS = 30


@dataclass(frozen=True)
class CertificateExpiry:
    kind: CardKind
    not_after: dt.datetime
    days_left: int

    @property
    def renew_at_key(self) -> str:
        """Text key of where this kind of card is renewed."""
        return f"card.ca.{self.kind.value}"


def certificate_expiry(
    identity: CardIdentity, now: dt.datetime | None = None
) -> CertificateExpiry | None:
    """The card's expiry when it falls within :data:`EXPIRY_WARNING_DAYS`, else None."""
    moment = now or dt.datetime.now(dt.UTC)
    left = identity.not_after - moment
    if left < dt.timedelta(0) or left > dt.timedelta(days=EXPIRY_WARNING_DAYS):
        return None
    return CertificateExpiry(identity.kind, identity.not_after, left.days)
