"""The device registry, through the `fixgate device` command a person uses."""

from __future__ import annotations

import subprocess

import asyncpg

from gateway.registry.store import check_login, get_device
from tests.support.paths import FIXGATE_BIN


def fixgate(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FIXGATE_BIN, *args], env=env, capture_output=True, text=True, timeout=60)


async def test_add_prints_the_token_once_and_stores_only_a_hash(
    fixgate_env: dict[str, str], pg: asyncpg.Connection
) -> None:
    done = fixgate(
        fixgate_env, "device", "add", "truck-7", "--tenant", "acme", "--kind", "tow_truck"
    )
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip().splitlines()[-1]
    assert len(token) >= 40
    row = await pg.fetchrow("SELECT * FROM devices WHERE id = 'truck-7'")
    assert row["tenant_id"] == "acme" and row["kind"] == "tow_truck" and row["enabled"]
    # The token appears nowhere in the table, in any column.
    dump = await pg.fetchval("SELECT string_agg(d::text, ' ') FROM devices d")
    assert token not in dump
    device = await get_device(pg, "truck-7")
    assert check_login(device, token) is None
    assert check_login(device, token + "x") == "wrong_token"


async def test_a_duplicate_id_is_refused_with_a_clear_error(fixgate_env: dict[str, str]) -> None:
    first = fixgate(
        fixgate_env, "device", "add", "van-1", "--tenant", "acme", "--kind", "service_van"
    )
    assert first.returncode == 0
    again = fixgate(fixgate_env, "device", "add", "van-1", "--tenant", "other", "--kind", "phone")
    assert again.returncode == 1
    assert "device 'van-1' already exists" in again.stderr
    assert "Traceback" not in again.stderr


async def test_a_given_token_is_used_and_owntracks_identity_mapped(
    fixgate_env: dict[str, str], pg: asyncpg.Connection
) -> None:
    token = "correct-horse-battery-staple"
    done = fixgate(
        fixgate_env, "device", "add", "phone-9", "--tenant", "acme", "--kind", "phone",
        "--token", token, "--owntracks", "alice/pixel",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == token
    device = await get_device(pg, "phone-9")
    assert device is not None
    assert (device.owntracks_user, device.owntracks_device) == ("alice", "pixel")
    assert check_login(device, token) is None
    taken = fixgate(
        fixgate_env,
        "device",
        "add",
        "phone-10",
        "--tenant",
        "acme",
        "--kind",
        "phone",
        "--owntracks",
        "alice/pixel",
    )
    assert taken.returncode == 1 and "already mapped" in taken.stderr


async def test_bad_input_is_refused_with_a_message(fixgate_env: dict[str, str]) -> None:
    cases = [
        (["d1", "--tenant", "acme", "--kind", "bicycle"], "kind must be one of"),
        (["d1", "--tenant", "acme", "--kind", "phone", "--token", "short"], "at least 16"),
        (["a/b", "--tenant", "acme", "--kind", "phone"], "may not be empty or contain"),
        (
            ["d1", "--tenant", "acme", "--kind", "phone", "--owntracks", "nodevice"],
            "<user>/<device>",
        ),
    ]
    for args, message in cases:
        done = fixgate(fixgate_env, "device", "add", *args)
        assert done.returncode == 1 and message in done.stderr, (args, done.stderr)


async def test_list_and_disable(fixgate_env: dict[str, str], pg: asyncpg.Connection) -> None:
    token = fixgate(
        fixgate_env, "device", "add", "t-1", "--tenant", "acme", "--kind", "tracker"
    ).stdout.split()[-1]
    fixgate(fixgate_env, "device", "add", "t-2", "--tenant", "zeta", "--kind", "tracker")
    listed = fixgate(fixgate_env, "device", "list", "--tenant", "acme").stdout
    assert "t-1" in listed and "t-2" not in listed
    assert fixgate(fixgate_env, "device", "disable", "t-1").returncode == 0
    assert check_login(await get_device(pg, "t-1"), token) == "disabled_device"
    assert check_login(await get_device(pg, "nope"), token) == "unknown_device"
    missing = fixgate(fixgate_env, "device", "disable", "nope")
    assert missing.returncode == 1 and "no device 'nope'" in missing.stderr
