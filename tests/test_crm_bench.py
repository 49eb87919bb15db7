"""``earpiece bench crm`` runs on both backends and leaves nothing behind."""

from __future__ import annotations

import psycopg
import pytest
from test_crm import pg_admin_url  # noqa: F401  (fixture, used by name)

from earpiece.bench.crm import run_bench
from earpiece.cli import main as cli_main


async def test_bench_on_sqlite() -> None:
    result = await run_bench("sqlite:///:memory:", calls=50, batch=40)
    assert (result.backend, result.events, result.statements) == ("sqlite", 250, 350)
    assert result.events_per_s > 0 and result.loop_stall_max_ms >= result.loop_stall_p50_ms


async def test_bench_on_postgresql_drops_its_schema(request: pytest.FixtureRequest) -> None:
    url: str = request.getfixturevalue("pg_admin_url")
    result = await run_bench(url, calls=50, batch=40, gc_off=True)
    assert (result.backend, result.events, result.gc_off) == ("postgresql", 250, True)
    with psycopg.connect(url) as conn:
        left = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s",
                            ("earpiece_bench_%",)).fetchall()
    assert left == []


def test_bench_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["bench", "crm", "--calls", "20", "--json"]) == 0
    assert '"backend": "sqlite"' in capsys.readouterr().out
