"""Hosts and regions: the Host header names the Twilio product host a request was meant for."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
import requests
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from emulator_client import EmulatorSession, RewritingHttpClient
from stuck_tasks.emulator import REGION_EDGES, REGIONS, Account, Emulator, twilio_host
from stuck_tasks.emulator.hosts import HostRefused, parse_host


@dataclass
class World:
    emu: Emulator
    us: Account
    ie: Account
    us_ws: str
    ie_ws: str

    def session(self, acct: Account) -> EmulatorSession:
        return EmulatorSession(self.emu.base_url, (acct.sid, acct.auth_token))

    def get(self, acct: Account, host: str, path: str) -> requests.Response:
        return self.session(acct).get(f"https://{host}{path}")


@pytest.fixture
def world() -> Iterator[World]:
    with Emulator() as emu:
        us = emu.add_account("US")
        ie = emu.add_account("Dublin", region="ie1")
        us_ws = emu.add_workspace(us.sid).sid
        ie_ws = emu.add_workspace(ie.sid).sid
        yield World(emu, us, ie, us_ws, ie_ws)


def code(resp: requests.Response) -> tuple[int, int]:
    return resp.status_code, resp.json()["code"]


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("raw", "product", "region", "edge"),
    [
        ("taskrouter.twilio.com", "taskrouter", "us1", None),
        ("API.Twilio.com", "api", "us1", None),
        ("api.twilio.com:443", "api", "us1", None),
        ("api.us1.twilio.com", "api", "us1", None),
        ("flex-api.ashburn.us1.twilio.com", "flex-api", "us1", "ashburn"),
        ("api.dublin.ie1.twilio.com", "api", "ie1", "dublin"),
        ("taskrouter.dublin.ie1.twilio.com", "taskrouter", "ie1", "dublin"),
        ("conversations.sydney.au1.twilio.com", "conversations", "au1", "sydney"),
    ],
)
def test_twilio_host_forms_are_served(raw: str, product: str, region: str, edge: str) -> None:
    host = parse_host(raw)
    assert (host.product, host.region, host.edge) == (product, region, edge)
    assert host.base_url == f"https://{raw.lower().removesuffix(':443')}"


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("127.0.0.1:8080", "not a Twilio host"),
        ("localhost", "not a Twilio host"),
        ("", "not a Twilio host"),
        ("twilio.com", "not a Twilio host"),
        ("api.twilio.com:8443", "not a Twilio host"),
        ("api.twilio.com.evil.example", "not a Twilio host"),
        ("studio.twilio.com", "product the emulator serves"),
        ("api.ie1.twilio.com", "region-only host"),
        ("api.au1.twilio.com", "region-only host"),
        ("api.us2.twilio.com", "region-only host"),
        ("taskrouter.us1.twilio.com", "region-only host"),
        ("taskrouter.ie1.twilio.com", "region-only host"),
        ("api.sydney.ie1.twilio.com", "not the edge of region ie1"),
        ("api.tokyo.us1.twilio.com", "not the edge of region us1"),
        ("api.frankfurt.de1.twilio.com", "not a Twilio processing region"),
        ("api.umatilla.us2.twilio.com", "not a Twilio processing region"),
        ("api.a.b.c.twilio.com", "not a Twilio product host"),
    ],
)
def test_other_hosts_are_refused(raw: str, why: str) -> None:
    with pytest.raises(HostRefused, match=why):
        parse_host(raw)


def test_twilio_host_builds_the_edge_and_region_form() -> None:
    assert twilio_host("taskrouter") == "taskrouter.twilio.com"
    assert twilio_host("api", "ie1") == "api.dublin.ie1.twilio.com"
    assert set(REGIONS) == {"us1", "ie1", "au1"}
    assert {r: REGION_EDGES[r] for r in REGIONS} == {
        "us1": "ashburn",
        "ie1": "dublin",
        "au1": "sydney",
    }
    with pytest.raises(ValueError, match="unknown region"):
        twilio_host("api", "de1")


# ---------------------------------------------------------------- answers


def test_the_loopback_address_answers_404_to_every_twilio_route(world: World) -> None:
    loopback = world.emu.base_url.split("//")[1]
    for path in (
        f"/v1/Workspaces/{world.us_ws}/Tasks",
        f"/2010-04-01/Accounts/{world.us.sid}.json",
        "/v1/Conversations/CH" + "0" * 32,
    ):
        resp = world.get(world.us, loopback, path)
        assert code(resp) == (404, 20404), path
        assert "not a Twilio host" in resp.json()["message"]
    assert world.emu.stats()["other"] == 3
    assert {r.host for r in world.emu.request_log} == {loopback}


def test_admin_routes_answer_on_any_host(world: World) -> None:
    for host in (None, "taskrouter.twilio.com", "example.org"):
        headers = {"Host": host} if host else {}
        state = f"{world.emu.base_url}/__emulator/state"
        assert requests.get(state, headers=headers, timeout=10).status_code == 200


def test_a_path_on_another_products_host_is_404(world: World) -> None:
    for host, path in (
        ("api.twilio.com", f"/v1/Workspaces/{world.us_ws}"),
        ("taskrouter.twilio.com", f"/2010-04-01/Accounts/{world.us.sid}.json"),
        ("conversations.twilio.com", f"/v1/Workspaces/{world.us_ws}/Tasks"),
        ("flex-api.twilio.com", "/v1/Conversations/CH" + "0" * 32),
    ):
        assert code(world.get(world.us, host, path)) == (404, 20404), (host, path)
    assert world.get(world.us, "taskrouter.twilio.com", f"/v1/Workspaces/{world.us_ws}").ok


def test_retired_and_mismatched_hosts_answer_404_even_without_credentials(world: World) -> None:
    for host in ("api.ie1.twilio.com", "api.sydney.ie1.twilio.com", "127.0.0.1"):
        resp = requests.get(
            f"{world.emu.base_url}/2010-04-01/Accounts/{world.us.sid}.json",
            headers={"Host": host},
            timeout=10,
        )
        assert code(resp) == (404, 20404), host


def test_credentials_of_another_region_are_401(world: World) -> None:
    us_path = f"/v1/Workspaces/{world.us_ws}"
    ie_path = f"/v1/Workspaces/{world.ie_ws}"
    assert code(world.get(world.us, "taskrouter.dublin.ie1.twilio.com", us_path)) == (401, 20003)
    assert code(world.get(world.ie, "taskrouter.twilio.com", ie_path)) == (401, 20003)
    assert code(world.get(world.ie, "taskrouter.ashburn.us1.twilio.com", ie_path)) == (401, 20003)
    assert world.get(world.ie, "taskrouter.dublin.ie1.twilio.com", ie_path).ok
    assert world.get(world.us, "taskrouter.ashburn.us1.twilio.com", us_path).ok
    key = world.emu.add_api_key(world.ie.sid, kind="main")
    keyed = EmulatorSession(world.emu.base_url, (key.sid, key.secret))
    assert code(keyed.get(f"https://api.twilio.com/2010-04-01/Accounts/{world.ie.sid}.json")) == (
        401,
        20003,
    )
    assert keyed.get(
        f"https://api.dublin.ie1.twilio.com/2010-04-01/Accounts/{world.ie.sid}.json"
    ).ok


def test_absolute_urls_name_the_host_the_request_named(world: World) -> None:
    sid = world.emu.add_task(world.ie_ws, "pending")
    for i in range(3):
        world.emu.add_task(world.ie_ws, "pending", age=timedelta(minutes=i))
    host = "taskrouter.dublin.ie1.twilio.com"
    base = f"https://{host}/v1/Workspaces/{world.ie_ws}"
    task = world.get(world.ie, host, f"/v1/Workspaces/{world.ie_ws}/Tasks/{sid}").json()
    assert task["url"] == f"{base}/Tasks/{sid}"
    assert set(task["links"].values()) >= {base, f"{base}/Tasks/{sid}/Reservations"}
    page = world.session(world.ie).get(f"{base}/Tasks", params={"PageSize": 2}).json()
    assert page["meta"]["next_page_url"].startswith(f"{base}/Tasks?")
    assert page["meta"]["url"].startswith(f"{base}/Tasks?")
    second = world.session(world.ie).get(page["meta"]["next_page_url"])
    assert second.ok
    assert world.emu.request_log[-1].host == host


def test_the_twilio_library_with_region_and_edge_reaches_ie1(world: World) -> None:
    http = RewritingHttpClient(world.emu.base_url, timeout=10)
    client = Client(
        world.ie.sid,
        world.ie.auth_token,
        account_sid=world.ie.sid,
        region="ie1",
        edge="dublin",
        http_client=http,
    )
    sid = world.emu.add_task(world.ie_ws, "pending")
    fetched = client.taskrouter.v1.workspaces(world.ie_ws).tasks(sid).fetch()
    assert fetched.url.startswith("https://taskrouter.dublin.ie1.twilio.com/")
    assert client.api.v2010.accounts(world.ie.sid).fetch().sid == world.ie.sid
    assert [r.host for r in world.emu.request_log] == [
        "taskrouter.dublin.ie1.twilio.com",
        "api.dublin.ie1.twilio.com",
    ]
    region_only = Client(
        world.ie.sid, world.ie.auth_token, account_sid=world.ie.sid, region="ie1", http_client=http
    )
    with pytest.raises(TwilioRestException) as err:
        region_only.taskrouter.v1.workspaces(world.ie_ws).fetch()
    assert (err.value.status, err.value.code) == (404, 20404)
    legacy = Client(world.ie.sid, world.ie.auth_token, account_sid=world.ie.sid, http_client=http)
    with pytest.raises(TwilioRestException) as err:
        legacy.taskrouter.v1.workspaces(world.ie_ws).fetch()
    assert (err.value.status, err.value.code) == (401, 20003)


def test_accounts_live_in_a_known_region() -> None:
    emu = Emulator()
    assert emu.add_account().region == "us1"
    assert emu.add_account(region="au1").region == "au1"
    with pytest.raises(ValueError, match="unknown region"):
        emu.add_account(region="de1")
