"""fixgate installed from its wheel, outside the repository, finds its migrations (they
ship as package data) and migrates an empty database."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import psycopg

from tests.support.paths import REPO_ROOT
from tests.support.services import Services


def _constraints(tmp_path: Path) -> Path:
    """The lock's pins without hashes: the wheel's dependencies at exactly those versions."""
    pins = [
        line.split()[0]
        for line in (REPO_ROOT / "requirements.lock").read_text().splitlines()
        if "==" in line and not line.startswith((" ", "#"))
    ]
    path = tmp_path / "constraints.txt"
    path.write_text("\n".join(pins) + "\n")
    return path


def test_a_wheel_in_an_empty_virtualenv_migrates_an_empty_database(
    services: Services, tmp_path: Path
) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(REPO_ROOT)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = dist.glob("fixgate-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-c", str(_constraints(tmp_path)), str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    name = f"wheel_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(services.admin_database_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        outside = tmp_path / "elsewhere"
        outside.mkdir()
        done = subprocess.run(
            [str(venv / "bin" / "fixgate"), "migrate"],
            cwd=outside, capture_output=True, text=True, check=False,
            env={"PATH": "/usr/bin:/bin", "FIXGATE_DATABASE_URL": services.database_url(name)},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        migrations = sorted(
            p.stem for p in (REPO_ROOT / "migrations").iterdir() if p.suffix in (".sql", ".py")
        )
        assert done.stdout.strip() == f"applied: {', '.join(migrations)}"
        with psycopg.connect(services.database_url(name)) as conn:
            applied = [
                r[0] for r in conn.execute("SELECT migration_id FROM _yoyo_migration ORDER BY 1")
            ]
        assert applied == migrations
    finally:
        with psycopg.connect(services.admin_database_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
