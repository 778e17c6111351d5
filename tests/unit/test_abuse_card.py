"""The card layer under a card that answers random, truncated or oversized data,
through read_card and CardLoginService.read: only card.errors exceptions, within the
timeout, and nothing of the card's bytes shown raw (docs/architecture.md, "Cards").

tests/unit/test_card_profiles.py already fuzzes the profiles (PIV, HiCOS) with
scripted answers; here the answers mimic a real card's framing around a random or
damaged certificate, so that the certificate parser and CardLoginService are reached.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from unittest import mock

import pytest
from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st

from card.apdu import encode_tlv
from card.errors import CardError, CardProtocolError
from card.identity import load_certificate
from card.readers.profiles import read_card
from card.sim.inprocess import InProcessBackend
from card.sim.testpki import TestPki, make_test_pki
from card.sim.virtual import FaultyCard, GarbageCard, VirtualPivCard
from card.validation import CertificateValidator
from smis_tui.services.card_login import CardLoginService
from tests.hostile import examples, hidden_chars

READER = "Virtual PCD 00 00"
TIMEOUT = 1.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


def _piv_card_answering(certificate: bytes, tail: bytes = b"") -> Callable[[bytes], bytes]:
    """A PIV application whose certificate object carries ``certificate`` (any bytes),
    in 256-byte GET RESPONSE chunks; HiCOS commands are refused like on a PIV card."""
    body = encode_tlv(0x53, encode_tlv(0x70, certificate) + encode_tlv(0x71, b"\x00")) + tail
    state = {"rest": b""}

    def answer(apdu: bytes) -> bytes:
        if apdu[0] == 0x80:
            return b"\x6e\x00"
        ins = apdu[1]
        if ins == 0xA4:
            return b"\x90\x00"
        if ins == 0xCB:
            state["rest"] = body
        if ins in (0xCB, 0xC0):
            chunk, state["rest"] = state["rest"][:256], state["rest"][256:]
            left = len(state["rest"])
            sw = b"\x90\x00" if not left else bytes((0x61, min(left, 255) & 0xFF))
            return chunk + sw
        return b"\x6d\x00"

    return answer


def _service(backend: InProcessBackend, pki: TestPki) -> CardLoginService:
    validator = CertificateValidator(pki.ca_dir, pki.crl_dir)
    return CardLoginService(backend, validator, mock.Mock(), mock.Mock(), timeout=TIMEOUT)


def _read_through_everything(backend: InProcessBackend, service: CardLoginService) -> None:
    """read_card on a fresh connection, then the whole pre-PIN read of the service."""
    started = time.monotonic()
    for step in (
        lambda: read_card(backend.connect(READER), timeout=TIMEOUT),
        lambda: service.read(READER),
    ):
        try:
            step()
        except CardError as exc:
            assert not hidden_chars(str(exc)), repr(exc)
    assert time.monotonic() - started < 4 * TIMEOUT + 1


def _damage(der: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.integers(0, len(der)).map(lambda n: der[:n]),  # truncated
        st.tuples(st.integers(0, len(der) - 1), st.integers(0, 255)).map(
            lambda p: der[: p[0]] + bytes((p[1],)) + der[p[0] + 1 :]  # one byte changed
        ),
        st.binary(max_size=2000),  # random
        st.binary(min_size=1, max_size=64).map(lambda b: der + b),  # trailing garbage
        st.just(der[:4] + b"\xff" * 5000),  # oversized, claims a huge length
    )


@examples(120)
@given(data=st.data())
def test_damaged_certificates_only_raise_card_errors(pki: TestPki, data: st.DataObject) -> None:
    der = pki.user("moica").cert_der
    certificate = data.draw(_damage(der))
    backend = InProcessBackend([READER])
    backend.insert(READER, GarbageCard(_piv_card_answering(certificate)))
    _read_through_everything(backend, _service(backend, pki))


@examples(60)
@given(
    seed=st.integers(0, 2**32 - 1),
    max_length=st.sampled_from([0, 1, 2, 3, 300, 70_000]),
)
def test_random_and_oversized_answers(pki: TestPki, seed: int, max_length: int) -> None:
    backend = InProcessBackend([READER])
    backend.insert(READER, GarbageCard(seed=seed, max_length=max_length))
    _read_through_everything(backend, _service(backend, pki))


@pytest.mark.parametrize("fault", ["truncate", "garbage", "sw", "slow", "vanish"])
@pytest.mark.parametrize("after", [0, 1, 2, 3, 5])
def test_a_real_card_going_bad_at_every_step(pki: TestPki, fault: str, after: int) -> None:
    user = pki.user("moica")
    inner = VirtualPivCard(user.cert_der, user.key, "135790")
    backend = InProcessBackend([READER])
    backend.insert(READER, FaultyCard(inner, fault, after=after, seconds=30))  # type: ignore[arg-type]
    service = _service(backend, pki)
    started = time.monotonic()
    try:
        service.read(READER)
        service.authenticate(READER, "135790")
    except CardError as exc:
        assert "135790" not in str(exc) and not hidden_chars(str(exc))
    except Exception as exc:  # the mocked account services: reached only after the card
        assert isinstance(exc, TypeError | AttributeError), repr(exc)
    assert time.monotonic() - started < 6 * TIMEOUT + 1
    backend.remove(READER)  # wakes a slow card


def test_the_harness_reaches_the_certificate_parser(pki: TestPki) -> None:
    """Undamaged, the scripted card reads like the real one: the fuzz above does get
    past the card framing into the certificate parser and the validator."""
    user = pki.user("moica")
    backend = InProcessBackend([READER])
    backend.insert(READER, GarbageCard(_piv_card_answering(user.cert_der)))
    preview = _service(backend, pki).read(READER)
    assert preview.identity.name == user.cn and preview.problem is None


def _serial_field(der: bytes) -> bytes:
    """The DER INTEGER of the certificate's serial number, tag and length included."""
    serial = x509.load_der_x509_certificate(der).serial_number
    content = serial.to_bytes(serial.bit_length() // 8 + 1, "big")  # a leading 0 bit
    field = bytes((0x02, len(content))) + content
    assert der.count(field) == 1
    return field


def test_a_certificate_whose_serial_is_negative_is_refused_as_damaged(pki: TestPki) -> None:
    """RFC 5280 asks for a positive serial number; cryptography still parses a
    negative one (with a warning, refusing it in a later release): the kiosk names
    such a card as damaged on every release."""
    der = pki.user("moica").cert_der
    field = _serial_field(der)
    # The same length, still minimal DER: a leading 0x80 makes it negative.
    damaged = der.replace(field, field[:2] + b"\x80" + field[3:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cryptography's own deprecation notice
        assert x509.load_der_x509_certificate(damaged).serial_number < 0
        with pytest.raises(CardProtocolError, match="憑證序號不是正整數"):
            load_certificate(damaged)
    assert load_certificate(der).serial_number > 0
