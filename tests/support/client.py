"""Helpers shared by the client's emulator tests: a fake clock, recorded sleeps, client factories.

Every client test talks to the real emulator over loopback HTTP; only time is simulated: the
client's backoff sleeps are recorded instead of slept, and where token expiry matters the
emulator and the client share one fake clock.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from nbia_audit.client import Credentials, NbiaClient, RetryPolicy, Timeouts
from nbia_audit.client.servers import ApiFamily
from nbia_audit.emulator import CorpusSpec, Emulator, RequestRecord

SPEC = CorpusSpec(seed=7, collections=2, patients=2, studies=1, series=2, images=3)
ALICE = Credentials("alice", "alice-pw-1234")
FAST_RETRY = RetryPolicy(attempts=4, base=0.2, cap=1.0, retry_after_cap=5.0)


class FakeClock:
    """Seconds since the epoch that move only when a test (or a recorded sleep) says so."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Sleeps:
    """A ``sleep`` that records each delay and advances a clock instead of waiting."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.delays: list[float] = []
        self._clock = clock

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self._clock is not None:
            self._clock.advance(seconds)


def make_client(
    emu: Emulator,
    *,
    api: ApiFamily = "v4",
    credentials: Credentials | None = None,
    sleeps: Sleeps | None = None,
    clock: FakeClock | None = None,
    **options: Any,
) -> NbiaClient:
    """A client for ``emu`` with fast, recorded, deterministic retries."""
    options.setdefault("retry", FAST_RETRY)
    options.setdefault("timeouts", Timeouts(connect=2.0, read=5.0))
    return NbiaClient(
        emu.base_url,
        api=api,
        credentials=credentials,
        sleep=sleeps if sleeps is not None else Sleeps(clock),
        clock=clock if clock is not None else FakeClock(),
        rng=random.Random(0),
        **options,
    )


def calls(emu: Emulator, endpoint: str) -> list[RequestRecord]:
    """The emulator's log of requests to one endpoint (``getSeries``, ``token``, ...)."""
    return [record for record in emu.requests if record.endpoint == endpoint]


def grant_types(emu: Emulator) -> list[str]:
    """The ``grant_type`` of every token request, in order."""
    return [dict(record.params).get("grant_type", "") for record in calls(emu, "token")]


def running_emulator() -> Iterator[Emulator]:
    """A fresh emulator with the named user ``alice`` (for a fixture to ``yield from``)."""
    with Emulator.from_spec(SPEC, users={ALICE.username: ALICE.password}) as emulator:
        yield emulator


def running_clocked_emulator() -> Iterator[tuple[Emulator, FakeClock]]:
    """An emulator whose token expiry follows a fake clock (60 s tokens, 600 s refresh)."""
    clock = FakeClock()
    with Emulator.from_spec(
        SPEC,
        users={ALICE.username: ALICE.password},
        token_ttl=60.0,
        refresh_ttl=600.0,
        clock=clock,
    ) as emulator:
        yield emulator, clock
