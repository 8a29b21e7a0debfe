"""`fixgate demo`, bounded: its gateway, engine and API come up, a scenario runs through the
real API on OSRM's roads up to the technician's arrival (or completion), and everything
stops in order."""

from __future__ import annotations

import contextlib
import queue
import re
import subprocess
import threading
import time
from pathlib import Path

import httpx

from tests.support.gateway import free_port
from tests.support.paths import FIXGATE_BIN
from tests.support.services import Services

DURATION_S = 95
"""The demo's own bound: start-up (~10 s), the first ring (~5 s), a journey of at most
400 m up the road the technician drives along (10-50 s through Monaco with its stops),
the arrival. (A job placed at random 400 m away could take two minutes and more over
Monaco's one-way lanes: CI once saw that, with no arrival within the bound.)"""
ARRIVED = ("Completed",)


def _lines(stream: object, out: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        out.put(line)


def test_a_bounded_demo_runs_a_scenario_to_the_arrival(
    fixgate_env: dict[str, str],
    routing_url: str,
    tmp_path: Path,
    redis_client: object,
    services: Services,
) -> None:
    api_port = free_port()
    env = {
        **fixgate_env,
        "FIXGATE_ROUTING_URL": routing_url,
        "FIXGATE_STACK_DIR": str(tmp_path / "stack"),
        "FIXGATE_SPOOL_DIR": str(tmp_path / "spool"),
        **{
            f"FIXGATE_{name}_PORT": str(free_port())
            for name in ("TCP", "METRICS", "TELTONIKA", "GT06", "OSMAND", "ENGINE")
        },
        "FIXGATE_API_PORT": str(api_port),
        # As `./run demo` has it from `fixgate stack env`: the phones' broker accounts
        # are made by the demo's fleet, and the demo's gateway gets an account of its own.
        "FIXGATE_MQTT_ADMIN_URL": services.mqtt_admin_url or "",
    }
    env.pop("FIXGATE_API_SECRET", None)  # the demo's documented default
    args = ["demo", "--duration", str(DURATION_S), "--technicians", "2", "--trucks", "1",
            "--teltonika", "1", "--job-m", "400", "--every-s", "30", "--work-s", "3"]  # fmt: skip
    proc = subprocess.Popen(
        [FIXGATE_BIN, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True).start()
    seen: list[str] = []
    token = None
    logged_in: int | None = None
    signed_in: dict[str, dict[str, object]] = {}
    arrived: dict[str, object] | None = None
    deadline = time.monotonic() + DURATION_S + 60
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=5) as api:
            while time.monotonic() < deadline and proc.poll() is None:
                with contextlib.suppress(queue.Empty):
                    seen.append(lines.get(timeout=1.0))
                if token is None:
                    found = re.search(r"/console#token=(\S+)", "".join(seen))
                    token = found.group(1) if found else None
                if token is None:
                    continue
                login = re.search(r"/login as (\S+), password (\S+) ", "".join(seen))
                if login and logged_in is None:  # the printed dispatcher logs in
                    logged_in = api.post("/auth/login", json={
                        "email": login.group(1), "password": login.group(2)}).status_code  # fmt: skip
                if not signed_in:
                    signed_in = _sign_in_with_the_printed_links(api, "".join(seen))
                if arrived is not None:
                    continue
                # Through the API, as the console sees it: a request the technician reached.
                # (Once the demo's duration is over it stops its API before it exits itself.)
                try:
                    rows = api.get(
                        "/service-requests",
                        params={"rowsPerPage": 100},
                        headers={"Authorization": f"Bearer {token}"},
                    ).json()["data"]
                    for row in rows:
                        detail = api.get(
                            f"/service-request/{row['requestId']}",
                            headers={"Authorization": f"Bearer {token}"},
                        ).json()["data"]
                        if detail["arrivedAt"] or detail["requestStatus"] in ARRIVED:
                            arrived = detail
                except httpx.ConnectError:
                    break
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    while not lines.empty():
        seen.append(lines.get())
    output = "".join(seen)
    assert code == 0, output[-4000:]
    assert arrived is not None, output[-4000:]
    assert logged_in == 200, output[-4000:]
    assert arrived["technician"] is not None and arrived["journeyStartedAt"] is not None
    assert "arrived (the engine's trip_arrived" in output, output[-4000:]
    assert "/track/" in output and "ring" in output
    # The links a person opens to play the technician or the customer: each signs in once.
    assert {role: s["role"] for role, s in signed_in.items()} == {
        "tech": "technician",
        "help": "customer",
    }, output[-4000:]
    assert "is a service area (SLA 15 min)" in output, output[-4000:]
    assert "stopped; exit codes api 0, engine 0, gateway 0" in output, output[-2000:]
    for name in ("gateway", "engine", "api"):
        assert (tmp_path / "stack" / f"demo-{name}.log").stat().st_size > 0


def _sign_in_with_the_printed_links(api: httpx.Client, output: str) -> dict[str, dict[str, object]]:
    """The technician and customer links printed for a person, each traded for a session
    (then used, as a person opening it would); {} until both are printed."""
    found = dict(re.findall(r"/(tech|help)#code=(\S+)", output))
    if set(found) != {"tech", "help"}:
        return {}
    sessions = {}
    for page, code in found.items():
        assert api.get(f"/{page}").status_code == 200
        answer = api.post("/auth/redeem", json={"code": code})
        assert answer.status_code == 200, answer.text
        sessions[page] = session = answer.json()["data"]
        me = api.get(
            "/technician/me" if page == "tech" else "/customer/me",
            headers={"Authorization": f"Bearer {session['token']}"},
        )
        assert me.status_code == 200, me.text
        assert "(technician app)" in me.text or "(customer app)" in me.text, me.text
        # A link signs in once: opened again (or by someone else), it is refused.
        assert api.post("/auth/redeem", json={"code": code}).status_code == 401
    return sessions
