"""Tokens against the emulator: when they are sent, expiry mid-run, refresh, re-login, logout,
NBIA's swallowed 401s, concurrency, and secrets never leaking."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from nbia_audit.client import Credentials
from nbia_audit.emulator import CorpusSpec, Emulator, Fault
from nbia_audit.errors import ApiUnauthorized, AuthError
from tests.support.client import (
    ALICE,
    FakeClock,
    calls,
    grant_types,
    make_client,
    running_clocked_emulator,
    running_emulator,
)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    """A fresh emulator per test."""
    yield from running_emulator()


@pytest.fixture
def clocked_emu() -> Iterator[tuple[Emulator, FakeClock]]:
    """An emulator whose tokens expire by a fake clock (60 s access, 600 s refresh)."""
    yield from running_clocked_emulator()


def _access_token(client: object) -> str:
    """The client's current access token (read only to prove it never leaks)."""
    token = client._caller.tokens._token  # type: ignore[attr-defined]
    assert token is not None
    return str(token.access_token)


def test_v4_without_credentials_never_sends_a_token(emu: Emulator) -> None:
    client = make_client(emu)
    uid = client.series()[0].series_uid
    client.series_metadata([uid])
    client.series_hash(uid)
    assert not calls(emu, "token")
    assert not any(record.token_sent for record in emu.requests)


def test_token_only_endpoints_log_in_as_guest_once(emu: Emulator) -> None:
    client = make_client(emu, api="v2")
    uids = [s.series_uid for s in client.series()]
    client.series_metadata(uids)  # getSeriesMetadata2, Advanced
    client.series_hash(uids[0])  # unversioned getMD5Hierarchy
    assert grant_types(emu) == ["password"]
    assert dict(calls(emu, "token")[0].params)["username"] == "nbia_guest"
    assert all(r.token_sent for r in emu.requests if r.endpoint != "token")


def test_v1_never_sends_a_token_to_v1_endpoints(emu: Emulator) -> None:
    client = make_client(emu, api="v1", credentials=ALICE)
    client.series()
    client.collections()
    assert not calls(emu, "token") and not any(r.token_sent for r in emu.requests)


def test_named_user_token_is_sent_to_v4(emu: Emulator) -> None:
    client = make_client(emu, credentials=ALICE)
    assert client.collections()
    assert dict(calls(emu, "token")[0].params)["username"] == "alice"
    assert all(r.token_sent for r in emu.requests if r.endpoint != "token")


def test_token_is_refreshed_before_it_expires(clocked_emu: tuple[Emulator, FakeClock]) -> None:
    emulator, clock = clocked_emu
    client = make_client(emulator, credentials=ALICE, clock=clock)
    client.collections()
    clock.advance(45)  # 60 s token, renewed in its last 30 s (half its life)
    client.collections()
    assert grant_types(emulator) == ["password", "refresh_token"]
    assert not [r for r in emulator.requests if r.status == 401]


def test_token_expiring_mid_run_is_refreshed_once_on_401(emu: Emulator) -> None:
    client = make_client(emu, api="v2", credentials=ALICE)
    uid = client.series()[0].series_uid
    emu.expire_tokens()  # the server forgets the token; the client cannot know
    assert len(client.series_hash(uid)) == 32
    assert grant_types(emu) == ["password", "refresh_token"]
    assert [r.status for r in calls(emu, "getMD5Hierarchy")] == [401, 200]


def test_dead_refresh_token_leads_to_a_fresh_login(clocked_emu: tuple[Emulator, FakeClock]) -> None:
    emulator, server_clock = clocked_emu
    client_clock = FakeClock(server_clock.now)
    client = make_client(emulator, api="v2", credentials=ALICE, clock=client_clock)
    client.collections()
    server_clock.advance(601)  # the server's refresh token died; the client's clock disagrees
    assert client.collections()
    assert grant_types(emulator) == ["password", "refresh_token", "password"]


@pytest.mark.parametrize(
    "fault",
    [
        Fault("status", status=503, endpoint="token", times=1),  # the server may have acted
        Fault("reset", endpoint="token", times=1),  # sent, then the connection dropped
    ],
    ids=["503", "reset"],
)
def test_a_failed_refresh_is_never_retried_but_replaced_by_a_login(
    clocked_emu: tuple[Emulator, FakeClock], fault: Fault
) -> None:
    # With refresh-token rotation, a refresh the server may have acted on spent its token:
    # sending it again would fail or, worse, race the rotation. A fresh login is safe.
    emulator, clock = clocked_emu
    client = make_client(emulator, credentials=ALICE, clock=clock)
    client.collections()
    emulator.add_fault(fault)
    clock.advance(45)  # into the renewal half of the token's life
    assert client.collections()
    assert grant_types(emulator) == ["password", "refresh_token", "password"]


def test_refresh_token_past_its_lifetime_is_not_even_tried(
    clocked_emu: tuple[Emulator, FakeClock],
) -> None:
    emulator, clock = clocked_emu
    client = make_client(emulator, credentials=ALICE, clock=clock)
    client.collections()
    clock.advance(700)
    client.collections()
    assert grant_types(emulator) == ["password", "password"]


def test_swallowed_401_on_a_list_endpoint_is_detected_and_repaired(emu: Emulator) -> None:
    client = make_client(emu, api="v2", credentials=ALICE)
    expected = sorted(s.series_uid for s in client.series())
    emu.expire_tokens()
    # v2 getSeries answers a rejected token with 200 and an empty body (protocol §4.3).
    assert sorted(s.series_uid for s in client.series()) == expected
    statuses = [(r.endpoint, r.status) for r in emu.requests[-4:]]
    assert statuses == [
        ("getSeries", 200),
        ("getMD5Hierarchy", 401),
        ("token", 200),
        ("getSeries", 200),
    ]
    assert grant_types(emu) == ["password", "refresh_token"]


def test_a_true_empty_list_costs_one_probe_and_stays_empty(emu: Emulator) -> None:
    client = make_client(emu, api="v2", credentials=ALICE)
    assert client.series(collection="NO-SUCH-COLLECTION") == []
    assert [r.endpoint for r in emu.requests] == ["token", "getSeries", "getMD5Hierarchy"]
    assert grant_types(emu) == ["password"]


def test_204_from_get_series_metadata_means_inaccessible(emu: Emulator) -> None:
    client = make_client(emu, api="v2", credentials=ALICE)
    uids = sorted(s.series_uid for s in client.series())
    emu.hide_series(uids[0])
    found = client.series_metadata(uids)  # getSeriesMetadata2
    assert sorted(info.series_uid for info in found) == uids[1:]
    v1 = make_client(emu, api="v1")
    assert v1.series_metadata([uids[0]]) == []
    assert calls(emu, "getSeriesMetaData")[-1].status == 204


def test_tokens_the_server_keeps_rejecting_raise_unauthorized() -> None:
    frozen = FakeClock()
    with Emulator.from_spec(CorpusSpec(seed=1, collections=1, patients=1, series=1), token_ttl=0.0,
                            users={"alice": ALICE.password}, clock=frozen) as emulator:  # fmt: skip
        client = make_client(emulator, credentials=ALICE)
        with pytest.raises(ApiUnauthorized) as direct:
            client.collections()  # a 401 endpoint: 401, renew, 401
        assert direct.value.status == 401 and direct.value.endpoint == "v4/getCollectionValues"
        v2 = make_client(emulator, api="v2", credentials=ALICE)
        with pytest.raises(ApiUnauthorized, match="keeps rejecting fresh tokens"):
            v2.series()  # a swallowing endpoint: empty, probe 401, renew, empty, probe 401


def test_wrong_password_is_an_auth_error_that_hides_the_password(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(emu, api="v2", credentials=Credentials("alice", "wrong-password-9"))
    with pytest.raises(AuthError) as caught:
        client.collections()
    message = str(caught.value)
    assert "alice" in message and "invalid_grant" in message
    assert "wrong-password-9" not in message and "wrong-password-9" not in caplog.text
    assert "wrong-password-9" not in repr(client)


def test_secrets_never_reach_logs_messages_or_reprs(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(emu, api="v2", credentials=ALICE)
    client.collections()
    first = _access_token(client)
    emu.expire_tokens()
    client.collections()
    second = _access_token(client)
    client.logout()
    texts = caplog.text + repr(client) + repr(client._caller.tokens)
    for secret in (ALICE.password, first, second):
        assert secret not in texts


def test_logout_posts_the_token_and_the_next_call_logs_in_again(emu: Emulator) -> None:
    client = make_client(emu, api="v2", credentials=ALICE)
    client.collections()
    client.logout()
    logout = calls(emu, "logout")
    assert len(logout) == 1 and logout[0].method == "POST" and logout[0].token_sent
    assert logout[0].status < 300
    client.logout()  # nothing to end: no request
    assert len(calls(emu, "logout")) == 1
    client.collections()
    assert grant_types(emu) == ["password", "password"]


def test_close_logs_out_and_swallows_a_failed_logout(emu: Emulator) -> None:
    with make_client(emu, api="v2", credentials=ALICE) as client:
        client.collections()
        emu.expire_tokens()
    assert calls(emu, "logout")  # attempted; its refusal was only logged


def test_a_refused_logout_is_an_auth_error(emu: Emulator) -> None:
    client = make_client(emu, api="v2", credentials=ALICE)
    client.collections()
    emu.backend.tokens.revoke(_access_token(client))
    with pytest.raises(AuthError, match="logout"):
        client.logout()


def test_many_threads_share_one_login_and_one_refresh(emu: Emulator) -> None:
    client = make_client(emu, api="v2", credentials=ALICE)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(3):
                assert client.collections()
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    def run_all() -> None:
        threads = [threading.Thread(target=work) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    run_all()
    emu.expire_tokens()
    run_all()
    assert not errors
    assert grant_types(emu) == ["password", "refresh_token"]
