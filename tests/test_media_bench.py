"""``earpiece bench media`` runs end to end (tiny load) and reports the agreed keys."""

from __future__ import annotations

import json
import subprocess
import sys

KEYS = {"calls", "seconds", "cpu_s_per_call_s", "packets_per_s", "lateness_p99_ms",
        "dropped_late", "dropped_other", "rss_mb_per_call"}


def test_bench_media_json_small_run() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "earpiece.cli", "bench", "media", "--calls", "3", "--seconds",
         "2", "--spoof-per-s", "10", "--json"],
        capture_output=True, text=True, timeout=120, check=True,
    )
    r = json.loads(out.stdout)
    assert KEYS <= set(r)
    assert r["calls"] == 3 and r["streams"] == 6
    assert r["frames"] == 6 * 100  # every 20 ms frame of every stream was delivered
    assert abs(r["packets_per_s"] - 300) < 1
    assert r["dropped_late"] == 0 and r["dropped"]["lost_never_arrived"] == 0
    # the spoofed packets were all dropped, and they are all that was dropped
    assert r["spoofed_sent"] > 0 and r["spoofed_dropped"] == r["spoofed_sent"]
    assert r["dropped_other"] == r["spoofed_sent"]
    assert r["cpu_s_per_call_s"] > 0 and r["lateness_p99_ms"] >= 0


def test_bench_media_slin16() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "earpiece.cli", "bench", "media", "--calls", "2", "--seconds",
         "1", "--codec", "slin16", "--spoof-per-s", "0", "--json"],
        capture_output=True, text=True, timeout=120, check=True,
    )
    r = json.loads(out.stdout)
    assert r["frames"] == 4 * 50 and r["dropped_other"] == 0 and r["dropped_late"] == 0
