"""The gateway's and the transport's fast paths.

The gateway reads the hot answers (tasks, calls, conferences) from twilio's parsed payload
rather than its instance classes: these tests pin that reading to twilio's own parsers and to
the shapes Twilio documents. The transport checks a request's host by prefix first: it must
agree with the full parse."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from urllib.parse import urlsplit

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy
from twilio.base import deserialize
from twilio.http.response import Response

from stuck_tasks.clock import TwilioClock
from stuck_tasks.errors import BadResponse
from stuck_tasks.gateway import _iso, _page, _rfc2822, _rows, task_record
from stuck_tasks.models import Reason
from stuck_tasks.pacing import header
from stuck_tasks.ratecontrol import AdaptiveLimiter, Metrics, Stop
from stuck_tasks.settings import Connection, Credentials
from stuck_tasks.transport import _KINDS, Transport, error_from, request_kind

SECONDS = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=0))


@given(SECONDS)
def test_a_taskrouter_timestamp_reads_as_twilio_reads_it(when: datetime):
    text = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert _iso(text, "t") == deserialize.iso8601_datetime(text) == when


@given(st.from_regex(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", fullmatch=True))
def test_in_twilios_form_a_timestamp_reads_exactly_as_twilio_reads_it(text: str):
    """Random digits in the form: most are no date at all (month 47), and both agree."""
    found = deserialize.iso8601_datetime(text)
    assert _iso(text, "t") == (found if isinstance(found, datetime) else None)


@given(
    st.from_regex(
        r"\s?\d{1,5}-\d{1,2}-\d{1,2}[T ]\d{1,2}:\d{1,2}:\d{1,2}(\.\d+)?Z?\s?", fullmatch=True
    )
)
def test_a_timestamp_is_never_read_where_twilio_would_not_read_it(text: str):
    """Near-misses of the form: any datetime we read, twilio's strptime reads too."""
    ours = _iso(text, "t")
    if ours is not None:
        assert deserialize.iso8601_datetime(text) == ours


@given(SECONDS)
def test_a_voice_timestamp_reads_as_twilio_reads_it(when: datetime):
    text = format_datetime(when)  # "Tue, 01 Dec 2026 12:00:00 +0000", as the Voice API sends
    assert _rfc2822(text, "t") == deserialize.rfc2822_datetime(text) == when


VOICE_FORM = (
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d{4} \d\d:\d\d:\d\d "
)


@given(st.from_regex(VOICE_FORM + r"\+0000", fullmatch=True))
def test_in_the_voice_apis_form_a_timestamp_reads_exactly_as_twilio_reads_it(text: str):
    """Random digits in the form (31 Feb, hour 47, year 0049): ours equals twilio's reading,
    or is absent where twilio's raises."""
    try:
        found = deserialize.rfc2822_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        found = None
    assert _rfc2822(text, "t") == (found if isinstance(found, datetime) else None)


@given(st.from_regex(VOICE_FORM + r"[+-]\d{4}", fullmatch=True))
def test_in_the_voice_apis_form_any_offset_reads_as_the_email_parser_reads_it(text: str):
    try:
        found = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        found = None
    expected = found if found is not None and found.tzinfo is not None else None
    assert _rfc2822(text, "t") == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("2026-12-01T12:00:00Z", datetime(2026, 12, 1, 12, tzinfo=UTC)),
        ("2026-12-01T12:00:00.5Z", None),  # not the form Twilio sends: absent, as in twilio
        ("2026-12-01T12:00:00+00:00", None),
        ("2026-13-01T12:00:00Z", None),  # the form, not a date
        ("", None),
        ("yesterday", None),
    ],
)
def test_iso_table(value: object, expected: datetime | None):
    assert _iso(value, "t") == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("Tue, 01 Dec 2026 12:00:00 +0000", datetime(2026, 12, 1, 12, tzinfo=UTC)),
        ("Tue, 01 Dec 2026 13:00:00 +0100", datetime(2026, 12, 1, 12, tzinfo=UTC)),
        ("Tue, 01 Dec 2026 12:00:00 -0000", None),  # RFC 5322: the offset is unknown
        ("not a date", None),
        ("", None),
    ],
)
def test_rfc2822_table(value: object, expected: datetime | None):
    assert _rfc2822(value, "t") == expected


@pytest.mark.parametrize("value", [5, 1.5, True, [], {}])
def test_a_timestamp_that_is_not_text_is_not_twilios_shape(value: object):
    with pytest.raises(BadResponse):
        _iso(value, "t")
    with pytest.raises(BadResponse):
        _rfc2822(value, "t")


TASK = {
    "sid": "WT" + "a" * 32,
    "assignment_status": "pending",
    "task_channel_unique_name": "voice",
    "task_queue_friendly_name": "Support",
    "date_created": "2026-12-01T11:00:00Z",
    "date_updated": "2026-12-01T11:05:00Z",
    "age": 300,
    "attributes": '{"call_sid": "CA' + "b" * 32 + '"}',
    "reason": None,
}


def test_a_task_row_becomes_a_record():
    record = task_record(TASK, '"7"', attributes_known=True)
    assert record.sid == TASK["sid"]
    assert (record.status, record.channel, record.queue) == ("pending", "voice", "Support")
    assert record.date_updated == datetime(2026, 12, 1, 11, 5, tzinfo=UTC)
    assert record.age == 300
    assert record.refs is not None
    assert record.refs.call_sid == "CA" + "b" * 32
    assert record.etag == '"7"'


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sid", "WX" + "a" * 32),
        ("sid", None),
        ("assignment_status", "stuck"),
        ("assignment_status", None),
        ("task_channel_unique_name", 7),
        ("date_updated", 1764590700),
        ("reason", ["x"]),
    ],
)
def test_a_task_field_of_the_wrong_shape_is_refused(field: str, value: object):
    with pytest.raises(BadResponse):
        task_record({**TASK, field: value}, attributes_known=True)


@pytest.mark.parametrize(("age", "expected"), [(300, 300), ("300", None), (True, None)])
def test_an_age_that_is_not_an_integer_is_unknown(age: object, expected: int | None):
    assert task_record({**TASK, "age": age}, attributes_known=True).age == expected


def test_attributes_that_cannot_be_read_are_a_reason_not_a_refusal():
    record = task_record({**TASK, "attributes": "{not json"}, attributes_known=True)
    assert record.attributes_problem is Reason.ATTRIBUTES_NOT_JSON
    assert record.refs is None


@pytest.mark.parametrize(
    ("page", "key", "rows"),
    [
        ({"tasks": [{"a": 1}], "meta": {"key": "tasks"}}, "tasks", [{"a": 1}]),
        ({"items": [{"a": 1}], "meta": {"key": "items"}}, "tasks", [{"a": 1}]),
        ({"conferences": [], "next_page_uri": None}, "conferences", []),
    ],
)
def test_list_rows(page: object, key: str, rows: list[object]):
    assert _rows(page, key) == rows


@pytest.mark.parametrize("text", ["[]", '"tasks"', "42", "null"])
def test_a_list_page_that_is_not_an_object_is_refused(text: str):
    with pytest.raises(BadResponse):
        _page(Response(200, text))


@pytest.mark.parametrize(
    "page",
    [
        {"tasks": {"a": 1}},
        {"tasks": [1, 2]},
        {"tasks": [], "meta": "tasks"},
        {"meta": {"key": "tasks"}},
    ],
)
def test_a_list_page_of_the_wrong_shape_is_refused(page: object):
    with pytest.raises(BadResponse):
        _rows(page, "tasks")


# ------------------------------------------------------------ where a request may go


def _transport(base_url: str | None) -> Transport:
    connection = Connection(
        Credentials("AC" + "0" * 32, "secret", "AC" + "0" * 32), base_url=base_url
    )
    metrics = Metrics()
    return Transport(
        connection,
        limiter=AdaptiveLimiter(1, metrics=metrics),
        metrics=metrics,
        clock=TwilioClock(),
        stop=Stop(),
    )


TR = "https://taskrouter.twilio.com"


@pytest.mark.parametrize("base_url", [None, "http://127.0.0.1:8080"])
@pytest.mark.parametrize(
    "url",
    [
        f"{TR}/v1/Workspaces/WS1/Tasks?PageSize=1000&PageToken=PA1",
        f"{TR}/v1/Workspaces/WS1/Tasks/WT1",
        "https://api.twilio.com/2010-04-01/Accounts/AC1/Calls/CA1.json",
        "https://TaskRouter.twilio.com/v1/Workspaces",  # the slow path, same answer
        f"{TR}:443/v1/Workspaces",
    ],
)
def test_a_twilio_url_goes_where_the_full_parse_says(url: str, base_url: str | None):
    """The prefix fast path and urlsplit agree on the target, the host and the path."""
    parts = urlsplit(url)
    query = f"?{parts.query}" if parts.query else ""
    target, host, path = _transport(base_url)._target(url)
    assert (host, path) == (parts.hostname, parts.path)
    if base_url is None:
        assert target == url
    else:
        assert target == f"{base_url}{parts.path}{query}"


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example.com/v1/Workspaces",
        "http://taskrouter.twilio.com/v1/Workspaces",
        "https://taskrouter.twilio.com.evil.example.com/v1/Workspaces",
        "https://taskrouter.twilio.com:8443/v1/Workspaces",
        "https://user:pw@taskrouter.twilio.com/v1/Workspaces",
        "https://taskrouter.twilio.com@evil.example.com/v1/Workspaces",
        "https://taskrouter.dublin.twilio.com/v1/Workspaces",  # not the configured region
    ],
)
def test_a_url_that_is_not_a_twilio_host_of_the_region_is_refused(url: str):
    for base_url in (None, "http://127.0.0.1:8080"):
        with pytest.raises(BadResponse):
            _transport(base_url)._target(url)


SID = "WT0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("GET", "/v1/Workspaces", "list_workspaces"),
        ("GET", f"/v1/Workspaces/{SID}", "fetch_workspace"),
        ("GET", f"/v1/Workspaces/{SID}/Tasks", "list_tasks"),
        ("GET", f"/v1/Workspaces/{SID}/Tasks/{SID}", "fetch_task"),
        ("POST", f"/v1/Workspaces/{SID}/Tasks/{SID}", "update_task"),
        ("POST", f"/v1/Workspaces/{SID}/Tasks", "other"),  # no such write
        ("GET", f"/2010-04-01/Accounts/{SID}.json", "fetch_account"),
        ("GET", f"/2010-04-01/Accounts/{SID}/Calls/{SID}.json", "fetch_call"),
        ("GET", f"/2010-04-01/Accounts/{SID}/Conferences.json", "list_conferences"),
        ("GET", f"/v1/Interactions/{SID}/Channels/{SID}/Participants", "list_participants"),
        ("POST", f"/v1/Interactions/{SID}/Channels/{SID}/Participants/{SID}", "update_participant"),
        ("GET", f"/v1/Interactions/{SID}/Channels/{SID}/Participants/{SID}", "other"),
        ("GET", f"//v1//Workspaces/{SID}/", "fetch_workspace"),  # empty segments do not count
        ("GET", f"/v2/Workspaces/{SID}", "other"),
        ("GET", f"/v1/Workspaces/{SID}/Workers/{SID}", "other"),
        ("GET", f"/v1/Tasks/{SID}/Workspaces/{SID}", "other"),
        ("GET", "/", "other"),
        ("GET", "", "other"),
        ("GET", "/v1", "other"),
    ],
)
def test_request_kinds(method: str, path: str, kind: str):
    assert request_kind(method, path) == kind


SEGMENT = st.text(st.characters(blacklist_characters="/"), min_size=1, max_size=6)


@given(
    st.sampled_from([shape for shape, _, _ in _KINDS]),
    st.lists(SEGMENT, min_size=4, max_size=4),
    st.sampled_from(["GET", "POST"]),
)
def test_any_sid_in_a_known_shape_gives_that_shapes_kind(shape: str, sids, method: str):
    parts = shape.split("/")
    filled = iter(sids)
    path = "/" + "/".join(next(filled) if p == "*" else p for p in parts)
    get, post = next((g, p) for s, g, p in _KINDS if s == shape)
    assume(not any(sid.removesuffix(".json") == "" for sid in sids))
    assert request_kind(method, path) == ((post if method == "POST" else get) or "other")


@pytest.mark.parametrize(
    "headers",
    [
        {"Twilio-Concurrent-Requests": "7"},
        {"twilio-concurrent-requests": "7"},  # a plain mapping: any case still matches
        CIMultiDictProxy(CIMultiDict({"TWILIO-CONCURRENT-REQUESTS": "7"})),  # aiohttp's kind
    ],
)
def test_a_header_is_found_whatever_the_case_of_its_name(headers):
    assert header(headers, "Twilio-Concurrent-Requests") == "7"
    assert header(headers, "X-Rate-Limit-Remaining") is None


# ------------------------------------------------------------------ error answers never echo secrets

TOKEN = "0123456789abcdef0123456789abcdef"
BASIC = "QUMxMjM6MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="  # base64 of "AC123:" + TOKEN


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        # An error status on the Account's own body (no message): its auth token is not shown.
        (
            f'{{"sid": "AC123", "friendly_name": "Acme", "auth_token": "{TOKEN}"}}',
            "(the answer names no error message)",
        ),
        # A proxy's page that echoes the request: the secret and the Authorization header's.
        (f"<p>Authorization: Basic {BASIC} for {TOKEN}</p>", "<p>Authorization: Basic [secret]"),
        ('{"code": 20001, "message": "token ' + TOKEN + ' refused"}', "token [secret] refused"),
        ("", "(empty body)"),
    ],
)
def test_an_error_answer_never_shows_the_credentials(text: str, shown: str):
    error = error_from(500, text, {}, "fetch_account", secrets=(TOKEN, BASIC))
    assert shown in error.message
    assert TOKEN not in str(error)
    assert BASIC not in str(error)
    assert TOKEN[:16] not in str(error)  # not half of one either
