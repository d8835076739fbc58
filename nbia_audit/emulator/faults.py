"""Injected faults: what can go wrong between a client and a real archive.

A ``Fault`` is matched against each request (optionally only one endpoint, by name) and fires
at most ``times`` times (None: until cleared). Several faults may fire on one request: a
latency fault delays it and a status fault still answers it.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Literal

FaultKind = Literal["latency", "status", "rate_limit", "reset", "truncate", "drop_images"]
FAULT_KINDS: tuple[FaultKind, ...] = (
    "latency",
    "status",
    "rate_limit",
    "reset",
    "truncate",
    "drop_images",
)


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault rule.

    - ``latency``: sleep ``delay`` seconds before answering.
    - ``status``: answer ``status`` (default 503) with a plain-text body instead.
    - ``rate_limit``: answer 429 with ``Retry-After: retry_after``.
    - ``reset``: close the connection without any response.
    - ``truncate``: close the connection after ``after_bytes`` bytes of the (chunked) body.
    - ``drop_images``: a series ZIP silently lacks its last ``count`` images and its
      ``md5hashes.csv`` but is otherwise well-formed (protocol §2.1).
    """

    kind: FaultKind
    endpoint: str | None = None
    times: int | None = None
    delay: float = 0.0
    status: int = 503
    retry_after: int = 1
    after_bytes: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; use one of {FAULT_KINDS}")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be at least 1, or None for 'until cleared'")

    def matches(self, endpoint: str) -> bool:
        """Whether this rule applies to a request for ``endpoint`` (an endpoint name)."""
        return self.endpoint is None or self.endpoint == endpoint

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict (the control API's representation)."""
        return asdict(self)


class _Rule:
    __slots__ = ("fault", "remaining")

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self.remaining = fault.times


class FaultPlan:
    """The active faults with their remaining counts; thread-safe."""

    def __init__(self) -> None:
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        """Activate a rule."""
        with self._lock:
            self._rules.append(_Rule(fault))

    def clear(self) -> None:
        """Remove every rule."""
        with self._lock:
            self._rules.clear()

    @property
    def active(self) -> tuple[Fault, ...]:
        """The rules that can still fire."""
        with self._lock:
            return tuple(rule.fault for rule in self._rules)

    def take(self, endpoint: str, kinds: tuple[FaultKind, ...]) -> list[Fault]:
        """Consume and return the rules of ``kinds`` that fire for this request.

        Only the first matching rule of each kind fires, so two ``times=1`` rules of the same
        kind fire on two successive requests.
        """
        fired: list[Fault] = []
        with self._lock:
            seen: set[str] = set()
            for rule in list(self._rules):
                fault = rule.fault
                if fault.kind not in kinds or fault.kind in seen or not fault.matches(endpoint):
                    continue
                seen.add(fault.kind)
                fired.append(fault)
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining == 0:
                        self._rules.remove(rule)
        return fired
