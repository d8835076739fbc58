"""The endpoint table: paths, methods, strict parameter lists and how each resolves its user.

How a resource resolves the caller decides what a bad token does (protocol §4.3):

- ``guest``: v1 classes hard-code the guest and never read the header.
- ``public``: the resource asks only for public collections (v4 ``getSeriesSize``,
  ``getUpdatedSeries``) or never looks at a user (manifests, licenses).
- ``direct``: ``getUserName()`` is called directly, so an invalid or expired token is a 401
  with an empty body; with no header, v4 runs as guest and the old ``getData`` (v2 and the
  unversioned Advanced API) throws a NullPointerException, i.e. a 500.
- ``swallow``: ``getAuthorizedCollections()`` is called inside a try/catch that swallows the
  failure; the query then runs with no authorization and finds nothing, so a bad token (or no
  header on v2) looks exactly like "no rows".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from nbia_audit.emulator.backend import Backend
from nbia_audit.emulator.wire import Response

AuthMode = Literal["guest", "public", "direct", "swallow"]
Family = Literal["v1", "v2", "v4", "adv", "auth"]


@dataclass(frozen=True, slots=True)
class Request:
    """A parsed request, with the caller already resolved to a user and authorized sites."""

    method: str
    path: str
    params: Mapping[str, Sequence[str]]  # query then form values, per name, in order
    headers: Mapping[str, str]  # lower-cased names
    user: str
    sites: frozenset[str]
    family: Family
    drop_images: int = 0  # an active ``drop_images`` fault for this download

    def get(self, name: str) -> str | None:
        """The first value of a parameter, as ``@QueryParam``/``@FormParam`` bind it."""
        values = self.params.get(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        """Every value of a repeated parameter (``List<String>`` form params)."""
        return list(self.params.get(name, ()))


Handler = Callable[[Backend, Request], Response]


@dataclass(frozen=True, slots=True)
class Route:
    """One resource class: where it lives and how it treats parameters and tokens."""

    name: str
    family: Family
    method: str
    handler: Handler = field(compare=False)
    auth: AuthMode = "direct"
    allowed: tuple[str, ...] | None = None  # v4 strict parameter list (declaration order)
    param_kind: Literal["query", "form"] = "query"
    # The resource takes the whole form as a MultivaluedMap entity rather than @FormParams.
    form_entity: bool = False

    @property
    def endpoint(self) -> str:
        """The name faults and the request log match on (``getSeries``, ``token``)."""
        return self.name.rsplit("/", 1)[-1]

    @property
    def key(self) -> str:
        """The path under ``/nbia-api/services/`` (``v4/getSeries``, ``getMD5Hierarchy``)."""
        if self.family in ("adv", "auth"):
            return self.name
        return f"{self.family}/{self.name}"


ROUTES: dict[str, Route] = {}


def register(route: Route) -> None:
    """Add a route to the table (each path once)."""
    if route.key in ROUTES:
        raise ValueError(f"duplicate route {route.key}")
    ROUTES[route.key] = route


def endpoint(
    name: str,
    families: Sequence[Family],
    *,
    method: str = "GET",
    auth: AuthMode | Mapping[Family, AuthMode] = "direct",
    allowed: Sequence[str] | None = None,
    param_kind: Literal["query", "form"] = "query",
    form_entity: bool = False,
) -> Callable[[Handler], Handler]:
    """Decorator registering one handler under several API families.

    v1 always runs as guest; ``allowed`` (the strict list) applies to v4 only.
    """

    def wrap(handler: Handler) -> Handler:
        for family in families:
            mode: AuthMode = auth if isinstance(auth, str) else auth[family]
            register(
                Route(
                    name=name,
                    family=family,
                    method=method,
                    handler=handler,
                    auth="guest" if family == "v1" else mode,
                    allowed=tuple(allowed) if allowed is not None and family == "v4" else None,
                    param_kind=param_kind,
                    form_entity=form_entity,
                )
            )
        return handler

    return wrap
