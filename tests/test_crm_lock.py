"""The instance lock: one active Earpiece per ARI app and CRM database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from test_crm import pg_admin_url, pg_url  # noqa: F401  (fixtures, used by name)

from earpiece.crm.backend import open_store
from earpiece.crm.lock import InstanceLock, InstanceLockedError, advisory_key


@pytest.fixture(params=["sqlite", "postgresql"])
def lock_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/crm.sqlite3"
    url: str = request.getfixturevalue("pg_url")
    return url


async def test_second_instance_is_refused_until_the_first_releases(lock_url: str) -> None:
    app = f"ep-{uuid.uuid4().hex[:8]}"
    first_store = await open_store(lock_url)
    second_store = await open_store(lock_url)
    try:
        first = InstanceLock(first_store, app)
        await first.acquire()
        second = InstanceLock(second_store, app)
        with pytest.raises(InstanceLockedError, match=f"ARI app '{app}'") as err:
            await second.acquire()
        assert f"pid={os.getpid()}" in str(err.value)  # names the live holder
        assert not second.held
        other = InstanceLock(second_store, app + "-other")  # another app is independent
        await other.acquire()
        await other.release()
        await first.release()
        await second.acquire()
        assert second.held
        await second.release()
    finally:
        await first_store.close()
        await second_store.close()


async def test_in_memory_database_needs_no_lock() -> None:
    store = await open_store("sqlite://:memory:")
    try:
        a, b = InstanceLock(store, "x"), InstanceLock(store, "x")
        await a.acquire()
        await b.acquire()  # a private database: nothing two processes could share
        assert a.path is None
    finally:
        await store.close()


HOLDER = textwrap.dedent("""
    import asyncio, sys
    from earpiece.crm.backend import open_store
    from earpiece.crm.lock import InstanceLock

    async def main():
        store = await open_store(sys.argv[1])
        lock = InstanceLock(store, sys.argv[2])
        await lock.acquire()
        print("locked", flush=True)
        await asyncio.sleep(60)
        await lock.release()

    asyncio.run(main())
""")


async def test_a_killed_holder_does_not_block_a_restart(lock_url: str) -> None:
    """kill -9 of the holder frees the lock at once: a restart is never refused by the dead."""
    app = f"ep-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, lock_url, app],  # noqa: ASYNC220
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        store = await open_store(lock_url)
        try:
            with pytest.raises(InstanceLockedError, match=f"pid={proc.pid}"):
                await InstanceLock(store, app).acquire()
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            lock = InstanceLock(store, app)
            for _ in range(50):  # PostgreSQL notices the dead session within moments
                try:
                    await lock.acquire()
                    break
                except InstanceLockedError:
                    await asyncio.sleep(0.1)
            assert lock.held
            await lock.release()
        finally:
            await store.close()
    finally:
        proc.kill()
        proc.wait(10)


def test_advisory_key_is_stable_and_signed_64_bit() -> None:
    assert advisory_key("earpiece") == advisory_key("earpiece")
    assert advisory_key("a") != advisory_key("b")
    assert -(2**63) <= advisory_key("earpiece") < 2**63
