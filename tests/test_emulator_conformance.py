"""Field-by-field conformance of emulator responses with Twilio's official OpenAPI definitions."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest

from emulator_client import API, CONVERSATIONS, FLEX, TASKROUTER, EmulatorSession
from stuck_tasks.emulator import Emulator, Faults

SPECS = Path(__file__).parent / "reference" / "twilio-oai"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
RFC2822 = re.compile(r"^[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d \+0000$")


def load_spec(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads((SPECS / name).read_text())
    return spec


TASKS_SPEC = load_spec("twilio_taskrouter_v1.tasks.json")
CALLS_SPEC = load_spec("twilio_api_v2010.calls.json")
CONFERENCES_SPEC = load_spec("twilio_api_v2010.conferences.json")
FLEX_SPEC = load_spec("twilio_flex_v1.interactions.json")
CONVERSATIONS_SPEC = load_spec("twilio_conversations_v1.conversations.json")
QUEUES_SPEC = load_spec("twilio_taskrouter_v1.task_queues.json")
WORKFLOWS_SPEC = load_spec("twilio_taskrouter_v1.workflows.json")
QUEUES_PATH = "/v1/Workspaces/{WorkspaceSid}/TaskQueues"
WORKFLOWS_PATH = "/v1/Workspaces/{WorkspaceSid}/Workflows"


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    node: Any = spec
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return resolve(spec, node)


def violations(
    spec: dict[str, Any],
    schema: dict[str, Any],
    value: Any,
    where: str,
    *,
    relative_uris: bool = False,
) -> Iterator[str]:
    """``relative_uris``: v2010 list URIs are "relative to https://api.twilio.com"."""
    schema = resolve(spec, schema)
    if value is None:
        if not schema.get("nullable", False):
            yield f"{where}: null but not nullable"
        return
    kind = schema.get("type")
    checks = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
    }
    if kind is not None and not checks[kind](value):
        yield f"{where}: {value!r} is not {kind}"
        return
    if "enum" in schema and value not in schema["enum"]:
        yield f"{where}: {value!r} not in {schema['enum']}"
    if "pattern" in schema and not re.match(schema["pattern"], value):
        yield f"{where}: {value!r} does not match {schema['pattern']}"
    fmt = schema.get("format")
    if fmt == "date-time" and not ISO.match(value):
        yield f"{where}: {value!r} is not ISO 8601 like 2026-11-28T20:15:44Z"
    if fmt == "date-time-rfc-2822":
        if not RFC2822.match(value):
            yield f"{where}: {value!r} is not RFC 2822"
        else:
            parsedate_to_datetime(value)
    if fmt == "uri" and relative_uris:
        if not value.startswith("/2010-04-01/"):
            yield f"{where}: {value!r} is not a URI relative to the API host"
    elif fmt == "uri" and not value.startswith("https://"):
        yield f"{where}: {value!r} is not an absolute https URL"
    if kind == "object" and "properties" in schema:
        props = schema["properties"]
        for name, sub in props.items():
            if name not in value:
                yield f"{where}.{name}: missing"
            else:
                yield from violations(
                    spec, sub, value[name], f"{where}.{name}", relative_uris=relative_uris
                )
        for name in set(value) - set(props):
            yield f"{where}.{name}: not in the schema"
    if kind == "array" and "items" in schema:
        for i, item in enumerate(value):
            yield from violations(
                spec, schema["items"], item, f"{where}[{i}]", relative_uris=relative_uris
            )


def response_schema(spec: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    op = spec["paths"][path][method]
    schema: dict[str, Any] = op["responses"]["200"]["content"]["application/json"]["schema"]
    return schema


@pytest.fixture
def world() -> Iterator[tuple[Emulator, EmulatorSession, str, str, str]]:
    with Emulator() as emu:
        acct = emu.add_account("Acme")
        ws = emu.add_workspace(acct.sid, "Support")
        call = emu.add_call(acct.sid, "completed", ended_ago=timedelta(minutes=12))
        task = emu.add_task(ws.sid, "assigned", attributes={"call_sid": call})
        emu.add_task(ws.sid, "pending", "chat", age=timedelta(minutes=5))
        session = EmulatorSession(emu.base_url, (acct.sid, acct.auth_token))
        yield emu, session, ws.sid, task, call


def test_fetched_task_matches_the_task_schema(world: Any) -> None:
    _, session, ws, task, _ = world
    resp = session.get(f"{TASKROUTER}/v1/Workspaces/{ws}/Tasks/{task}")
    assert resp.status_code == 200
    body = resp.json()
    schema = response_schema(TASKS_SPEC, "/v1/Workspaces/{WorkspaceSid}/Tasks/{Sid}", "get")
    assert list(violations(TASKS_SPEC, schema, body, "task")) == []
    assert body["attributes"] is not None
    assert body["url"] == f"{TASKROUTER}/v1/Workspaces/{ws}/Tasks/{task}"
    assert set(body["links"]) == {"task_queue", "workflow", "workspace", "reservations"}
    assert body["addons"] == "{}"
    assert body["timeout"] == 86400
    assert body["age"] >= 30 * 60


def test_updated_task_matches_the_task_schema(world: Any) -> None:
    _, session, ws, task, _ = world
    url = f"{TASKROUTER}/v1/Workspaces/{ws}/Tasks/{task}"
    resp = session.post(url, data={"AssignmentStatus": "completed", "Reason": "call ended"})
    assert resp.status_code == 200, resp.text
    schema = response_schema(TASKS_SPEC, "/v1/Workspaces/{WorkspaceSid}/Tasks/{Sid}", "post")
    assert list(violations(TASKS_SPEC, schema, resp.json(), "task")) == []


def test_task_list_page_matches_the_list_schema(world: Any) -> None:
    _, session, ws, _, _ = world
    resp = session.get(f"{TASKROUTER}/v1/Workspaces/{ws}/Tasks", params={"PageSize": 1})
    assert resp.status_code == 200
    body = resp.json()
    schema = response_schema(TASKS_SPEC, "/v1/Workspaces/{WorkspaceSid}/Tasks", "get")
    assert list(violations(TASKS_SPEC, schema, body, "page")) == []
    assert set(body) == {"tasks", "meta"}
    assert set(body["meta"]) == set(schema["properties"]["meta"]["properties"])
    assert body["meta"]["key"] == "tasks"
    assert body["meta"]["next_page_url"].startswith(f"{TASKROUTER}/v1/Workspaces/{ws}/Tasks?")
    assert body["meta"]["previous_page_url"] is None
    # The schema prose: attributes are only displayed by a FETCH of a single task.
    assert [t["attributes"] for t in body["tasks"]] == [None]


@pytest.mark.parametrize(
    ("spec", "path", "key", "collection"),
    [
        (QUEUES_SPEC, QUEUES_PATH, "task_queues", "TaskQueues"),
        (WORKFLOWS_SPEC, WORKFLOWS_PATH, "workflows", "Workflows"),
    ],
)
def test_queue_and_workflow_list_pages_match_their_list_schemas(
    world: Any, spec: dict[str, Any], path: str, key: str, collection: str
) -> None:
    emu, session, ws, _, _ = world
    emu.add_task_queue(ws, "Support")  # the fixture's tasks named Sales/Default
    emu.add_workflow(ws, "Overflow")
    url = f"{TASKROUTER}/v1/Workspaces/{ws}/{collection}"
    resp = session.get(url, params={"PageSize": 1})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    schema = response_schema(spec, path, "get")
    assert list(violations(spec, schema, body, "page")) == []
    assert set(body) == {key, "meta"}
    assert set(body["meta"]) == set(schema["properties"]["meta"]["properties"])
    assert body["meta"]["key"] == key
    assert body["meta"]["next_page_url"].startswith(f"{url}?")
    (item,) = body[key]
    assert set(item) == set(resolve(spec, schema["properties"][key]["items"])["properties"])
    assert item["url"] == f"{url}/{item['sid']}"
    assert item["workspace_sid"] == ws
    assert all(
        link.startswith(f"{TASKROUTER}/v1/Workspaces/{ws}") for link in item["links"].values()
    )
    second = session.get(body["meta"]["next_page_url"]).json()
    assert list(violations(spec, schema, second, "page")) == []
    assert second["meta"]["next_page_url"] is None
    assert second["meta"]["previous_page_url"].startswith(f"{url}?")


def test_a_workflow_configuration_is_a_json_string_routing_to_its_queue(world: Any) -> None:
    emu, session, ws, _, _ = world
    body = session.get(f"{TASKROUTER}/v1/Workspaces/{ws}/Workflows").json()
    (flow,) = body["workflows"]
    (queue,) = emu.task_queues(ws)
    assert (flow["friendly_name"], queue.friendly_name) == ("Default", "Sales")
    config = json.loads(flow["configuration"])
    assert config == {"task_routing": {"filters": [], "default_filter": {"queue": queue.sid}}}


def test_fetched_call_matches_the_call_schema(world: Any) -> None:
    _, session, _, _, call = world
    acct = session.auth[0]
    resp = session.get(f"{API}/2010-04-01/Accounts/{acct}/Calls/{call}.json")
    assert resp.status_code == 200
    body = resp.json()
    path = "/2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json"
    schema = response_schema(CALLS_SPEC, path, "get")
    assert list(violations(CALLS_SPEC, schema, body, "call")) == []
    assert isinstance(body["duration"], str)
    assert body["uri"] == f"/2010-04-01/Accounts/{acct}/Calls/{call}.json"


@pytest.mark.parametrize("status", ["busy", "failed", "no-answer", "canceled"])
def test_unsuccessful_calls_have_no_end_time_or_duration(world: Any, status: str) -> None:
    emu, session, _, _, _ = world
    acct = session.auth[0]
    call = emu.add_call(acct, status, ended_ago=timedelta(minutes=20))
    body = session.get(f"{API}/2010-04-01/Accounts/{acct}/Calls/{call}.json").json()
    path = "/2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json"
    assert list(violations(CALLS_SPEC, response_schema(CALLS_SPEC, path, "get"), body, "c")) == []
    assert body["status"] == status
    assert body["end_time"] is None
    assert body["duration"] is None
    assert body["date_updated"] is not None


@pytest.mark.parametrize("status", ["queued", "ringing", "in-progress"])
def test_live_calls_have_no_end_time(world: Any, status: str) -> None:
    emu, session, _, _, _ = world
    acct = session.auth[0]
    call = emu.add_call(acct, status)
    body = session.get(f"{API}/2010-04-01/Accounts/{acct}/Calls/{call}.json").json()
    assert (body["status"], body["end_time"], body["duration"]) == (status, None, None)


def test_workspace_and_account_fields(world: Any) -> None:
    _, session, ws, _, _ = world
    acct = session.auth[0]
    body = session.get(f"{TASKROUTER}/v1/Workspaces/{ws}").json()
    assert set(body) == {
        "account_sid",
        "date_created",
        "date_updated",
        "default_activity_name",
        "default_activity_sid",
        "event_callback_url",
        "events_filter",
        "friendly_name",
        "multi_task_enabled",
        "prioritize_queue_order",
        "sid",
        "timeout_activity_name",
        "timeout_activity_sid",
        "url",
        "links",
    }
    assert ISO.match(body["date_created"])
    account = session.get(f"{API}/2010-04-01/Accounts/{acct}.json").json()
    assert account["sid"] == acct
    assert account["status"] == "active"
    assert account["type"] == "Full"
    assert RFC2822.match(account["date_created"])
    # twilio-oai api.v2010.account: the body carries the auth token, as Twilio's does.
    assert set(account) == {
        "auth_token",
        "date_created",
        "date_updated",
        "friendly_name",
        "owner_account_sid",
        "sid",
        "status",
        "subresource_uris",
        "type",
        "uri",
    }
    assert account["auth_token"] == session.auth[1]


def test_error_bodies_follow_twilio_format(world: Any) -> None:
    _, session, ws, _, _ = world
    resp = session.get(f"{TASKROUTER}/v1/Workspaces/{ws}/Tasks/WT{'0' * 32}")
    assert resp.status_code == 404
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.json() == {
        "code": 20404,
        "message": "The requested resource was not found",
        "more_info": "https://www.twilio.com/docs/errors/20404",
        "status": 404,
    }
    assert session.get(f"{TASKROUTER}/v1/Nope").json()["code"] == 20404


def test_every_response_carries_the_concurrency_headers(world: Any) -> None:
    emu, session, ws, _, _ = world
    for resp in (
        session.get(f"{TASKROUTER}/v1/Workspaces/{ws}/Tasks"),
        session.get(f"{TASKROUTER}/v1/Workspaces/WS{'0' * 32}"),
        EmulatorSession(emu.base_url, ("ACx", "nope")).get(f"{TASKROUTER}/v1/Workspaces"),
    ):
        assert int(resp.headers["Twilio-Concurrent-Requests"]) >= 0
        assert float(resp.headers["Twilio-Request-Duration"]) >= 0


# ---------------------------------------------------------------- conferences, Flex, Conversations

CONFERENCE_PATH = "/2010-04-01/Accounts/{AccountSid}/Conferences/{Sid}.json"
CONFERENCES_PATH = "/2010-04-01/Accounts/{AccountSid}/Conferences.json"
CHANNEL_PATH = "/v1/Interactions/{InteractionSid}/Channels/{Sid}"
PARTICIPANTS_PATH = "/v1/Interactions/{InteractionSid}/Channels/{ChannelSid}/Participants"
PARTICIPANT_PATH = PARTICIPANTS_PATH + "/{Sid}"


def conference_violations(body: dict[str, Any], where: str) -> list[str]:
    schema = response_schema(CONFERENCES_SPEC, CONFERENCE_PATH, "get")
    found = list(violations(CONFERENCES_SPEC, schema, body, where, relative_uris=True))
    # The schema says reason_conference_ended "When a conference is in progress, will be null",
    # but it is a bare $ref to an enum (OpenAPI 3.0 ignores "nullable" next to $ref).
    if body.get("status") != "completed":
        found.remove(f"{where}.reason_conference_ended: null but not nullable")
    return found


@pytest.mark.parametrize("status", ["init", "in-progress", "completed"])
def test_fetched_conference_matches_the_conference_schema(world: Any, status: str) -> None:
    emu, session, _, _, call = world
    acct = session.auth[0]
    ended = timedelta(minutes=20) if status == "completed" else None
    cf = emu.add_conference(
        acct, friendly_name="WTroom", status=status, ended_ago=ended, participants={"worker": call}
    )
    resp = session.get(f"{API}/2010-04-01/Accounts/{acct}/Conferences/{cf}.json")
    assert resp.status_code == 200
    body = resp.json()
    assert conference_violations(body, "conference") == []
    assert body["status"] == status
    assert body["uri"] == f"/2010-04-01/Accounts/{acct}/Conferences/{cf}.json"
    assert set(body["subresource_uris"]) == {"participants", "recordings"}
    if status == "completed":
        assert body["reason_conference_ended"] is not None
        assert body["call_sid_ending_conference"] == call
        assert parsedate_to_datetime(body["date_updated"]) == emu.conference(
            cf
        ).date_updated.replace(microsecond=0)
    else:
        assert (body["reason_conference_ended"], body["call_sid_ending_conference"]) == (None, None)


def test_conference_list_page_matches_the_list_schema(world: Any) -> None:
    emu, session, _, _, _ = world
    acct = session.auth[0]
    for i in range(3):
        emu.add_conference(acct, friendly_name=f"room{i}")
    resp = session.get(f"{API}/2010-04-01/Accounts/{acct}/Conferences.json", params={"PageSize": 2})
    assert resp.status_code == 200
    body = resp.json()
    schema = response_schema(CONFERENCES_SPEC, CONFERENCES_PATH, "get")
    page_only = {**schema, "properties": dict(schema["properties"])}
    del page_only["properties"]["conferences"]
    page = {k: v for k, v in body.items() if k != "conferences"}
    assert list(violations(CONFERENCES_SPEC, page_only, page, "page", relative_uris=True)) == []
    for i, conf in enumerate(body["conferences"]):
        assert conference_violations(conf, f"page.conferences[{i}]") == []
    assert set(body) == set(schema["properties"])
    assert (body["page"], body["page_size"], body["start"], body["end"]) == (0, 2, 0, 1)
    assert body["next_page_uri"].startswith(f"/2010-04-01/Accounts/{acct}/Conferences.json?")
    assert body["previous_page_uri"] is None
    second = session.get(API + body["next_page_uri"]).json()
    assert (second["page"], second["start"], second["end"], second["next_page_uri"]) == (
        1,
        2,
        2,
        None,
    )


@pytest.fixture
def interaction(world: Any) -> Any:
    emu, session, ws, _, _ = world
    return emu.add_interaction(session.auth[0], workspace_sid=ws)


@pytest.mark.parametrize("method", ["get", "post"])
def test_interaction_channel_matches_the_channel_schema(
    world: Any, interaction: Any, method: str
) -> None:
    _, session, _, _, _ = world
    url = f"{FLEX}/v1/Interactions/{interaction.interaction_sid}"
    url += f"/Channels/{interaction.channel_sid}"
    if method == "get":
        resp = session.get(url)
    else:
        resp = session.post(url, data={"Status": "closed", "Routing": '{"status":"closed"}'})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    schema = response_schema(FLEX_SPEC, CHANNEL_PATH, method)
    assert list(violations(FLEX_SPEC, schema, body, "channel")) == []
    assert body["url"] == url
    assert set(body["links"]) == {"participants", "invites", "transfers"}
    assert body["status"] == ("active" if method == "get" else "closed")


def test_failed_channel_carries_its_error(world: Any) -> None:
    emu, session, ws, _, _ = world
    refs = emu.add_interaction(session.auth[0], workspace_sid=ws, channel_status="failed")
    url = f"{FLEX}/v1/Interactions/{refs.interaction_sid}/Channels/{refs.channel_sid}"
    body = session.get(url).json()
    assert (
        list(violations(FLEX_SPEC, response_schema(FLEX_SPEC, CHANNEL_PATH, "get"), body, "c"))
        == []
    )
    assert (body["status"], body["error_code"]) == ("failed", 19025)


def test_participants_match_the_participant_schemas(world: Any, interaction: Any) -> None:
    _, session, _, _, _ = world
    url = f"{FLEX}/v1/Interactions/{interaction.interaction_sid}"
    url += f"/Channels/{interaction.channel_sid}/Participants"
    body = session.get(url, params={"PageSize": 1}).json()
    schema = response_schema(FLEX_SPEC, PARTICIPANTS_PATH, "get")
    assert list(violations(FLEX_SPEC, schema, body, "page")) == []
    assert set(body["meta"]) == set(schema["properties"]["meta"]["properties"])
    assert body["meta"]["key"] == "participants"
    assert [p["type"] for p in body["participants"]] == ["customer"]
    second = session.get(body["meta"]["next_page_url"]).json()
    (agent,) = second["participants"]
    assert agent["sid"] == interaction.agent_participant_sid
    assert agent["routing_properties"]["task_sid"] == interaction.task_sid
    resp = session.post(f"{url}/{agent['sid']}", data={"Status": "closed"})
    assert resp.status_code == 200, resp.text
    schema = response_schema(FLEX_SPEC, PARTICIPANT_PATH, "post")
    assert list(violations(FLEX_SPEC, schema, resp.json(), "participant")) == []
    assert resp.json()["url"] == f"{url}/{agent['sid']}"


@pytest.mark.parametrize("state", ["active", "closed"])
def test_conversation_matches_the_conversation_schema(world: Any, state: str) -> None:
    emu, session, _, _, _ = world
    ch = emu.add_conversation(session.auth[0], state, closed_ago=timedelta(minutes=3))
    resp = session.get(f"{CONVERSATIONS}/v1/Conversations/{ch}")
    assert resp.status_code == 200
    body = resp.json()
    schema = response_schema(CONVERSATIONS_SPEC, "/v1/Conversations/{Sid}", "get")
    assert list(violations(CONVERSATIONS_SPEC, schema, body, "conversation")) == []
    assert body["state"] == state
    assert body["url"] == f"{CONVERSATIONS}/v1/Conversations/{ch}"
    assert set(body["links"]) == {"participants", "messages", "webhooks", "export"}
    assert body["attributes"] == "{}"


def test_trimmed_definitions_keep_only_the_emulated_operations() -> None:
    kept = {
        name: {
            path: sorted(m for m in item if m in ("get", "post", "delete"))
            for path, item in spec["paths"].items()
        }
        for name, spec in (
            ("task_queues", QUEUES_SPEC),
            ("workflows", WORKFLOWS_SPEC),
            ("conferences", CONFERENCES_SPEC),
            ("flex", FLEX_SPEC),
            ("conversations", CONVERSATIONS_SPEC),
        )
    }
    assert kept == {
        "task_queues": {QUEUES_PATH: ["get"]},
        "workflows": {WORKFLOWS_PATH: ["get"]},
        "conferences": {CONFERENCES_PATH: ["get"], CONFERENCE_PATH: ["get"]},
        "flex": {
            CHANNEL_PATH: ["get", "post"],
            PARTICIPANTS_PATH: ["get"],
            PARTICIPANT_PATH: ["post"],
        },
        "conversations": {"/v1/Conversations/{Sid}": ["get"]},
    }
    assert set(QUEUES_SPEC["components"]["schemas"]) == {
        "taskrouter.v1.workspace.task_queue",
        "task_queue_enum_task_order",
    }
    assert set(WORKFLOWS_SPEC["components"]["schemas"]) == {"taskrouter.v1.workspace.workflow"}
    schemas = FLEX_SPEC["components"]["schemas"]
    assert schemas["interaction_channel_enum_update_channel_status"]["enum"] == [
        "closed",
        "inactive",
    ]
    assert schemas["interaction_channel_participant_enum_status"]["enum"] == ["closed", "wrapup"]


# ---------------------------------------------------------------- corrections of 2026-12-01
# One focused test per behaviour; the exhaustive ones live in test_emulator_auth.py,
# test_emulator_hosts.py, test_emulator_faults.py, test_emulator_flex.py and
# test_emulator_fuzz.py.

IMF_FIXDATE = re.compile(r"^[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT$")
ERROR_KEYS = {"code", "message", "more_info", "status"}


def twilio_error(resp: Any, status: int, code: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    body: dict[str, Any] = resp.json()
    assert set(body) == ERROR_KEYS
    assert (body["status"], body["code"]) == (status, code)
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    return body


def test_api_key_kinds(world: Any) -> None:
    emu, session, ws, _, _ = world
    account = session.auth[0]
    account_url = f"{API}/2010-04-01/Accounts/{account}.json"
    tasks_url = f"{TASKROUTER}/v1/Workspaces/{ws}/Tasks"
    main = emu.add_api_key(account, kind="main")
    standard = emu.add_api_key(account)
    restricted = emu.add_api_key(
        account, kind="restricted", permissions=["/twilio/taskrouter/workspaces/tasks/read"]
    )

    def get(key: Any, url: str) -> Any:
        return EmulatorSession(emu.base_url, (key.sid, key.secret)).get(url)

    assert get(main, account_url).status_code == 200
    assert twilio_error(get(standard, account_url), 401, 20003)["message"] == "Authenticate"
    assert get(standard, tasks_url).status_code == 200
    assert get(restricted, tasks_url).status_code == 200
    body = twilio_error(get(restricted, account_url), 403, 70051)
    assert body["message"] == "Authorization Failed"
    twilio_error(get(restricted, f"{TASKROUTER}/v1/Workspaces/{ws}"), 403, 70051)


def test_another_accounts_v2010_path_is_401(world: Any) -> None:
    emu, session, _, _, _ = world
    other = emu.add_account("Other")
    their_call = emu.add_call(other.sid)
    resp = session.get(f"{API}/2010-04-01/Accounts/{other.sid}/Calls/{their_call}.json")
    assert twilio_error(resp, 401, 20003)["message"] == "Authenticate"


def test_the_account_body_carries_the_auth_token(world: Any) -> None:
    _, session, _, _, _ = world
    acct, token = session.auth
    body = session.get(f"{API}/2010-04-01/Accounts/{acct}.json").json()
    assert body["auth_token"] == token
    assert body["uri"] == f"/2010-04-01/Accounts/{acct}.json"


def test_conference_list_without_status_is_in_progress_only(world: Any) -> None:
    emu, session, _, _, _ = world
    acct = session.auth[0]
    by_status = {
        s: emu.add_conference(
            acct,
            friendly_name="WTroom",
            status=s,
            ended_ago=timedelta(minutes=5) if s == "completed" else None,
        )
        for s in ("init", "in-progress", "completed")
    }
    url = f"{API}/2010-04-01/Accounts/{acct}/Conferences.json"
    for params, expected in (
        ({}, ["in-progress"]),
        ({"FriendlyName": "WTroom"}, ["in-progress"]),
        ({"Status": "completed"}, ["completed"]),
        ({"Status": "init"}, ["init"]),
        ({"Status": "in-progress"}, ["in-progress"]),
    ):
        body = session.get(url, params=params).json()
        assert [c["sid"] for c in body["conferences"]] == [by_status[s] for s in expected], params
        for i, conf in enumerate(body["conferences"]):
            assert conference_violations(conf, f"conferences[{i}]") == []


def test_date_header_and_timestamps_come_from_twilios_clock() -> None:
    real = datetime(2026, 12, 1, 9, 30, 15, 999_000, tzinfo=timezone.utc)
    with Emulator(Faults(clock_offset=-120.0), clock=lambda: real) as emu:
        acct = emu.add_account()
        ws = emu.add_workspace(acct.sid)
        sid = emu.add_task(ws.sid, "pending", age=timedelta(0))
        session = EmulatorSession(emu.base_url, (acct.sid, acct.auth_token))
        resp = session.get(f"{TASKROUTER}/v1/Workspaces/{ws.sid}/Tasks/{sid}")
        assert IMF_FIXDATE.match(resp.headers["Date"])
        assert resp.headers["Date"] == "Tue, 01 Dec 2026 09:28:15 GMT"
        assert resp.json()["date_created"] == "2026-12-01T09:28:15Z"
        assert resp.json()["age"] == 0


def test_answers_name_the_twilio_host_the_request_named(world: Any) -> None:
    emu, _, _, _, _ = world
    ie = emu.add_account("Dublin", region="ie1")
    ws = emu.add_workspace(ie.sid).sid
    sid = emu.add_task(ws, "assigned")
    session = EmulatorSession(emu.base_url, (ie.sid, ie.auth_token))
    host = "https://taskrouter.dublin.ie1.twilio.com"
    body = session.get(f"{host}/v1/Workspaces/{ws}/Tasks/{sid}").json()
    schema = response_schema(TASKS_SPEC, "/v1/Workspaces/{WorkspaceSid}/Tasks/{Sid}", "get")
    assert list(violations(TASKS_SPEC, schema, body, "task")) == []
    assert body["url"] == f"{host}/v1/Workspaces/{ws}/Tasks/{sid}"
    assert emu.request_log[-1].host == "taskrouter.dublin.ie1.twilio.com"
    twilio_error(session.get(f"{TASKROUTER}/v1/Workspaces/{ws}"), 401, 20003)  # wrong region
    twilio_error(session.get(f"https://api.dublin.ie1.twilio.com/v1/Workspaces/{ws}"), 404, 20404)
    twilio_error(session.get(f"https://taskrouter.ie1.twilio.com/v1/Workspaces/{ws}"), 404, 20404)
    twilio_error(session.get(f"{emu.base_url}/v1/Workspaces/{ws}"), 404, 20404)


def test_list_pages_with_attributes_match_the_list_schema(world: Any) -> None:
    emu, session, ws, task, _ = world
    emu.set_faults(Faults(list_attributes=True))
    body = session.get(f"{TASKROUTER}/v1/Workspaces/{ws}/Tasks").json()
    schema = response_schema(TASKS_SPEC, "/v1/Workspaces/{WorkspaceSid}/Tasks", "get")
    assert list(violations(TASKS_SPEC, schema, body, "page")) == []
    assert {t["sid"]: t["attributes"] for t in body["tasks"]}[task] == emu.task(task).attributes


def test_an_accepted_close_of_a_closed_channel_matches_the_channel_schema(world: Any) -> None:
    emu, session, ws, _, _ = world
    emu.set_faults(Faults(closed_channel_close="accept"))
    refs = emu.add_interaction(
        session.auth[0],
        workspace_sid=ws,
        channel_status="closed",
        agent_status=None,
        task={"status": "reserved"},
    )
    url = f"{FLEX}/v1/Interactions/{refs.interaction_sid}/Channels/{refs.channel_sid}"
    resp = session.post(url, data={"Status": "closed", "Routing": '{"status":"closed"}'})
    assert resp.status_code == 200, resp.text
    schema = response_schema(FLEX_SPEC, CHANNEL_PATH, "post")
    assert list(violations(FLEX_SPEC, schema, resp.json(), "channel")) == []
    assert emu.task(refs.task_sid).status == "canceled"
    emu.set_faults(Faults())
    again = emu.add_interaction(session.auth[0], workspace_sid=ws, channel_status="closed")
    url = f"{FLEX}/v1/Interactions/{again.interaction_sid}/Channels/{again.channel_sid}"
    resp = session.post(url, data={"Status": "closed", "Routing": '{"status":"closed"}'})
    assert twilio_error(resp, 400, 80906)["message"].startswith("Interaction Not Open")


def test_revocation_and_broken_answers_after_a_write(world: Any) -> None:
    emu, session, ws, task, _ = world
    url = f"{TASKROUTER}/v1/Workspaces/{ws}/Tasks/{task}"
    emu.set_faults(Faults(html_after_write_rate=1.0))
    html = session.post(url, data={"Priority": "1"})
    assert (html.status_code, html.headers["Content-Type"].split(";")[0]) == (200, "text/html")
    emu.set_faults(Faults(garbled_after_write_rate=1.0))
    cut = session.post(url, data={"Priority": "2"})
    assert cut.status_code == 200
    assert cut.text.startswith("{")
    assert not cut.text.endswith("}")
    assert [m.before_revision for m in emu.mutations] == [0, 1]
    emu.set_faults(Faults(revoke_after=0))
    assert twilio_error(session.get(url), 401, 20003)["message"] == "Authenticate"


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status"),
    [
        ("POST", "TASK", {"Content-Type": "application/json"}, b'{"Priority": 1}', 400),
        ("POST", "TASK", {"Content-Type": "text/plain"}, b"Priority=1", 400),
        ("POST", "TASK", {"Content-Type": ";;;"}, b"Priority=1", 400),
        ("POST", "TASK", {"Content-Type": "multipart/form-data; boundary=x"}, b"--x--", 400),
        ("POST", "TASK", {}, b"Priority=1", 400),
        (
            "POST",
            "TASK",
            {"Content-Type": "application/x-www-form-urlencoded"},
            b"Priority=%ZZ",
            400,
        ),
        ("POST", "TASK", {"Content-Type": "application/x-www-form-urlencoded"}, b"Reason=%FF", 400),
        (
            "POST",
            "TASK",
            {"Content-Type": "application/x-www-form-urlencoded"},
            b"Reason=\xff",
            400,
        ),
        (
            "POST",
            "TASK",
            {"Content-Type": "application/x-www-form-urlencoded"},
            b"Priority=1&Priority=2",
            400,
        ),
        (
            "POST",
            "TASK",
            {"Content-Type": "application/x-www-form-urlencoded; charset=latin-1"},
            b"Priority=1",
            400,
        ),
        (
            "POST",
            "TASK",
            {"Content-Type": "application/x-www-form-urlencoded"},
            b"Priority=%EF%BC%91",
            400,
        ),
        (
            "POST",
            "TASK",
            {"Content-Type": "application/x-www-form-urlencoded"},
            b"Attributes=" + b"%5B" * 100_000,
            400,
        ),
        (
            "POST",
            "TASK",
            {"Content-Type": "application/x-www-form-urlencoded"},
            b"Attributes=%7B%22a%22%3ANaN%7D",
            400,
        ),
        (
            "POST",
            "TASK",
            {"Content-Type": "application/x-www-form-urlencoded"},
            b"Reason=" + b"x" * 2_000_000,
            413,
        ),
        (
            "POST",
            "TASK",
            {"Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "gzip"},
            b"Priority=1",
            400,
        ),
        ("GET", "TASKS?PageSize=1_000", {}, b"", 400),
        ("GET", "TASKS?PageSize=9" + "9" * 40, {}, b"", 400),
        ("GET", "TASKS?Priority=%ZZ", {}, b"", 400),
        ("GET", "TASKS?Ordering=" + "x" * 100_000, {}, b"", 400),
        ("DELETE", "TASK", {}, b"", 405),
        ("PUT", "TASKS", {}, b"", 405),
        ("GET", "/v1/Workspaces/WS1/Tasks/WT1/Reservations", {}, b"", 404),
        ("GET", "/", {}, b"", 404),
    ],
)
def test_malformed_requests_get_twilio_error_bodies(
    world: Any, method: str, path: str, headers: dict[str, str], body: bytes, status: int
) -> None:
    emu, session, ws, task, _ = world
    path = path.replace("TASKS", f"/v1/Workspaces/{ws}/Tasks").replace(
        "TASK", f"/v1/Workspaces/{ws}/Tasks/{task}"
    )
    resp = session.request(method, f"{TASKROUTER}{path}", data=body, headers=headers)
    expected = {400: 20001, 404: 20404, 405: 20004, 413: 20001}[status]
    twilio_error(resp, status, expected)
    assert emu.mutations == []


def test_the_admin_endpoint_round_trips_every_knob() -> None:
    faults = Faults(
        clock_offset=-5.5,
        list_attributes=True,
        closed_channel_close="accept",
        revoke_after=3,
        html_after_write_rate=0.1,
        garbled_after_write_rate=0.2,
    )
    assert Faults.from_mapping(faults.to_dict()) == faults
    assert Faults.from_mapping(json.loads(json.dumps(faults.to_dict()))) == faults
