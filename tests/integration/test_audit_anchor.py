"""The audit chain's anchor outside the database: a MAC over the sealed head under a
key from the key file, and checkpoints in a local file.

Each attack is what someone who can write the database (and nothing else) does: change
the rows, then re-chain every later row and the head consistently, so that the hash
chain alone verifies (the first assertion of each attack shows that it does).
"""

from __future__ import annotations

import json
import sqlite3
import stat
from itertools import pairwise
from pathlib import Path

import pytest

from models.db import write_transaction
from models.schema import AuditEvent, Meta
from smis_tui.core.config import Settings
from smis_tui.core.domain import UnitKind
from smis_tui.services import Services, build_services
from smis_tui.services.audit import GENESIS_HASH, HEAD_KEY, _row_hash
from smis_tui.services.audit_anchor import CHECKPOINT_FILE_NAME, HEAD_MAC_KEY, AuditAnchor
from smis_tui.services.crypto import KeyRing, create_key_file
from smis_tui.services.key_rotation import rotate_key
from tests.helpers import (
    audited_applications,
    card_proof,
    execute_sql,
    form,
    new_person_id,
    unit_of_kind,
)


def chain_only_verifies() -> bool:
    """What verify said before the anchor: the rows chain up to the head."""
    expected = GENESIS_HASH
    for event in AuditEvent.select().order_by(AuditEvent.id):
        if event.prev_hash != expected or _row_hash(event) != event.row_hash:
            return False
        expected = event.row_hash
    head = Meta.get_or_none(Meta.key == HEAD_KEY)
    return head is None or head.value.split(":", 1)[1] == expected


def rechain() -> None:
    """Recompute every row's links and the head, as a database writer can."""
    prev = GENESIS_HASH
    head = ""
    with write_transaction():
        for event in AuditEvent.select().order_by(AuditEvent.id):
            if event.prev_hash != prev or _row_hash(event) != event.row_hash:
                event.prev_hash = prev
                event.row_hash = _row_hash(event)
                event.save()
            prev = event.row_hash
            head = f"{event.id}:{event.row_hash}"
        Meta.update(value=head).where(Meta.key == HEAD_KEY).execute()
    assert chain_only_verifies()


def meta(key: str) -> str | None:
    row = Meta.get_or_none(Meta.key == key)
    return None if row is None else str(row.value)


def set_meta(key: str, value: str) -> None:
    execute_sql("UPDATE meta SET value = ? WHERE key = ?", (value, key))


def checkpoint_file(services: Services) -> Path:
    return services.settings.data_dir / CHECKPOINT_FILE_NAME


def forge_mac_with_the_key(services: Services) -> None:
    """What someone holding the key file as well as the database can do."""
    head = str(meta(HEAD_KEY))
    set_meta(HEAD_MAC_KEY, AuditAnchor([services.keys], Path("/nonexistent")).head_mac(head))


@pytest.fixture
def trail(services: Services) -> list[int]:
    return audited_applications(services, "甲乙丙")


def more_rows(services: Services, names: str) -> list[int]:
    before = AuditEvent.select().order_by(AuditEvent.id.desc()).first()
    start = before.id if before is not None else 0
    clinic = unit_of_kind(UnitKind.CLINIC, with_category="ppe")
    for name in names:
        person_id = new_person_id()
        services.accounts.apply(form(person_id, clinic, name=name), card_proof(services, person_id))
    return [e.id for e in AuditEvent.select().where(AuditEvent.id > start).order_by(AuditEvent.id)]


# ----------------------------------------------------------------- the sealed head


def test_every_write_seals_the_head_under_the_anchor_key(
    services: Services, trail: list[int]
) -> None:
    sealed = meta(HEAD_MAC_KEY)
    assert sealed is not None
    key_id, mac = sealed.split(":")
    assert key_id == services.keys.key_id.hex() and len(mac) == 64
    # Not the blind-index key, nor anything else the data key computes directly.
    head = meta(HEAD_KEY)
    assert head is not None and mac != services.keys.blind_index(head)
    result = services.audit.verify()
    assert result.ok and result.anchored and result.checked == len(trail)


def test_deleted_row_rechained_is_caught_at_the_first_changed_row(
    services: Services, trail: list[int]
) -> None:
    assert services.audit.checkpoint().ok  # covers trail[-1]
    later = more_rows(services, "丁戊")  # two rows each
    execute_sql("DELETE FROM audit_event WHERE id = ?", (later[0],))
    rechain()
    result = services.audit.verify()
    assert not result.ok and result.code == "head_mac"
    assert result.first_bad_id == later[1]  # the first row whose hash changed
    assert result.checked == len(trail)
    assert "簽章" in result.reason


def test_edited_row_rechained_is_caught(services: Services, trail: list[int]) -> None:
    execute_sql("UPDATE audit_event SET details = ? WHERE id = ?", ('{"roles": []}', trail[3]))
    rechain()
    result = services.audit.verify()
    # No checkpoint yet: nothing before the head vouches for any row.
    assert not result.ok and result.code == "head_mac" and result.first_bad_id == trail[0]


def test_edited_row_after_a_checkpoint_is_named(services: Services, trail: list[int]) -> None:
    assert services.audit.checkpoint().ok
    later = more_rows(services, "丁戊")
    execute_sql("UPDATE audit_event SET details = ? WHERE id = ?", ('{"forged": 1}', later[0]))
    rechain()
    result = services.audit.verify()
    assert not result.ok and result.code == "head_mac" and result.first_bad_id == later[0]


def test_edited_row_before_a_checkpoint_is_caught_by_the_checkpoint(
    services: Services, trail: list[int]
) -> None:
    assert services.audit.checkpoint().ok  # at trail[-1]
    execute_sql("UPDATE audit_event SET details = ? WHERE id = ?", ('{"forged": 1}', trail[2]))
    rechain()
    # Even with the head MAC forged (someone holding the key file too): the checkpoint
    # outside the database still disagrees.
    forge_mac_with_the_key(services)
    result = services.audit.verify()
    assert not result.ok and result.code == "checkpoint"
    assert result.first_bad_id == trail[0] and result.checked == 0


def test_forged_row_appended_and_rechained_is_caught(services: Services, trail: list[int]) -> None:
    assert services.audit.checkpoint().ok
    last = AuditEvent.get_by_id(trail[-1])
    execute_sql(
        "INSERT INTO audit_event (at, actor_label, action, target_type, target_id, details, "
        "prev_hash, row_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (last.at, "forger", "approve_request", "permission", "1", "{}", "x", "y" * 64),
    )
    rechain()
    forged = AuditEvent.select().order_by(AuditEvent.id.desc()).first()
    result = services.audit.verify()
    assert not result.ok and result.code == "head_mac" and result.first_bad_id == forged.id
    assert result.checked == len(trail)


def test_truncated_tail_with_an_old_head_and_mac_is_caught_by_a_checkpoint(
    services: Services, trail: list[int]
) -> None:
    old_head, old_mac = meta(HEAD_KEY), meta(HEAD_MAC_KEY)
    assert old_head is not None and old_mac is not None
    later = more_rows(services, "丁")
    assert services.audit.checkpoint().ok  # covers later[-1]
    execute_sql("DELETE FROM audit_event WHERE id >= ?", (later[0],))
    set_meta(HEAD_KEY, old_head)
    set_meta(HEAD_MAC_KEY, old_mac)
    assert chain_only_verifies()
    result = services.audit.verify()
    assert not result.ok and result.code == "checkpoint"
    assert result.first_bad_id == later[-1] and "截斷" in result.reason


def test_truncated_tail_without_a_checkpoint_passes(services: Services, trail: list[int]) -> None:
    """What the anchor does not cover: a rollback to an earlier sealed head that no
    checkpoint has seen since (docs/architecture.md, "Audit anchor")."""
    old_head, old_mac = meta(HEAD_KEY), meta(HEAD_MAC_KEY)
    later = more_rows(services, "丁")
    execute_sql("DELETE FROM audit_event WHERE id >= ?", (later[0],))
    set_meta(HEAD_KEY, str(old_head))
    set_meta(HEAD_MAC_KEY, str(old_mac))
    assert services.audit.verify().ok


@pytest.mark.parametrize("mac", ["", "00:" + "0" * 64, "garbage"])
def test_wrong_mac_fails(services: Services, trail: list[int], mac: str) -> None:
    key_id = services.keys.key_id.hex()
    set_meta(HEAD_MAC_KEY, mac.replace("00:", f"{key_id}:"))
    result = services.audit.verify()
    assert not result.ok and result.code == "head_mac" and result.first_bad_id == trail[0]


def test_mac_under_another_key_fails(services: Services, trail: list[int], tmp_path: Path) -> None:
    create_key_file(tmp_path / "other.key")
    other = KeyRing.read(tmp_path / "other.key")
    head = str(meta(HEAD_KEY))
    forged = AuditAnchor([other], tmp_path / "cp").head_mac(head)
    set_meta(HEAD_MAC_KEY, forged)
    result = services.audit.verify()
    assert not result.ok and result.code == "head_mac"


def test_missing_mac_fails_once_this_machine_has_a_checkpoint(
    services: Services, trail: list[int]
) -> None:
    assert services.audit.checkpoint().ok
    execute_sql("DELETE FROM meta WHERE key = ?", (HEAD_MAC_KEY,))
    result = services.audit.verify()
    assert not result.ok and result.code == "head_mac"


def test_a_tampered_head_is_not_sealed_again_by_the_next_write(
    services: Services, trail: list[int]
) -> None:
    """The next legitimate write must not launder a re-chained head with a new MAC."""
    execute_sql("DELETE FROM audit_event WHERE id = ?", (trail[1],))
    rechain()
    more_rows(services, "丁")
    result = services.audit.verify()
    assert not result.ok and result.code == "head_mac"


# ----------------------------------------------------------------- checkpoints


def test_checkpoint_file_is_private_json_lines(services: Services, trail: list[int]) -> None:
    assert services.audit.checkpoint().ok
    more_rows(services, "丁")
    assert services.audit.checkpoint().ok
    path = checkpoint_file(services)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["row_id"] for line in lines] == [
        trail[-1],
        AuditEvent.select().order_by(AuditEvent.id.desc()).first().id,
    ]
    assert set(lines[0]) == {"row_id", "row_hash", "at", "key_id", "mac"}
    assert services.audit.verify().ok


def test_an_edited_checkpoint_line_fails(services: Services, trail: list[int]) -> None:
    assert services.audit.checkpoint().ok
    path = checkpoint_file(services)
    line = json.loads(path.read_text())
    line["row_id"] = trail[0]
    path.write_text(json.dumps(line) + "\n")
    result = services.audit.verify()
    assert not result.ok and result.code == "checkpoint" and "檢查點" in result.reason


def test_checkpoint_refuses_a_head_that_is_not_sealed(services: Services, trail: list[int]) -> None:
    execute_sql("DELETE FROM audit_event WHERE id = ?", (trail[-1],))
    rechain()
    result = services.audit.checkpoint()
    assert not result.ok and result.code == "head_mac"
    assert not checkpoint_file(services).exists()


# ----------------------------------------------------------------- rotation, upgrade


def test_key_rotation_keeps_the_anchor(
    services: Services, trail: list[int], settings: Settings
) -> None:
    assert services.audit.checkpoint().ok
    old_id = services.keys.key_id.hex()
    rotate_key(settings.resolved_key_file)
    rotated = build_services(settings)
    assert rotated.keys.key_id.hex() != old_id
    sealed = meta(HEAD_MAC_KEY)
    assert sealed is not None and sealed.startswith(rotated.keys.key_id.hex() + ":")
    assert rotated.audit.verify().ok
    # Once the old key file is gone, checkpoints under it are still compared by hash.
    (settings.resolved_key_file.with_name(settings.resolved_key_file.name + ".old")).unlink()
    rotated = build_services(settings)
    assert rotated.audit.verify().ok
    more_rows(rotated, "丁")
    assert rotated.audit.checkpoint().ok and rotated.audit.verify().ok
    execute_sql("UPDATE audit_event SET details = ? WHERE id = ?", ('{"x": 1}', trail[1]))
    rechain()
    assert rotated.audit.verify().code == "checkpoint"


def test_rotation_does_not_seal_a_tampered_head(
    services: Services, trail: list[int], settings: Settings
) -> None:
    execute_sql("DELETE FROM audit_event WHERE id = ?", (trail[1],))
    rechain()
    rotate_key(settings.resolved_key_file)
    rotated = build_services(settings)
    assert rotated.audit.verify().code == "head_mac"


def test_upgrade_from_a_database_without_a_mac(services: Services, trail: list[int]) -> None:
    """The previous version wrote no MAC: verify says the chain is intact and not
    anchored yet (not tampered); the next seal anchors it."""
    execute_sql("DELETE FROM meta WHERE key = ?", (HEAD_MAC_KEY,))
    result = services.audit.verify()
    assert result.ok and not result.anchored and result.checked == len(trail)
    assert services.audit.checkpoint().ok  # seals the verified head, then checkpoints
    assert meta(HEAD_MAC_KEY) is not None
    result = services.audit.verify()
    assert result.ok and result.anchored
    # From now on a missing MAC is tampering.
    execute_sql("DELETE FROM meta WHERE key = ?", (HEAD_MAC_KEY,))
    assert services.audit.verify().code == "head_mac"


def test_upgrade_then_next_write_seals(services: Services, trail: list[int]) -> None:
    execute_sql("DELETE FROM meta WHERE key = ?", (HEAD_MAC_KEY,))
    more_rows(services, "丁")
    result = services.audit.verify()
    assert result.ok and result.anchored


# ----------------------------------------------------------------- the commands


def test_cli_audit_verify_checkpoints_and_names_the_tampered_row(tmp_path: Path) -> None:
    from models.db import close_database, open_database
    from tests.integration.test_cli import _admin_certificate, smis
    from tests.unit.test_units import nhi_row, write_csv

    data_dir = tmp_path / "data"
    assert smis(data_dir, "db", "init").returncode == 0
    cert = tmp_path / "admin.pem"
    _admin_certificate(cert, "陳管理")
    bootstrap = smis(
        data_dir,
        *("admin", "bootstrap", "--cert", str(cert), "--person-id", new_person_id()),
        *("--phone", "02-23959825", "--email", "admin@cdc.example.tw"),
    )
    assert bootstrap.returncode == 0, bootstrap.stderr
    database = data_dir / "smis.sqlite3"
    checkpoints = data_dir / CHECKPOINT_FILE_NAME

    # A database of the version before the anchor: intact, sealed by the first verify.
    with sqlite3.connect(database) as conn:
        conn.execute("DELETE FROM meta WHERE key = ?", (HEAD_MAC_KEY,))
    upgraded = smis(data_dir, "audit", "verify")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "共驗證 1 筆" in upgraded.stdout and "已驗證並加上簽章" in upgraded.stdout
    assert f"已寫入檢查點 {checkpoints}" in upgraded.stdout
    assert [json.loads(line)["row_id"] for line in checkpoints.read_text().splitlines()] == [1]

    # `units import` writes a row and seals the head it moves.
    csv = write_csv(tmp_path / "u.csv", nhi_row("3531999991", "測試甲診所"))
    assert smis(data_dir, "units", "import", str(csv)).returncode == 0
    again = smis(data_dir, "audit", "verify")
    assert again.returncode == 0 and "共驗證 2 筆" in again.stdout, again.stderr
    assert smis(data_dir, "maintenance").returncode == 0
    assert len(checkpoints.read_text().splitlines()) == 3

    # Edit the import's row and re-chain: the checkpoints vouch for row 2 as it was.
    open_database(None, database)
    try:
        execute_sql("UPDATE audit_event SET details = ? WHERE id = 2", ('{"created": 0}',))
        rechain()
    finally:
        close_database()
    bad = smis(data_dir, "audit", "verify")
    assert bad.returncode == 3
    assert "#2" in bad.stderr and "檢查點" in bad.stderr and "之前 1 筆正常" in bad.stderr
    assert len(checkpoints.read_text().splitlines()) == 3  # nothing written for it
    maintenance = smis(data_dir, "maintenance")
    assert maintenance.returncode == 3 and "未寫入檢查點" in maintenance.stderr


def test_appends_checkpoint_every_n_rows(services: Services) -> None:
    services.audit.anchor.every = 3
    ids = audited_applications(services, "甲乙丙丁")
    heads = ids[1::2]  # each application appends two rows in one transaction
    written = [
        json.loads(line)["row_id"] for line in checkpoint_file(services).read_text().splitlines()
    ]
    # The head before each append that passed a multiple of 3, as committed.
    assert written == [old for old, new in pairwise(heads) if old // 3 != new // 3]
    assert len(written) == 2
    assert services.audit.verify().ok
    # A rollback of the tail that such a checkpoint covers is caught.
    cut = written[-1]
    execute_sql("DELETE FROM audit_event WHERE id >= ?", (cut,))
    rechain()
    assert services.audit.verify().code == "checkpoint"


def test_start_up_checkpoints_a_machine_that_has_none(
    services: Services, trail: list[int], settings: Settings
) -> None:
    """Another kiosk on the same database: its first start records the sealed head, so
    a MAC removed afterwards is noticed there too."""
    assert not checkpoint_file(services).exists()
    build_services(settings)
    lines = checkpoint_file(services).read_text().splitlines()
    assert [json.loads(line)["row_id"] for line in lines] == [trail[-1]]
    build_services(settings)  # only once
    assert len(checkpoint_file(services).read_text().splitlines()) == 1
    execute_sql("DELETE FROM meta WHERE key = ?", (HEAD_MAC_KEY,))
    assert services.audit.verify().code == "head_mac"
