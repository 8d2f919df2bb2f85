"""Conferences, Flex Interaction channels/participants and Conversations in the emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from emulator_client import API, CONVERSATIONS, FLEX, TASKROUTER, EmulatorSession, emulator_client
from stuck_tasks.emulator import Emulator, Faults, InteractionRefs


@dataclass
class World:
    emu: Emulator
    client: Client
    session: EmulatorSession
    account_sid: str
    ws: str

    def channel_url(self, refs: InteractionRefs) -> str:
        return f"{FLEX}/v1/Interactions/{refs.interaction_sid}/Channels/{refs.channel_sid}"

    def participant_url(self, refs: InteractionRefs, sid: str | None = None) -> str:
        return f"{self.channel_url(refs)}/Participants/{sid or refs.agent_participant_sid}"

    def channel_api(self, refs: InteractionRefs) -> Any:
        return self.client.flex_api.v1.interaction(refs.interaction_sid).channels(refs.channel_sid)

    def interaction(self, **kwargs: Any) -> InteractionRefs:
        return self.emu.add_interaction(self.account_sid, workspace_sid=self.ws, **kwargs)

    def conferences_url(self, sid: str = "") -> str:
        base = f"{API}/2010-04-01/Accounts/{self.account_sid}/Conferences"
        return f"{base}/{sid}.json" if sid else f"{base}.json"


@pytest.fixture
def world() -> Iterator[World]:
    with Emulator() as emu:
        acct = emu.add_account("Acme Support")
        ws = emu.add_workspace(acct.sid, "Support")
        client = emulator_client(emu.base_url, acct.sid, acct.auth_token, acct.sid)
        session = EmulatorSession(emu.base_url, (acct.sid, acct.auth_token))
        yield World(emu, client, session, acct.sid, ws.sid)


def error(resp: requests.Response) -> tuple[int, int]:
    return resp.status_code, resp.json()["code"]


# ---------------------------------------------------------------- interaction channels


def test_closing_a_channel_without_routing_moves_its_task_to_wrapping(world: World) -> None:
    refs = world.interaction()
    channel = world.channel_api(refs).update(status="closed")
    assert channel.status == "closed"
    task = world.emu.task(refs.task_sid)
    assert task.status == "wrapping"
    assert (task.history[-1].before, task.history[-1].after, task.history[-1].by) == (
        "assigned",
        "wrapping",
        "platform",
    )
    view = world.emu.interaction_channel(refs.interaction_sid, refs.channel_sid)
    assert {p.type: p.status for p in view.participants} == {
        "customer": "closed",
        "agent": "wrapup",
    }
    assert world.emu.conversation(refs.conversation_sid).state == "closed"  # type: ignore[arg-type]
    (write,) = world.emu.flex_writes
    assert write.route == "update_interaction_channel"
    assert (write.before_channel_status, write.after_channel_status) == ("active", "closed")
    assert write.form == {"Status": "closed"}
    assert [(c.task_sid, c.before, c.after) for c in write.task_changes] == [
        (refs.task_sid, "assigned", "wrapping")
    ]
    assert world.emu.mutations == []


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("assigned", "completed"),
        ("wrapping", "completed"),
        ("pending", "canceled"),
        ("reserved", "canceled"),
    ],
)
def test_closing_with_routing_closed_closes_the_task(world: World, before: str, after: str) -> None:
    refs = world.interaction(task={"status": before})
    resp = world.session.post(
        world.channel_url(refs), data={"Status": "closed", "Routing": '{"status":"closed"}'}
    )
    assert resp.status_code == 200, resp.text
    task = world.emu.task(refs.task_sid)
    assert (task.status, task.reason) == (after, "Interaction channel closed")
    (write,) = world.emu.flex_writes
    assert [(c.before, c.after) for c in write.task_changes] == [(before, after)]
    agent = world.emu.interaction_channel(refs.interaction_sid, refs.channel_sid).participants[1]
    assert agent.status == "closed"


def test_closing_without_routing_leaves_unaccepted_tasks_open(world: World) -> None:
    refs = world.interaction(task={"status": "reserved"}, agent_status=None)
    assert refs.agent_participant_sid is None
    world.channel_api(refs).update(status="closed")
    assert world.emu.task(refs.task_sid).status == "reserved"
    assert world.emu.flex_writes[0].task_changes == ()


def test_inactive_needs_routing(world: World) -> None:
    refs = world.interaction()
    resp = world.session.post(world.channel_url(refs), data={"Status": "inactive"})
    assert error(resp) == (400, 20001)
    assert world.emu.task(refs.task_sid).status == "assigned"
    assert world.emu.flex_writes == []
    channel = world.channel_api(refs).update(status="inactive", routing={"status": "closed"})
    assert channel.status == "inactive"
    assert world.emu.task(refs.task_sid).status == "completed"
    # The conversation stays open: an inactive (parked) channel can be resumed.
    assert world.emu.conversation(refs.conversation_sid).state == "active"  # type: ignore[arg-type]
    again = world.session.post(
        world.channel_url(refs), data={"Status": "inactive", "Routing": '{"status":"closed"}'}
    )
    assert error(again) == (400, 20001)
    closed = world.session.post(world.channel_url(refs), data={"Status": "closed"})
    assert closed.status_code == 200


@pytest.mark.parametrize("status", ["closed", "failed"])
def test_closing_a_channel_that_is_not_open_answers_80906(world: World, status: str) -> None:
    refs = world.interaction(channel_status=status)
    with pytest.raises(TwilioRestException) as exc:
        world.channel_api(refs).update(status="closed")
    assert (exc.value.status, exc.value.code) == (400, 80906)
    assert "Interaction Not Open" in exc.value.msg
    assert world.emu.task(refs.task_sid).status == "assigned"
    assert world.emu.flex_writes == []


def test_a_second_close_answers_80906(world: World) -> None:
    refs = world.interaction()
    form = {"Status": "closed", "Routing": '{"status":"closed"}'}
    assert world.session.post(world.channel_url(refs), data=form).status_code == 200
    resp = world.session.post(world.channel_url(refs), data=form)
    assert resp.json() == {
        "code": 80906,
        "message": f"Interaction Not Open: channel {refs.channel_sid} is closed",
        "more_info": "https://www.twilio.com/docs/errors/80906",
        "status": 400,
    }
    assert len(world.emu.flex_writes) == 1


@pytest.mark.parametrize(
    "form",
    [
        {},
        {"Status": "active"},
        {"Status": "wrapup"},
        {"Status": "closed", "Routing": '{"status":"wrapping"}'},
        {"Status": "closed", "Routing": "closed"},
        {"Status": "closed", "Routing": '["closed"]'},
        {"Status": "closed", "Reason": "cleanup"},
    ],
)
def test_invalid_channel_updates_are_rejected(world: World, form: dict[str, str]) -> None:
    refs = world.interaction()
    assert error(world.session.post(world.channel_url(refs), data=form)) == (400, 20001)
    assert world.emu.interaction_channel(refs.interaction_sid, refs.channel_sid).status == "active"
    assert world.emu.flex_writes == []


# ---------------------------------------------------------------- participants


def test_closing_the_agent_participant_completes_the_task_and_keeps_the_channel(
    world: World,
) -> None:
    refs = world.interaction()
    api = world.channel_api(refs).participants(refs.agent_participant_sid)
    participant = api.update(status="closed")
    assert participant.routing_properties["task_sid"] == refs.task_sid
    task = world.emu.task(refs.task_sid)
    assert (task.status, task.reason, task.history[-1].by) == (
        "completed",
        "Participant closed",
        "platform",
    )
    assert world.channel_api(refs).fetch().status == "active"
    (write,) = world.emu.flex_writes
    assert write.route == "update_interaction_participant"
    assert write.participant_sid == refs.agent_participant_sid
    assert (write.before_channel_status, write.after_channel_status) == ("active", "active")
    assert [(c.before, c.after) for c in write.task_changes] == [("assigned", "completed")]
    with pytest.raises(TwilioRestException) as exc:
        api.update(status="closed")
    assert (exc.value.status, exc.value.code) == (400, 20001)


def test_the_agent_of_a_closed_channel_can_still_be_closed(world: World) -> None:
    refs = world.interaction(channel_status="closed")
    resp = world.session.post(world.participant_url(refs), data={"Status": "closed"})
    assert resp.status_code == 200, resp.text
    assert world.emu.task(refs.task_sid).status == "completed"


def test_wrapup_moves_the_task_to_wrapping(world: World) -> None:
    refs = world.interaction()
    resp = world.session.post(world.participant_url(refs), data={"Status": "wrapup"})
    assert resp.status_code == 200, resp.text
    assert world.emu.task(refs.task_sid).status == "wrapping"
    resp = world.session.post(world.participant_url(refs), data={"Status": "closed"})
    assert resp.status_code == 200
    assert world.emu.task(refs.task_sid).status == "completed"
    assert [len(w.task_changes) for w in world.emu.flex_writes] == [1, 1]


@pytest.mark.parametrize("form", [{}, {"Status": "wrap"}, {"Status": "joined"}, {"X": "1"}])
def test_invalid_participant_updates_are_rejected(world: World, form: dict[str, str]) -> None:
    refs = world.interaction()
    assert error(world.session.post(world.participant_url(refs), data=form)) == (400, 20001)
    assert world.emu.task(refs.task_sid).status == "assigned"


def test_closing_the_customer_changes_no_task(world: World) -> None:
    refs = world.interaction()
    participants = world.channel_api(refs).participants.list()
    customer = next(p for p in participants if p.type == "customer")
    assert customer.routing_properties is None
    resp = world.session.post(world.participant_url(refs, customer.sid), data={"Status": "closed"})
    assert resp.status_code == 200
    assert world.emu.task(refs.task_sid).status == "assigned"
    assert world.emu.flex_writes[0].task_changes == ()


def test_participants_stream_through_the_twilio_client(world: World) -> None:
    refs = world.interaction()
    streamed = list(world.channel_api(refs).participants.stream(page_size=1))
    assert [p.type for p in streamed] == ["customer", "agent"]
    assert streamed[1].sid == refs.agent_participant_sid


# ---------------------------------------------------------------- not found, auth, accounts


def test_unknown_or_mismatched_interaction_resources_are_404(world: World) -> None:
    refs = world.interaction()
    other = world.interaction()
    kd, uo = refs.interaction_sid, refs.channel_sid
    for url in (
        f"{FLEX}/v1/Interactions/{other.interaction_sid}/Channels/{uo}",
        f"{FLEX}/v1/Interactions/{kd}/Channels/UO{'0' * 32}",
        f"{FLEX}/v1/Interactions/{kd}/Channels/{uo}/Participants/{other.agent_participant_sid}",
        f"{CONVERSATIONS}/v1/Conversations/CH{'0' * 32}",
        world.conferences_url(f"CF{'0' * 32}"),
    ):
        method = world.session.post if "Participants/" in url else world.session.get
        resp = method(url, data={"Status": "closed"})
        assert error(resp) == (404, 20404), url
    assert world.emu.flex_writes == []


def test_other_accounts_see_none_of_it(world: World) -> None:
    refs = world.interaction()
    cf = world.emu.add_conference(world.account_sid, friendly_name="room")
    intruder = world.emu.add_account("Intruder")
    s = EmulatorSession(world.emu.base_url, (intruder.sid, intruder.auth_token))
    assert error(s.get(world.channel_url(refs))) == (404, 20404)
    assert error(s.post(world.channel_url(refs), data={"Status": "closed"})) == (404, 20404)
    assert error(s.get(f"{world.channel_url(refs)}/Participants")) == (404, 20404)
    assert error(s.get(f"{CONVERSATIONS}/v1/Conversations/{refs.conversation_sid}")) == (404, 20404)
    # Another account's v2010 path: 401/20003 (error 20003 page), not 404.
    assert error(s.get(world.conferences_url(cf))) == (401, 20003)
    own = f"{API}/2010-04-01/Accounts/{intruder.sid}/Conferences.json"
    assert s.get(own).json()["conferences"] == []
    assert world.emu.interaction_channel(refs.interaction_sid, refs.channel_sid).status == "active"


def test_new_routes_need_credentials(world: World) -> None:
    refs = world.interaction()
    cf = world.emu.add_conference(world.account_sid, friendly_name="room")
    for method, url in (
        ("GET", world.channel_url(refs)),
        ("POST", world.channel_url(refs)),
        ("GET", f"{world.channel_url(refs)}/Participants"),
        ("POST", world.participant_url(refs)),
        ("GET", f"{CONVERSATIONS}/v1/Conversations/{refs.conversation_sid}"),
        ("GET", world.conferences_url(cf)),
        ("GET", world.conferences_url()),
    ):
        for auth in (None, (world.account_sid, "wrong")):
            s = EmulatorSession(world.emu.base_url, auth)
            resp = s.request(method, url, data={"Status": "closed"})
            assert error(resp) == (401, 20003), (method, url)
    assert world.emu.task(refs.task_sid).status == "assigned"
    assert world.emu.flex_writes == []


def test_api_keys_work_on_the_new_routes(world: World) -> None:
    key = world.emu.add_api_key(world.account_sid)
    refs = world.interaction()
    resp = EmulatorSession(world.emu.base_url, (key.sid, key.secret)).get(world.channel_url(refs))
    assert resp.status_code == 200


# ---------------------------------------------------------------- conferences


def test_conferences_are_listed_by_friendly_name_and_status(world: World) -> None:
    acct = world.account_sid
    ended = world.emu.add_conference(
        acct, friendly_name="WTone", status="completed", ended_ago=timedelta(minutes=20)
    )
    live = world.emu.add_conference(acct, friendly_name="WTone")
    other = world.emu.add_conference(acct, friendly_name="WTtwo", status="init")
    conferences = world.client.conferences
    # Without Status: in-progress conferences only (Twilio's change of 2026-09-30).
    assert [c.sid for c in conferences.list(friendly_name="WTone")] == [live]
    assert [c.sid for c in conferences.list(friendly_name="WTone", status="completed")] == [ended]
    assert [c.sid for c in conferences.list(status="init")] == [other]
    assert conferences.list(friendly_name="nobody") == []
    assert [c.sid for c in conferences.stream(page_size=1)] == [live]
    streamed = {
        c.sid
        for s in ("init", "in-progress", "completed")
        for c in conferences.stream(status=s, page_size=1)
    }
    assert streamed == {ended, live, other}
    assert world.emu.conference(ended).status == "completed"


@pytest.mark.parametrize(
    "params", [{"Status": "ended"}, {"DateCreated": "2026-11-28"}, {"DateUpdated>": "2026-11-28"}]
)
def test_unsupported_conference_filters_are_rejected(world: World, params: dict[str, str]) -> None:
    assert error(world.session.get(world.conferences_url(), params=params)) == (400, 20001)


def test_conference_list_under_another_account_path_is_401(world: World) -> None:
    other = world.emu.add_account("Other")
    url = f"{API}/2010-04-01/Accounts/{other.sid}/Conferences.json"
    assert error(world.session.get(url)) == (401, 20003)


def test_a_completed_conference_is_dated_by_its_end(world: World) -> None:
    cf = world.emu.add_conference(
        world.account_sid,
        friendly_name="room",
        status="completed",
        ended_ago=timedelta(minutes=20),
        participants={"customer": "CA" + "1" * 32, "worker": "CA" + "2" * 32},
    )
    view = world.emu.conference(cf)
    now = datetime.now(timezone.utc)
    assert timedelta(minutes=19) < now - view.date_updated <= timedelta(minutes=20, seconds=1)
    assert view.call_sid_ending_conference == "CA" + "2" * 32
    assert view.participants == {"customer": "CA" + "1" * 32, "worker": "CA" + "2" * 32}


def test_end_conference_is_a_platform_event(world: World) -> None:
    cf = world.emu.add_conference(world.account_sid, friendly_name="room")
    assert world.client.conferences(cf).fetch().status == "in-progress"
    world.emu.end_conference(cf)
    fetched = world.client.conferences(cf).fetch()
    assert (fetched.status, fetched.reason_conference_ended) == (
        "completed",
        "last-participant-left",
    )
    assert world.emu.platform_events[-1].kind == "conference_end"
    with pytest.raises(ValueError, match="already completed"):
        world.emu.end_conference(cf)


# ---------------------------------------------------------------- conversations


def test_conversations_are_fetched_and_closed(world: World) -> None:
    ch = world.emu.add_conversation(world.account_sid)
    conversations = world.client.conversations.v1.conversations
    assert conversations(ch).fetch().state == "active"
    world.emu.close_conversation(ch)
    assert conversations(ch).fetch().state == "closed"
    assert world.emu.conversation(ch).state == "closed"
    with pytest.raises(ValueError, match="already closed"):
        world.emu.close_conversation(ch)
    old = world.emu.add_conversation(world.account_sid, "closed", closed_ago=timedelta(hours=2))
    assert datetime.now(timezone.utc) - world.emu.conversation(old).date_updated >= timedelta(
        hours=2
    )


# ---------------------------------------------------------------- World API, records


def test_add_interaction_links_a_task_and_merges_attributes(world: World) -> None:
    refs = world.interaction(
        channel_type="sms",
        task={"status": "assigned", "attributes": {"customerName": "Ann"}},
    )
    task = world.emu.task(refs.task_sid)
    assert task.channel == "sms"
    assert json.loads(task.attributes) == {
        "flexInteractionSid": refs.interaction_sid,
        "flexInteractionChannelSid": refs.channel_sid,
        "conversationSid": refs.conversation_sid,
        "channelType": "sms",
        "customerName": "Ann",
    }
    existing = world.emu.add_task(world.ws, "assigned", "chat")
    linked = world.interaction(task=existing, agent_status="wrapup")
    assert linked.task_sid == existing
    view = world.emu.interaction_channel(linked.interaction_sid, linked.channel_sid)
    assert view.task_sids == (existing,)
    assert [(p.type, p.status, p.task_sid) for p in view.participants] == [
        ("customer", "joined", None),
        ("agent", "wrapup", existing),
    ]
    world.emu.set_channel_status(linked.interaction_sid, linked.channel_sid, "pause")
    assert world.channel_api(linked).fetch().status == "pause"
    with pytest.raises(ValueError, match="unknown channel status"):
        world.interaction(channel_status="open")
    with pytest.raises(KeyError):
        world.emu.interaction_channel(refs.interaction_sid, linked.channel_sid)


def test_platform_close_channel_wraps_the_task(world: World) -> None:
    refs = world.interaction()
    world.emu.platform_close_channel(refs.interaction_sid, refs.channel_sid)
    assert world.channel_api(refs).fetch().status == "closed"
    assert world.emu.task(refs.task_sid).status == "wrapping"
    event = world.emu.platform_events[-1]
    assert (event.kind, event.task_sid) == ("channel_close", refs.task_sid)
    assert world.emu.flex_writes == []
    with pytest.raises(ValueError, match="is closed"):
        world.emu.platform_close_channel(refs.interaction_sid, refs.channel_sid)


def test_task_api_writes_say_whether_the_task_is_a_conversation_task(world: World) -> None:
    refs = world.interaction()
    voice = world.emu.add_task(world.ws, "assigned", attributes={"call_sid": "CA" + "0" * 32})
    chat_only = world.emu.add_task(world.ws, "assigned", "chat", {"conversationSid": "CH1"})
    legacy = world.emu.add_task(world.ws, "assigned", "chat", {"channelSid": "CH" + "1" * 32})
    for sid in (refs.task_sid, voice, chat_only, legacy):
        world.client.taskrouter.v1.workspaces(world.ws).tasks(sid).update(
            assignment_status="completed", reason="cleanup"
        )
    assert [(m.task_sid, m.is_conversation_task) for m in world.emu.mutations] == [
        (refs.task_sid, True),
        (voice, False),
        (chat_only, True),
        (legacy, False),
    ]
    assert world.emu.flex_writes == []
    state = requests.get(f"{world.emu.base_url}/__emulator/state", timeout=10).json()
    assert [m["is_conversation_task"] for m in state["mutations"]] == [True, False, True, False]
    assert {"conferences", "interaction_channels", "conversations", "flex_writes"} <= set(state)


def test_the_request_log_and_stats_cover_the_new_routes(world: World) -> None:
    refs = world.interaction()
    world.channel_api(refs).fetch()
    world.channel_api(refs).participants.list()
    world.channel_api(refs).participants(refs.agent_participant_sid).update(status="closed")
    world.channel_api(refs).update(status="closed")
    world.client.conversations.v1.conversations(refs.conversation_sid).fetch()
    world.client.conferences.list()
    paths = [(r.method, r.path.split("/")[2], r.status) for r in world.emu.request_log]
    assert paths == [
        ("GET", "Interactions", 200),
        ("GET", "Interactions", 200),
        ("POST", "Interactions", 200),
        ("POST", "Interactions", 200),
        ("GET", "Conversations", 200),
        ("GET", "Accounts", 200),
    ]
    assert world.emu.request_log[2].form == {"Status": "closed"}
    stats = world.emu.stats()
    assert stats["fetch_interaction_channel"] == 1
    assert stats["update_interaction_channel"] == 1
    assert stats["update_interaction_participant"] == 1
    assert stats["list_interaction_participants"] == 1
    assert stats["fetch_conversation"] == 1
    assert stats["list_conferences"] == 1
    assert stats["requests"] == 6


# ---------------------------------------------------------------- faults


def test_error_faults_apply_to_the_new_routes(world: World) -> None:
    refs = world.interaction()
    world.emu.set_faults(Faults(error_rate=1.0))
    for url in (world.channel_url(refs), world.conferences_url()):
        assert world.session.get(url).status_code in (500, 503)
    resp = world.session.post(world.channel_url(refs), data={"Status": "closed"})
    assert resp.status_code in (500, 503)
    assert world.emu.flex_writes == []
    assert world.emu.task(refs.task_sid).status == "assigned"


def test_a_dropped_channel_close_still_applies(world: World) -> None:
    refs = world.interaction()
    world.emu.set_faults(Faults(drop_after_write_rate=1.0))
    with pytest.raises(requests.ConnectionError):
        world.session.post(
            world.channel_url(refs), data={"Status": "closed", "Routing": '{"status":"closed"}'}
        )
    assert world.emu.task(refs.task_sid).status == "completed"
    assert len(world.emu.flex_writes) == 1
    assert world.emu.request_log[-1].fault == "drop_after_write"


def test_rate_limits_apply_to_the_new_routes(world: World) -> None:
    refs = world.interaction()
    world.emu.set_faults(Faults(rps_limit=1.0, retry_after=2))
    statuses = [world.session.get(world.channel_url(refs)).status_code for _ in range(3)]
    assert statuses[0] == 200
    assert 429 in statuses
    limited = next(r for r in world.emu.request_log if r.status == 429)
    assert (limited.code, limited.fault) == (20429, "rps")


@pytest.mark.parametrize("kind", ["channel_close", "conference_end"])
def test_opt_in_platform_events(world: World, kind: str) -> None:
    refs = world.interaction()
    cf = world.emu.add_conference(world.account_sid, friendly_name="room")
    world.emu.set_faults(Faults(platform_event_rate=1.0, platform_event_kinds=(kind,)))
    world.session.get(f"{TASKROUTER}/v1/Workspaces/{world.ws}")
    assert [e.kind for e in world.emu.platform_events] == [kind]
    if kind == "channel_close":
        assert world.emu.interaction_channel(refs.interaction_sid, refs.channel_sid).status == (
            "closed"
        )
    else:
        assert world.emu.conference(cf).status == "completed"
    assert "channel_close" not in Faults().platform_event_kinds
    with pytest.raises(ValueError, match="unknown platform event kinds"):
        Faults(platform_event_kinds=("meteor",))


# ---------------------------------------------------------------- closing a closed channel


def stranded(world: World) -> InteractionRefs:
    """A reserved messaging task on a closed channel with no agent participant."""
    return world.interaction(
        channel_status="closed", agent_status=None, task={"status": "reserved"}
    )


def test_a_reserved_task_can_be_stranded_on_a_closed_channel(world: World) -> None:
    refs = stranded(world)
    assert refs.agent_participant_sid is None
    view = world.emu.interaction_channel(refs.interaction_sid, refs.channel_sid)
    assert view.status == "closed"
    assert [(p.type, p.status) for p in view.participants] == [("customer", "closed")]
    task = world.emu.task(refs.task_sid)
    assert (task.status, task.channel) == ("reserved", "chat")
    assert json.loads(task.attributes)["flexInteractionChannelSid"] == refs.channel_sid
    assert world.emu.conversation(refs.conversation_sid).state == "closed"  # type: ignore[arg-type]


def test_closing_a_closed_channel_is_refused_by_default(world: World) -> None:
    refs = stranded(world)
    assert world.emu.faults.closed_channel_close == "refuse"
    form = {"Status": "closed", "Routing": '{"status":"closed"}'}
    assert error(world.session.post(world.channel_url(refs), data=form)) == (400, 80906)
    assert world.emu.task(refs.task_sid).status == "reserved"
    assert world.emu.flex_writes == []


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("pending", "canceled"),
        ("reserved", "canceled"),
        ("assigned", "completed"),
        ("wrapping", "completed"),
    ],
)
def test_accept_closes_the_open_tasks_of_a_closed_channel(
    world: World, before: str, after: str
) -> None:
    world.emu.set_faults(Faults(closed_channel_close="accept"))
    refs = world.interaction(channel_status="closed", agent_status=None, task={"status": before})
    form = {"Status": "closed", "Routing": '{"status":"closed"}'}
    resp = world.session.post(world.channel_url(refs), data=form)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "closed"
    task = world.emu.task(refs.task_sid)
    assert (task.status, task.reason, task.history[-1].by) == (
        after,
        "Interaction channel closed",
        "platform",
    )
    (write,) = world.emu.flex_writes
    assert (write.route, write.before_channel_status, write.after_channel_status) == (
        "update_interaction_channel",
        "closed",
        "closed",
    )
    assert [(c.task_sid, c.before, c.after) for c in write.task_changes] == [
        (refs.task_sid, before, after)
    ]
    assert world.emu.mutations == []
    # Nothing is left open now: the next close is 80906 again.
    assert error(world.session.post(world.channel_url(refs), data=form)) == (400, 80906)


@pytest.mark.parametrize(
    "form",
    [{"Status": "closed"}, {"Status": "inactive", "Routing": '{"status":"closed"}'}],
)
def test_accept_still_needs_status_closed_with_routing_closed(
    world: World, form: dict[str, str]
) -> None:
    world.emu.set_faults(Faults(closed_channel_close="accept"))
    refs = stranded(world)
    assert error(world.session.post(world.channel_url(refs), data=form)) == (400, 80906)
    assert world.emu.task(refs.task_sid).status == "reserved"


def test_accept_refuses_failed_channels_and_closed_ones_with_nothing_open(world: World) -> None:
    world.emu.set_faults(Faults(closed_channel_close="accept"))
    form = {"Status": "closed", "Routing": '{"status":"closed"}'}
    failed = world.interaction(
        channel_status="failed", agent_status=None, task={"status": "reserved"}
    )
    done = world.interaction(channel_status="closed", task={"status": "completed"})
    for refs in (failed, done):
        assert error(world.session.post(world.channel_url(refs), data=form)) == (400, 80906)
    assert world.emu.flex_writes == []
