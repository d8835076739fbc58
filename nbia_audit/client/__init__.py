"""The NBIA client: typed calls to an NBIA (TCIA) server, with retries and token handling.

Public names are re-exported here; the modules below are the implementation::

    servers     server aliases, API families, URL building
    transport   retries with backoff, timeouts, error translation
    auth        Credentials, TokenManager (OAuth password grant, refresh, logout)
    core        routing and the request pipeline (token rules, 401 and empty-answer quirks)
    queries     metadata endpoints          manifests   manifests and shared carts
    hashes      hash endpoints, downloads   download    the streaming ZIP writer
    parse       JSON/CSV rows -> records    records     the frozen result types
    search      simple-search criteria
"""

from __future__ import annotations

from nbia_audit.client.api import DEFAULT_METADATA_BATCH_SIZE, NbiaClient
from nbia_audit.client.auth import Credentials, TokenManager, credentials_from_env
from nbia_audit.client.download import DEFAULT_CHUNK_SIZE
from nbia_audit.client.records import (
    CollectionDescription,
    DoiMatch,
    License,
    Patient,
    SeriesDownload,
    SeriesInfo,
    SeriesSize,
    SharedList,
    Study,
    TokenInfo,
)
from nbia_audit.client.search import SearchCriterion
from nbia_audit.client.servers import (
    API_FAMILIES,
    SERVER_ALIASES,
    ApiFamily,
    ServerUrls,
    resolve_server,
)
from nbia_audit.client.transport import RetryPolicy, Timeouts
from nbia_audit.manifest import Manifest

__all__ = [
    "API_FAMILIES",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_METADATA_BATCH_SIZE",
    "SERVER_ALIASES",
    "ApiFamily",
    "CollectionDescription",
    "Credentials",
    "DoiMatch",
    "License",
    "Manifest",
    "NbiaClient",
    "Patient",
    "RetryPolicy",
    "SearchCriterion",
    "SeriesDownload",
    "SeriesInfo",
    "SeriesSize",
    "SharedList",
    "Study",
    "Timeouts",
    "TokenInfo",
    "TokenManager",
    "credentials_from_env",
    "resolve_server",
    "ServerUrls",
]
