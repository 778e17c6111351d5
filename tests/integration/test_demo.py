"""`smis-tui demo init`: every demo card logs in the way its label says."""

from __future__ import annotations

from pathlib import Path

import pytest

from card.errors import CertificateProblem, NotPersonalCard
from card.sim.inprocess import InProcessBackend
from card.validation import CertificateValidator
from models.purpose import mark_demo_database
from models.schema import Account
from smis_tui.demo import create_demo, load_demo_cards, virtual_card
from smis_tui.services import Services
from smis_tui.services.auth import LoginState
from smis_tui.services.card_login import CardLoginService

READER = "Demo reader"
EXPECTED = {
    "hpc": LoginState.ACTIVE,
    "moica": LoginState.ACTIVE,
    "moica2": LoginState.PENDING,
    "hpc2": LoginState.DISABLED,
    "expired": "expired",
    "revoked": "revoked",
    "untrusted": "untrusted",
    "not_yet_valid": "not_yet_valid",
    "expiring": LoginState.ACTIVE,
    "org": "not_personal",
    "newcomer": "no_account",
}


def test_demo_cards_show_their_cases(services: Services, tmp_path: Path) -> None:
    mark_demo_database()
    cards = create_demo(services, tmp_path / "demo-pki")
    assert [c.user for c in cards] == list(EXPECTED)
    assert len({c.pin for c in cards}) == len(cards)
    accounts = Account.select().count()
    assert create_demo(services, tmp_path / "other") == cards  # idempotent
    assert Account.select().count() == accounts and load_demo_cards() == cards

    pki = tmp_path / "demo-pki"
    backend = InProcessBackend([READER])
    logins = CardLoginService(
        backend, CertificateValidator(pki / "ca", pki / "crl"), services.login, services.accounts
    )
    for card in cards:
        backend.insert(READER, virtual_card(pki, card))
        expected = EXPECTED[card.user]
        if isinstance(expected, LoginState):
            result = logins.authenticate(READER, card.pin)
            assert result.outcome is not None, card
            assert result.outcome.state == expected, card
        elif expected == "no_account":  # a valid card nobody has applied with yet
            result = logins.authenticate(READER, card.pin)
            assert result.outcome is None and result.needs_person_id is not None, card
        elif expected == "not_personal":
            with pytest.raises(NotPersonalCard):
                logins.authenticate(READER, card.pin)
        else:
            with pytest.raises(CertificateProblem) as caught:
                logins.authenticate(READER, card.pin)
            assert caught.value.reason == expected
        backend.remove(READER)
    assert services.audit.verify().ok
