"""Credentials: API key kinds and their permissions, other accounts' paths, revocation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import requests
from twilio.base.exceptions import TwilioRestException

from emulator_client import API, CONVERSATIONS, FLEX, TASKROUTER, EmulatorSession, emulator_client
from stuck_tasks.emulator import KEY_KINDS, PERMISSIONS, Account, Emulator, Faults

AUTHORIZATION_FAILED = {
    "code": 70051,
    "message": "Authorization Failed",
    "more_info": "https://www.twilio.com/docs/errors/70051",
    "status": 403,
}


@dataclass
class World:
    emu: Emulator
    acct: Account
    ws: str
    routes: dict[str, tuple[str, str, dict[str, str]]]

    def session(self, username: str, password: str) -> EmulatorSession:
        return EmulatorSession(self.emu.base_url, (username, password))

    def call(self, session: EmulatorSession, kind: str) -> requests.Response:
        method, url, data = self.routes[kind]
        return session.request(method, url, data=data or None)


def build_routes(emu: Emulator, acct: Account, ws: str) -> dict[str, tuple[str, str, Any]]:
    """One request per route kind that succeeds with the auth token (fresh objects each time)."""
    task = emu.add_task(ws, "pending")
    call = emu.add_call(acct.sid, "completed", ended_ago=timedelta(minutes=5))
    cf = emu.add_conference(acct.sid, friendly_name="room")
    refs = emu.add_interaction(acct.sid, workspace_sid=ws)
    other = emu.add_interaction(acct.sid, workspace_sid=ws)
    channel = f"{FLEX}/v1/Interactions/{refs.interaction_sid}/Channels/{refs.channel_sid}"
    agent = f"{FLEX}/v1/Interactions/{other.interaction_sid}/Channels/{other.channel_sid}"
    agent += f"/Participants/{other.agent_participant_sid}"
    v2010 = f"{API}/2010-04-01/Accounts/{acct.sid}"
    cancel = {"AssignmentStatus": "canceled", "Reason": "test"}
    return {
        "list_workspaces": ("GET", f"{TASKROUTER}/v1/Workspaces", {}),
        "fetch_workspace": ("GET", f"{TASKROUTER}/v1/Workspaces/{ws}", {}),
        "list_task_queues": ("GET", f"{TASKROUTER}/v1/Workspaces/{ws}/TaskQueues", {}),
        "list_workflows": ("GET", f"{TASKROUTER}/v1/Workspaces/{ws}/Workflows", {}),
        "list_tasks": ("GET", f"{TASKROUTER}/v1/Workspaces/{ws}/Tasks", {}),
        "fetch_task": ("GET", f"{TASKROUTER}/v1/Workspaces/{ws}/Tasks/{task}", {}),
        "update_task": ("POST", f"{TASKROUTER}/v1/Workspaces/{ws}/Tasks/{task}", cancel),
        "fetch_account": ("GET", f"{v2010}.json", {}),
        "fetch_call": ("GET", f"{v2010}/Calls/{call}.json", {}),
        "list_conferences": ("GET", f"{v2010}/Conferences.json", {}),
        "fetch_conference": ("GET", f"{v2010}/Conferences/{cf}.json", {}),
        "fetch_interaction_channel": ("GET", channel, {}),
        "update_interaction_channel": ("POST", channel, {"Status": "closed"}),
        "list_interaction_participants": ("GET", f"{channel}/Participants", {}),
        "update_interaction_participant": ("POST", agent, {"Status": "closed"}),
        "fetch_conversation": (
            "GET",
            f"{CONVERSATIONS}/v1/Conversations/{refs.conversation_sid}",
            {},
        ),
    }


@pytest.fixture
def world() -> Iterator[World]:
    with Emulator() as emu:
        acct = emu.add_account("Acme")
        ws = emu.add_workspace(acct.sid).sid
        yield World(emu, acct, ws, build_routes(emu, acct, ws))


def fresh(world: World) -> None:
    world.routes = build_routes(world.emu, world.acct, world.ws)


def test_every_route_kind_has_a_permission_entry(world: World) -> None:
    assert set(PERMISSIONS) == set(world.routes)
    assert KEY_KINDS == ("main", "standard", "restricted")
    assert {k for k, p in PERMISSIONS.items() if p is None} == {
        "fetch_account",
        "fetch_interaction_channel",
        "update_interaction_channel",
        "list_interaction_participants",
        "update_interaction_participant",
    }
    assert all(p is None or p.startswith("/twilio/") for p in PERMISSIONS.values())


@pytest.mark.parametrize("kind", ["token", "main"])
def test_the_auth_token_and_main_keys_reach_every_route(world: World, kind: str) -> None:
    if kind == "token":
        session = world.session(world.acct.sid, world.acct.auth_token)
    else:
        key = world.emu.add_api_key(world.acct.sid, kind="main")
        session = world.session(key.sid, key.secret)
    for route in world.routes:
        resp = world.call(session, route)
        assert resp.status_code == 200, (route, resp.text)


def test_standard_keys_reach_everything_but_the_account(world: World) -> None:
    key = world.emu.add_api_key(world.acct.sid)  # the Console's default kind
    assert key.kind == "standard"
    session = world.session(key.sid, key.secret)
    for route in world.routes:
        resp = world.call(session, route)
        if route == "fetch_account":
            # twilio/twilio-python issue #259: "expected" for a Standard key.
            assert resp.status_code == 401
            assert resp.json() == {
                "code": 20003,
                "message": "Authenticate",
                "more_info": "https://www.twilio.com/docs/errors/20003",
                "status": 401,
            }
        else:
            assert resp.status_code == 200, (route, resp.text)


@pytest.mark.parametrize("route", sorted(PERMISSIONS))
def test_a_restricted_key_reaches_a_route_only_with_its_permission(
    world: World, route: str
) -> None:
    permission = PERMISSIONS[route]
    others = sorted({p for p in PERMISSIONS.values() if p is not None and p != permission})
    without = world.emu.add_api_key(world.acct.sid, kind="restricted", permissions=others)
    resp = world.call(world.session(without.sid, without.secret), route)
    assert (resp.status_code, resp.json()) == (403, AUTHORIZATION_FAILED)
    if permission is None:
        return
    with_it = world.emu.add_api_key(world.acct.sid, kind="restricted", permissions=[permission])
    resp = world.call(world.session(with_it.sid, with_it.secret), route)
    assert resp.status_code == 200, resp.text


def test_a_refused_write_changes_nothing(world: World) -> None:
    read_only = world.emu.add_api_key(
        world.acct.sid, kind="restricted", permissions=["/twilio/taskrouter/workspaces/tasks/read"]
    )
    session = world.session(read_only.sid, read_only.secret)
    for route in ("update_task", "update_interaction_channel", "update_interaction_participant"):
        assert world.call(session, route).status_code == 403
    assert world.emu.mutations == []
    assert world.emu.flex_writes == []
    assert {r.code for r in world.emu.request_log} == {70051}


def test_restricted_keys_through_the_twilio_library(world: World) -> None:
    key = world.emu.add_api_key(
        world.acct.sid, kind="restricted", permissions=["/twilio/taskrouter/workspaces/tasks/read"]
    )
    client = emulator_client(world.emu.base_url, key.sid, key.secret, world.acct.sid)
    assert client.taskrouter.v1.workspaces(world.ws).tasks.list(page_size=50)
    with pytest.raises(TwilioRestException) as err:
        client.api.v2010.accounts(world.acct.sid).fetch()
    assert (err.value.status, err.value.code) == (403, 70051)


def test_key_kinds_and_permissions_are_checked_when_made(world: World) -> None:
    emu, acct = world.emu, world.acct
    with pytest.raises(ValueError, match="unknown key kind"):
        emu.add_api_key(acct.sid, kind="admin")
    with pytest.raises(ValueError, match="only restricted keys"):
        emu.add_api_key(acct.sid, kind="standard", permissions=["/twilio/voice/calls/read"])
    with pytest.raises(ValueError, match="must look like"):
        emu.add_api_key(acct.sid, kind="restricted", permissions=["calls:read"])
    with pytest.raises(TypeError):
        emu.add_api_key(acct.sid, kind="restricted", permissions="/twilio/voice/calls/read")
    ie = emu.add_account(region="ie1")
    with pytest.raises(ValueError, match="us1 region only"):
        emu.add_api_key(ie.sid, kind="restricted")
    # A permission no emulated route needs grants nothing.
    key = emu.add_api_key(
        acct.sid, kind="restricted", permissions=["/twilio/messaging/messages/read"]
    )
    assert key.permissions == ("/twilio/messaging/messages/read",)
    resp = world.call(world.session(key.sid, key.secret), "list_tasks")
    assert resp.status_code == 403


# ---------------------------------------------------------------- other accounts


def test_another_accounts_v2010_paths_are_401_not_404(world: World) -> None:
    other = world.emu.add_account("Other")
    their_call = world.emu.add_call(other.sid)
    their_cf = world.emu.add_conference(other.sid, friendly_name="room")
    session = world.session(world.acct.sid, world.acct.auth_token)
    base = f"{API}/2010-04-01/Accounts/{other.sid}"
    for url in (
        f"{base}.json",
        f"{base}/Calls/{their_call}.json",
        f"{base}/Calls/CA{'0' * 32}.json",
        f"{base}/Conferences.json",
        f"{base}/Conferences/{their_cf}.json",
    ):
        resp = session.get(url)
        assert (resp.status_code, resp.json()["code"]) == (401, 20003), url
    # TaskRouter URLs carry no account: another account's workspace is simply not found.
    their_ws = world.emu.add_workspace(other.sid).sid
    resp = session.get(f"{TASKROUTER}/v1/Workspaces/{their_ws}")
    assert (resp.status_code, resp.json()["code"]) == (404, 20404)


# ---------------------------------------------------------------- revocation


def test_credentials_are_revoked_after_revoke_after_requests(world: World) -> None:
    key = world.emu.add_api_key(world.acct.sid, kind="main")
    token = world.session(world.acct.sid, world.acct.auth_token)
    keyed = world.session(key.sid, key.secret)
    world.emu.set_faults(Faults(revoke_after=2))
    assert world.call(token, "list_tasks").status_code == 200
    assert world.call(keyed, "fetch_workspace").status_code == 200
    for session in (token, keyed, token):
        resp = world.call(session, "list_tasks")
        assert (resp.status_code, resp.json()["code"]) == (401, 20003)
    assert [r.fault for r in world.emu.request_log] == [None, None, "revoked", "revoked", "revoked"]
    assert all(r.account_sid is None for r in world.emu.request_log[2:])
    world.emu.set_faults(Faults())  # counted from when the knob was set
    assert world.call(token, "list_tasks").status_code == 200


def test_a_write_applied_before_revocation_is_recorded(world: World) -> None:
    token = world.session(world.acct.sid, world.acct.auth_token)
    world.emu.set_faults(Faults(revoke_after=1))
    assert world.call(token, "update_task").status_code == 200
    assert len(world.emu.mutations) == 1
    fresh(world)
    assert world.call(token, "update_task").status_code == 401
    assert len(world.emu.mutations) == 1
