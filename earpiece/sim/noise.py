"""Noise a real chan_pjsip channel puts on AMI besides the call-flow events: the
``RTPAUDIOQOS*`` variables set at hangup and the periodic ``RTCPReceived``/``RTCPSent``
reports (header sets as in ``captures/pjsip/ami/outbound_answered``). Values are plausible,
not measured."""

from __future__ import annotations

import random
import time

from earpiece.sim.model import Channel


def qos_values(rng: random.Random, ch: Channel) -> dict[str, str]:
    ssrc = rng.getrandbits(32)
    them = rng.getrandbits(32)
    n = max(1, int((time.monotonic() - ch.created_mono) * 50))
    return {
        "RTPAUDIOQOS": f"ssrc={ssrc};themssrc={them};lp=0;rxjitter=0.000125;rxcount={n};"
                       f"txjitter=0.000125;txcount={n};rlp=0;rtt=0.000100;"
                       "rxmes=88.087887;txmes=88.087887",
        "RTPAUDIOQOSJITTER": "minrxjitter=000.000000;maxrxjitter=000.000250;"
                             "avgrxjitter=000.000131;stdevrxjitter=000.000045;"
                             "mintxjitter=000.000000;maxtxjitter=000.000125;"
                             "avgtxjitter=000.000063;stdevtxjitter=000.000063;",
        "RTPAUDIOQOSLOSS": "  minrxlost=000.000000;  maxrxlost=000.000000;  "
                           "avgrxlost=000.000000;  stdevrxlost=000.000000;  "
                           "mintxlost=000.000000;  maxtxlost=000.000000;  "
                           "avgtxlost=000.000000;  stdevtxlost=000.000000;",
        "RTPAUDIOQOSRTT": "     minrtt=000.000076;     maxrtt=000.000137;     "
                          "avgrtt=000.000107;     stdevrtt=000.000030;",
        "RTPAUDIOQOSMES": "   minrxmes=088.087887;   maxrxmes=088.087887;   "
                          "avgrxmes=088.087887;   stdevrxmes=000.000000;   "
                          "mintxmes=088.086533;   maxtxmes=088.087887;   "
                          "avgtxmes=088.087486;   stdevtxmes=000.000574;",
    }


class RtcpReports:
    """The RTCP session of one PJSIP channel, as AMI reports it."""

    def __init__(self, rng: random.Random) -> None:
        self.t0 = time.monotonic()
        self.ssrc = rng.getrandbits(32)
        self.them = rng.getrandbits(32)
        self.local = 30000 + 2 * rng.randrange(500)
        self.remote = 42000 + 2 * rng.randrange(500)

    def headers(self, event: str, *, sr: bool) -> list[tuple[str, str]]:
        """Headers after the channel block of an ``RTCPReceived``/``RTCPSent`` event."""
        n = int((time.monotonic() - self.t0) * 50)
        sent = event == "RTCPSent"
        local, remote = f"127.0.0.1:{self.local}", f"127.0.0.1:{self.remote}"
        out = [("To", remote if sent else local), ("From", local if sent else remote)]
        if not sent:
            out.append(("RTT", "0.0001"))
        out += [("MES", "88.1"), ("SSRC", f"0x{(self.ssrc if sent else self.them):08x}"),
                ("PT", "200(SR)" if sr else "201(RR)"), ("ReportCount", "1")]
        if sr:
            out += [("SentNTP", f"{time.time():.6f}"), ("SentRTP", str(n * 160)),
                    ("SentPackets", str(n)), ("SentOctets", str(n * 160))]
        out += [("Report0SourceSSRC", f"0x{(self.them if sent else self.ssrc):08x}"),
                ("Report0FractionLost", "0"), ("Report0CumulativeLost", "0"),
                ("Report0HighestSequence", str(n & 0xFFFF)),
                ("Report0SequenceNumberCycles", "0"), ("Report0IAJitter", "1"),
                ("Report0LSR", "0"), ("Report0DLSR", "0.0000")]
        return out
