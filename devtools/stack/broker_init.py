"""The broker's secrets, made once: accounts, the dynamic-security file and a TLS CA.

Standard library only (and the `openssl` command): docker-compose.yml mounts this file into
a plain `python` image (`python broker_init.py /mosquitto/data`), so the compose stack's
Mosquitto gets the same accounts, roles and certificates as the native stack's.

What it writes into the folder, each only when missing (so a restart changes nothing):

    credentials.json        the admin's and the gateway's passwords (mode 0600)
    dynamic-security.json   Mosquitto's dynamic-security plugin state: the admin account
                            (role `fixgate-admin`: the plugin's control topics only), the
                            gateway account (role `fixgate-gateway`: read the device topics),
                            everything else denied; devices are added by the registry
                            (gateway/registry/broker.py) while the broker runs
    ca.crt, ca.key          a CA made for this stack (10 years); clients verify with ca.crt
    server.crt, server.key  the broker's TLS certificate for localhost and 127.0.0.1

Passwords come from FIXGATE_MQTT_ADMIN_PASSWORD / FIXGATE_MQTT_GATEWAY_PASSWORD when set
(compose), else are generated (256 bits). With FIXGATE_BROKER_OWNER_UID (compose: the
image's `mosquitto` user) the files are handed to that user.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

ADMIN_USER = "fixgate-admin"
GATEWAY_USER = "fixgate-gateway"
ADMIN_ROLE = "fixgate-admin"
GATEWAY_ROLE = "fixgate-gateway"
DYNSEC_CONTROL = "$CONTROL/dynamic-security/#"
PBKDF2_ITERATIONS = 101
"""What `mosquitto_passwd` and `mosquitto_ctrl` use: accounts' passwords are 256-bit
random tokens, so a slow hash would only cost every (re)connection CPU."""
DEVICE_ROOTS = ("fixgate/+/+/fix", "fixgate/+/+/nmea", "owntracks/+/+")
CERT_DAYS = 3650


def hash_password(password: str) -> dict[str, object]:
    """The plugin's stored form of a password: PBKDF2-SHA512, base64 salt and hash."""
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": PBKDF2_ITERATIONS,
    }


HEALTH_TOPIC = "$SYS/broker/uptime"
"""What a health check may read as the gateway (compose's, now that nobody is anonymous)."""


def gateway_acls(prefix: str = "") -> list[dict[str, object]]:
    """Read-only on the device topics under `prefix`, also as a shared subscription, and
    the broker's uptime for health checks."""
    acls: list[dict[str, object]] = [
        {"acltype": "subscribeLiteral", "topic": HEALTH_TOPIC, "allow": True},
        {"acltype": "publishClientReceive", "topic": HEALTH_TOPIC, "allow": True},
    ]
    for root in DEVICE_ROOTS:
        topic = prefix + root
        acls += [
            {"acltype": "subscribePattern", "topic": topic, "allow": True},
            {"acltype": "subscribePattern", "topic": f"$share/+/{topic}", "allow": True},
            {"acltype": "unsubscribePattern", "topic": topic, "allow": True},
            {"acltype": "unsubscribePattern", "topic": f"$share/+/{topic}", "allow": True},
            {"acltype": "publishClientReceive", "topic": topic, "allow": True},
        ]
    return acls


def admin_acls() -> list[dict[str, object]]:
    return [
        {"acltype": kind, "topic": DYNSEC_CONTROL, "allow": True}
        for kind in ("publishClientSend", "publishClientReceive", "subscribePattern")
    ]


def _client(username: str, about: str, role: str, password: str) -> dict[str, object]:
    return {
        "username": username,
        "textname": about,
        "roles": [{"rolename": role}],
        **hash_password(password),
    }


def dynsec_config(admin_password: str, gateway_password: str) -> dict[str, object]:
    return {
        # Everything not granted is denied, receiving included: a session someone else
        # subscribed cannot leak another tenant's fixes to a device.
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": False,
        },
        "clients": [
            {
                "username": ADMIN_USER,
                "textname": "fixgate registry sync",
                "roles": [{"rolename": ADMIN_ROLE}],
                **hash_password(admin_password),
            },
            {
                "username": GATEWAY_USER,
                "textname": "fixgate gateway",
                "roles": [{"rolename": GATEWAY_ROLE}],
                **hash_password(gateway_password),
            },
        ],
        "groups": [],
        "roles": [
            {"rolename": ADMIN_ROLE, "acls": admin_acls()},
            {"rolename": GATEWAY_ROLE, "acls": gateway_acls()},
        ],
    }


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def _openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])} failed: {done.stderr[-500:]}")


def make_certificates(folder: Path) -> None:
    """A CA of the stack's own and the broker's certificate (localhost, 127.0.0.1) signed by it."""
    if (folder / "server.crt").exists() and (folder / "ca.crt").exists():
        return
    ca_key, ca_crt = folder / "ca.key", folder / "ca.crt"
    key, csr, crt = folder / "server.key", folder / "server.csr", folder / "server.crt"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(ca_key), "-out", str(ca_crt), "-days", str(CERT_DAYS),
             "-subj", "/CN=fixgate stack CA")  # fmt: skip
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost")  # fmt: skip
    ext = folder / "server.ext"
    ext.write_text("subjectAltName=DNS:localhost,DNS:mosquitto,IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
             "-CAcreateserial", "-out", str(crt), "-days", str(CERT_DAYS), "-extfile", str(ext))  # fmt: skip
    for path in (ca_key, key):
        path.chmod(0o600)
    csr.unlink()
    ext.unlink()


def init_broker_dir(folder: Path) -> dict[str, str]:
    """Make what is missing in `folder`; return the credentials (admin, gateway)."""
    folder.mkdir(parents=True, exist_ok=True)
    creds_file = folder / "credentials.json"
    if creds_file.exists():
        creds: dict[str, str] = json.loads(creds_file.read_text())
    else:
        creds = {
            "admin_user": ADMIN_USER,
            "admin_password": os.environ.get("FIXGATE_MQTT_ADMIN_PASSWORD")
            or secrets.token_urlsafe(32),
            "gateway_user": GATEWAY_USER,
            "gateway_password": os.environ.get("FIXGATE_MQTT_GATEWAY_PASSWORD")
            or secrets.token_urlsafe(32),
        }
        _write_private(creds_file, json.dumps(creds, indent=1) + "\n")
    dynsec = folder / "dynamic-security.json"
    if not dynsec.exists():
        config = dynsec_config(creds["admin_password"], creds["gateway_password"])
        _write_private(dynsec, json.dumps(config, indent=1) + "\n")
    make_certificates(folder)
    # Compose's broker runs as its image's own user: hand it what it reads and saves.
    owner = os.environ.get("FIXGATE_BROKER_OWNER_UID")
    if owner:
        for path in (folder, *folder.iterdir()):
            os.chown(path, int(owner), int(owner))
    return creds


if __name__ == "__main__":
    init_broker_dir(Path(sys.argv[1]))
