"""Who signs in (issue 22 item 1): staff log in with e-mail and password (argon2id), a
wrong password and an unknown e-mail answer alike, failures lock the account and the
address; a disabled user's session stops at once; technicians and customers sign in with
one-time links staff make, traded once for a session token; `fixgate user` adds staff."""

from __future__ import annotations

import subprocess
import uuid
from typing import Any

import asyncpg
import httpx

from api.auth import read_token
from api.passwords import hash_password
from api.principal import Role
from api.store import users
from tests.support.api import SECRET, Tenant, eventually, running_app, token
from tests.support.paths import FIXGATE_BIN, REPO_ROOT

PASSWORD = "correct horse battery staple"


async def _user(pg: asyncpg.Connection, role: Role = Role.DISPATCHER, tenant: str = "acme") -> str:
    email = f"d-{uuid.uuid4().hex[:8]}@example.com"
    await users.add(
        pg, tenant=tenant, role=role, email=email, password_hash=hash_password(PASSWORD)
    )
    return email


async def _login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/auth/login", json={"email": email, "password": password})


async def test_staff_log_in_with_a_password_and_get_a_session_token_named_by_their_user(
    client: httpx.AsyncClient, pg: asyncpg.Connection
) -> None:
    email = await _user(pg)
    answer = await _login(client, email.upper(), PASSWORD)  # e-mail case does not matter
    assert answer.status_code == 200, answer.text
    session = answer.json()["data"]
    principal = read_token(SECRET, session["token"])
    user_id = await pg.fetchval("SELECT userid::text FROM users WHERE email = $1", email)
    assert (principal.role, principal.tenant, principal.subject) == (
        Role.DISPATCHER, "acme", user_id,
    )  # fmt: skip
    assert session["expiresIn"] == 8 * 3600
    assert principal.expires_at is not None
    assert await pg.fetchval("SELECT lastloginat IS NOT NULL FROM users WHERE email = $1", email)
    # The token is the API's bearer: a dispatcher's list works with it.
    listed = await client.get(
        "/service-requests", headers={"Authorization": f"Bearer {session['token']}"}
    )
    assert listed.status_code == 200
    # Only a hash is stored, and it is argon2id.
    stored = await pg.fetchval("SELECT passwordhash FROM users WHERE email = $1", email)
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


async def test_a_wrong_password_and_an_unknown_e_mail_are_refused_alike(
    client: httpx.AsyncClient, pg: asyncpg.Connection
) -> None:
    email = await _user(pg)
    wrong = await _login(client, email, "not the password at all")
    unknown = await _login(client, "nobody@example.com", PASSWORD)
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["message"] == unknown.json()["message"] == "Wrong e-mail or password"


async def test_failures_lock_the_account_then_the_address(
    make_settings: Any, pg: asyncpg.Connection, redis_client: object
) -> None:
    settings = make_settings(login_max_failures=3, login_max_failures_per_address=5)
    email, other = await _user(pg), await _user(pg)
    async with running_app(settings) as client:
        for _ in range(3):
            assert (await _login(client, email, "wrong password!!")).status_code == 401
        locked = await _login(client, email, PASSWORD)  # even the right password now
        assert locked.status_code == 429
        assert 0 < int(locked.headers["Retry-After"]) <= settings.login_lockout_s
        assert "Too many failed logins" in locked.json()["message"]
        # An unknown e-mail locks the same way (a lockout tells nothing about accounts).
        for _ in range(2):
            assert (await _login(client, "ghost@example.com", "x" * 12)).status_code == 401
        # Five failures from this address: every account is refused from here now.
        refused = await _login(client, other, PASSWORD)
        assert refused.status_code == 429


async def test_a_disabled_user_cannot_log_in_and_their_session_stops_at_once(
    client: httpx.AsyncClient, pg: asyncpg.Connection
) -> None:
    email = await _user(pg, Role.ADMIN)
    session = (await _login(client, email, PASSWORD)).json()["data"]
    bearer = {"Authorization": f"Bearer {session['token']}"}
    assert (await client.get("/technicians", headers=bearer)).status_code == 200
    await users.set_enabled(pg, email, False)  # what `fixgate user disable` does

    async def refused() -> bool:
        return (await client.get("/technicians", headers=bearer)).status_code == 401

    await eventually(refused, timeout_s=5)
    assert (await _login(client, email, PASSWORD)).status_code == 403


async def test_a_sign_in_link_is_made_by_staff_and_traded_once_for_a_session(
    client: httpx.AsyncClient, pg: asyncpg.Connection
) -> None:
    acme = Tenant(client, "acme")
    technician_id, _ = await acme.technician()
    dispatcher = token(Role.DISPATCHER, "dispatcher-1", "acme")
    made = await client.post(
        "/auth/links", json={"role": "technician", "subject": technician_id}, headers=dispatcher
    )
    assert made.status_code == 200, made.text
    link = made.json()["data"]
    assert link["url"] == f"http://api/tech#code={link['code']}"
    assert "?" not in link["url"]  # the code rides in the fragment only
    assert await pg.fetchval("SELECT count(*) FROM signinlinks WHERE codehash = $1",
                             users.code_hash(link["code"])) == 1  # fmt: skip
    assert not await pg.fetchval("SELECT count(*) FROM signinlinks WHERE codehash = $1",
                                 link["code"])  # fmt: skip

    first = await client.post("/auth/redeem", json={"code": link["code"]})
    assert first.status_code == 200, first.text
    session = first.json()["data"]
    principal = read_token(SECRET, session["token"])
    assert (principal.role, principal.subject) == (Role.TECHNICIAN, technician_id)
    mine = await client.get(
        "/technician/current-request", headers={"Authorization": f"Bearer {session['token']}"}
    )
    assert mine.status_code == 404  # a technician's own endpoint: nothing assigned yet
    again = await client.post("/auth/redeem", json={"code": link["code"]})
    assert again.status_code == 401

    # A customer's link goes to the customer app; an expired one is refused.
    customer_id, _, _ = await acme.customer()
    made = await client.post(
        "/auth/links", json={"role": "customer", "subject": customer_id, "ttlS": 60},
        headers=dispatcher,
    )  # fmt: skip
    code = made.json()["data"]["code"]
    assert made.json()["data"]["url"].endswith(f"/help#code={code}")
    await pg.execute("UPDATE signinlinks SET expiresat = now() - interval '1 s'")
    assert (await client.post("/auth/redeem", json={"code": code})).status_code == 401


async def test_links_only_for_the_tenants_enabled_technicians_and_customers_by_staff(
    client: httpx.AsyncClient,
) -> None:
    acme = Tenant(client, "acme")
    technician_id, tech = await acme.technician()
    customer_id, _, customer = await acme.customer()
    body = {"role": "technician", "subject": technician_id}
    other_tenant = token(Role.ADMIN, "admin-1", "globex")
    assert (await client.post("/auth/links", json=body, headers=other_tenant)).status_code == 404
    for who in (tech, customer):
        assert (await client.post("/auth/links", json=body, headers=who)).status_code == 403
    wrong_kind = {"role": "customer", "subject": technician_id}
    assert (
        await client.post("/auth/links", json=wrong_kind, headers=acme.admin)
    ).status_code == 404
    await client.post(f"/customers/{customer_id}/disable", headers=acme.admin)
    disabled = {"role": "customer", "subject": customer_id}
    answer = await client.post("/auth/links", json=disabled, headers=acme.admin)
    assert answer.status_code == 409 and "disabled" in answer.json()["message"]


def test_fixgate_user_add_prints_a_password_once_or_reads_one(db_url: str) -> None:
    env = {"FIXGATE_DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"}
    made = subprocess.run(
        [FIXGATE_BIN, "user", "add", "--tenant", "acme", "--role", "dispatcher",
         "--email", "Dana@Example.com"],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    password = made.stdout.strip().splitlines()[-1]
    assert len(password) >= 16 and "dana@example.com" in made.stdout
    read = subprocess.run(
        [FIXGATE_BIN, "user", "add", "--tenant", "acme", "--role", "admin",
         "--email", "ed@example.com", "--password-stdin"],
        env=env, cwd=REPO_ROOT, input=PASSWORD + "\n", capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    assert PASSWORD not in read.stdout
    again = subprocess.run(
        [FIXGATE_BIN, "user", "add", "--tenant", "acme", "--role", "admin",
         "--email", "dana@example.com"],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert again.returncode == 1 and "exists already" in again.stderr
    listed = subprocess.run([FIXGATE_BIN, "user", "list", "--tenant", "acme"], env=env,
                            cwd=REPO_ROOT, capture_output=True, text=True, check=True)  # fmt: skip
    assert "dana@example.com\tdispatcher\tenabled" in listed.stdout
    assert "ed@example.com\tadmin\tenabled" in listed.stdout
