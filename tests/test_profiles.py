"""profiles.py: reading one named twilio-cli profile, and every way of refusing one."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stuck_tasks.errors import ConfigError
from stuck_tasks.profiles import MAX_CONFIG_BYTES, Profile, config_path, read_profile

ACCOUNT = "AC" + "0123456789abcdef" * 2
OTHER_ACCOUNT = "AC" + "fedcba9876543210" * 2
KEY = "SK" + "0123456789ABCDEF" * 2
OTHER_KEY = "SK" + "00112233445566778899aabbccddeeff"
SECRET = "Zq7-secret-value-" + "w" * 15
OTHER_SECRET = "Other-secret-" + "v" * 19
CONFIG = "~/.twilio-cli/config.json"  # how messages show the default location under `home`


def current(**fields: Any) -> dict[str, Any]:
    """A profile as twilio login writes it since twilio-cli 3.0."""
    profile: dict[str, Any] = {"accountSid": ACCOUNT, "apiKey": KEY, "apiSecret": SECRET}
    profile.update(fields)
    return {key: value for key, value in profile.items() if value is not ...}


def document(**profiles: dict[str, Any]) -> dict[str, Any]:
    """A whole config.json, with the keys twilio-cli writes next to the profiles."""
    return {
        "email": {},
        "prompts": {},
        "projects": [],
        "profiles": profiles,
        "activeProject": next(iter(profiles), None),
    }


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


def write(home: Path, content: object, *, raw: bool = False) -> Path:
    """Write config.json where twilio-cli looks by default (no TWILIO_CONFIG_DIR)."""
    directory = home / ".twilio-cli"
    directory.mkdir(exist_ok=True)
    path = directory / "config.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if raw else json.dumps(content, indent=2), encoding="utf-8")
    return path


def refusal(name: str, home: Path, env: dict[str, str] | None = None) -> str:
    """The message of the ConfigError read_profile raises; checks it is one secret-free line."""
    with pytest.raises(ConfigError) as raised:
        read_profile(name, env=env or {}, home=home)
    message = str(raised.value)
    assert "\n" not in message, message
    assert "\r" not in message, message
    for secret in (SECRET, OTHER_SECRET):
        assert secret not in message
        assert secret not in repr(raised.value)
    return message


# --- where the file is ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "/home/ada/.twilio-cli/config.json"),
        ({"TWILIO_CONFIG_DIR": ""}, "/home/ada/.twilio-cli/config.json"),
        ({"TWILIO_CONFIG_DIR": "/etc/twilio"}, "/etc/twilio/config.json"),
        ({"TWILIO_CONFIG_DIR": "relative/dir"}, "relative/dir/config.json"),
        ({"TWILIO_CONFIG_DIR": "~/cli"}, "~/cli/config.json"),  # twilio-cli does not expand ~
    ],
)
def test_config_path_follows_twilio_cli(env: dict[str, str], expected: str) -> None:
    assert config_path(env, Path("/home/ada")) == Path(expected)


def test_reads_from_twilio_config_dir_and_ignores_home(tmp_path: Path, home: Path) -> None:
    write(home, document(prod=current(accountSid=OTHER_ACCOUNT)))
    custom = tmp_path / "elsewhere"
    custom.mkdir()
    (custom / "config.json").write_text(json.dumps(document(prod=current())), encoding="utf-8")

    profile = read_profile("prod", env={"TWILIO_CONFIG_DIR": str(custom)}, home=home)

    assert profile.account_sid == ACCOUNT
    assert profile.path == custom / "config.json"


def test_defaults_are_os_environ_and_path_home(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(home, document(prod=current()))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))
    assert read_profile("prod").path == home / ".twilio-cli" / "config.json"

    custom = tmp_path / "custom"
    custom.mkdir()
    (custom / "config.json").write_text(json.dumps(document(dev=current())), encoding="utf-8")
    monkeypatch.setenv("TWILIO_CONFIG_DIR", str(custom))
    assert read_profile("dev").path == custom / "config.json"


# --- reading a profile ------------------------------------------------------------------------


@pytest.mark.parametrize("location", ["home", "TWILIO_CONFIG_DIR"])
def test_reads_a_current_profile_with_region_and_edge(
    location: str, tmp_path: Path, home: Path
) -> None:
    content = document(prod=current(region="ie1", edge="dublin"), dev=current(apiKey=OTHER_KEY))
    if location == "home":
        env: dict[str, str] = {}
        path = write(home, content)
    else:
        env = {"TWILIO_CONFIG_DIR": str(tmp_path / "cfg")}
        path = tmp_path / "cfg" / "config.json"
        path.parent.mkdir()
        path.write_text(json.dumps(content), encoding="utf-8")

    profile = read_profile("prod", env=env, home=home)

    assert profile == Profile(
        name="prod",
        account_sid=ACCOUNT,
        api_key=KEY,
        api_secret=SECRET,
        region="ie1",
        edge="dublin",
        path=path,
    )


@pytest.mark.parametrize(
    ("profile_fields", "top_level_edge", "region", "edge"),
    [
        ({}, ..., None, None),
        ({}, "sydney", None, "sydney"),  # the top-level edge applies to a profile without one
        ({"edge": "dublin"}, "sydney", None, "dublin"),  # ... but never overrides its own
        ({"edge": ""}, "sydney", None, "sydney"),  # "" is absent (twilio-cli's JS `||`)
        ({"edge": None}, "sydney", None, "sydney"),
        ({"region": "au1"}, "sydney", "au1", "sydney"),
        ({"region": "au1"}, ..., "au1", None),  # region alone passes through: the CLI decides
        ({"region": "au1"}, "", "au1", None),
        ({"region": "au1"}, None, "au1", None),
        ({"region": ""}, ..., None, None),
        ({"region": "au1", "edge": "sydney"}, "tokyo", "au1", "sydney"),
    ],
)
def test_region_and_edge_as_twilio_cli_resolves_them(
    profile_fields: dict[str, Any],
    top_level_edge: object,
    region: str | None,
    edge: str | None,
    home: Path,
) -> None:
    content = document(prod=current(**profile_fields))
    if top_level_edge is not ...:
        content["edge"] = top_level_edge
    write(home, content)

    profile = read_profile("prod", env={}, home=home)

    assert (profile.region, profile.edge) == (region, edge)


def test_the_active_profile_is_never_used_implicitly(home: Path) -> None:
    content = document(prod=current(), dev=current(apiKey=OTHER_KEY, apiSecret=OTHER_SECRET))
    content["activeProject"] = "dev"
    write(home, content)

    assert read_profile("prod", env={}, home=home).api_key == KEY
    message = refusal("staging", home)
    assert message.startswith('no twilio-cli profile "staging" in ')


@pytest.mark.parametrize("name", ["", "   ", "\t"])
def test_an_empty_name_is_refused_before_any_file_is_read(name: str, home: Path) -> None:
    assert refusal(name, home) == (
        'give --profile the name of a twilio-cli profile (see "twilio profiles:list")'
    )


def test_the_name_is_trimmed_as_twilio_cli_does(home: Path) -> None:
    write(home, document(prod=current()))
    assert read_profile("  prod\n", env={}, home=home).name == "prod"


def test_a_current_profile_wins_over_a_legacy_entry_of_the_same_name(home: Path) -> None:
    content = document(prod=current())
    content["projects"] = [{"id": "prod", "accountSid": OTHER_ACCOUNT}]
    write(home, content)
    assert read_profile("prod", env={}, home=home).account_sid == ACCOUNT


def test_other_top_level_keys_are_ignored(home: Path) -> None:
    content = document(prod=current())
    content.update(requireProfileInput=True, email={"fromEmail": "x@example.com"}, prompts={"a": 1})
    content["activeProject"] = {"unexpected": "shape"}
    write(home, content)
    assert read_profile("prod", env={}, home=home).name == "prod"


def test_a_utf8_bom_is_accepted_like_fs_extra_does(home: Path) -> None:
    write(home, b"\xef\xbb\xbf" + json.dumps(document(prod=current())).encode())
    assert read_profile("prod", env={}, home=home).api_secret == SECRET


def test_a_file_of_exactly_the_size_cap_is_read(home: Path) -> None:
    text = json.dumps(document(prod=current()))
    write(home, text + " " * (MAX_CONFIG_BYTES - len(text)), raw=True)
    assert read_profile("prod", env={}, home=home).name == "prod"


# --- the secret stays out of sight -----------------------------------------------------------


def test_the_secret_is_in_no_repr_str_or_description(home: Path) -> None:
    write(home, document(prod=current(region="ie1", edge="dublin")))
    profile = read_profile("prod", env={}, home=home)

    assert profile.api_secret == SECRET
    for text in (repr(profile), str(profile), profile.describe(home=home), profile.describe()):
        assert SECRET not in text
    assert "api_secret" not in repr(profile)


def test_describe_is_one_line_for_the_plan_and_audit_headers(home: Path, tmp_path: Path) -> None:
    write(home, document(prod=current(region="ie1", edge="dublin"), dev=current()))

    assert read_profile("prod", env={}, home=home).describe(home=home) == (
        f'twilio-cli profile "prod" ({CONFIG}), account {ACCOUNT}, key {KEY}, '
        "region ie1, edge dublin"
    )
    assert read_profile("dev", env={}, home=home).describe(home=tmp_path / "other") == (
        f'twilio-cli profile "dev" ({home}/.twilio-cli/config.json), account {ACCOUNT}, key {KEY}'
    )


# --- refusals ----------------------------------------------------------------------------------

REDO_PROD = 'fix it or re-create the profile with "twilio login -p prod"'
ENV_ALTERNATIVE = "set TWILIO_ACCOUNT_SID, TWILIO_API_KEY and TWILIO_API_SECRET and drop --profile"


def test_no_config_file_names_the_path_and_what_to_do(tmp_path: Path, home: Path) -> None:
    assert refusal("prod", home) == (
        f'no twilio-cli config at {CONFIG}: run "twilio login -p prod" to create the '
        "profile, or drop --profile to use TWILIO_* variables or ./.env"
    )
    missing = tmp_path / "nowhere"
    assert refusal("prod", home, {"TWILIO_CONFIG_DIR": str(missing)}) == (
        f"no twilio-cli config at {missing}/config.json (from TWILIO_CONFIG_DIR): run "
        '"twilio login -p prod" to create the profile, or drop --profile to use TWILIO_* '
        "variables or ./.env"
    )


def test_twilio_config_dir_naming_a_file_counts_as_no_config(tmp_path: Path, home: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("{}", encoding="utf-8")
    message = refusal("prod", home, {"TWILIO_CONFIG_DIR": str(not_a_dir)})
    assert message.startswith(f"no twilio-cli config at {not_a_dir}/config.json ")


def test_a_legacy_keychain_profile_says_where_its_secret_is(home: Path) -> None:
    content = document(prod=current())
    content["projects"] = [{"id": " old ", "accountSid": ACCOUNT, "region": "au1"}]
    write(home, content)

    assert refusal("old", home) == (
        f'twilio-cli profile "old" in {CONFIG} is a legacy profile whose API secret lives in '
        "the OS keychain, which stuck-tasks does not read (nor does twilio-cli 4 or later): "
        're-create it with "twilio login -p old", which stores the key and secret in '
        f"config.json, or {ENV_ALTERNATIVE}"
    )


def test_a_legacy_entry_is_a_keychain_profile_even_with_key_fields(home: Path) -> None:
    # twilio-cli keeps only id, accountSid and region of a projects entry (config.js L170-176).
    content = document()
    content["projects"] = [{"id": "old", "accountSid": ACCOUNT, "apiKey": KEY, "apiSecret": SECRET}]
    write(home, content)
    assert "lives in the OS keychain" in refusal("old", home)


def test_an_unknown_name_lists_the_known_ones_sorted(home: Path) -> None:
    content = document(zeta=current(), alpha=current(), prod=current())
    content["projects"] = [{"id": "legacy", "accountSid": ACCOUNT}, {"id": 7}, "junk"]
    write(home, content)

    assert refusal("staging", home) == (
        f'no twilio-cli profile "staging" in {CONFIG}; the profiles there are "alpha", '
        '"legacy", "prod", "zeta" (see "twilio profiles:list"), or create it with '
        '"twilio login -p staging"'
    )


def test_an_unknown_name_in_a_file_without_profiles_says_so(home: Path) -> None:
    write(home, {})
    assert refusal("prod", home) == (
        f'no twilio-cli profile "prod" in {CONFIG}, which has no profiles: run '
        '"twilio login -p prod" to create it, or drop --profile'
    )


def test_a_long_list_of_names_is_cut_and_odd_names_stay_on_one_line(home: Path) -> None:
    names = [f"p{i:02}" for i in range(25)] + ["two\nlines", 'quo"te']
    write(home, document(**{name: current() for name in names}))

    message = refusal("missing one", home)

    assert '"p19" and 7 more' in message
    assert '"p20"' not in message
    assert "twilio login -p 'missing one'" in message


def test_odd_characters_in_names_are_escaped(home: Path) -> None:
    write(home, document(**{"a\u2028b": current(), 'q"\\': current()}))
    message = refusal("x\x1by", home)
    assert '"a\\u2028b"' in message
    assert '"q\\"\\\\"' in message
    assert '"x\\x1by"' in message
    assert '"twilio login -p <name>"' in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{", "line 1, column 2: Expecting property name enclosed in double quotes"),
        ('{"profiles": {"prod": {}}', "line 1, column 26: Expecting ',' delimiter"),
        ("", "line 1, column 1: Expecting value"),
        ('{"edge": NaN}', "it holds NaN, Infinity or a number too long to read"),
        ('{"edge": -Infinity}', "it holds NaN, Infinity or a number too long to read"),
        ('{"n": ' + "9" * 5000 + "}", "it holds NaN, Infinity or a number too long to read"),
        ("[" * 200_000 + "]" * 200_000, "nested too deeply"),
    ],
)
def test_malformed_json_is_refused_with_where_it_breaks(
    content: str, expected: str, home: Path
) -> None:
    write(home, content, raw=True)
    message = refusal("prod", home)
    assert message.startswith(f"{CONFIG} is not valid JSON ({expected}")
    assert message.endswith("): fix it or run twilio login")


def test_a_json_error_carries_no_exception_that_holds_the_text(home: Path) -> None:
    write(home, json.dumps(document(prod=current())) + ",", raw=True)
    with pytest.raises(ConfigError) as raised:
        read_profile("prod", env={}, home=home)
    assert raised.value.__cause__ is None
    assert raised.value.__context__ is None  # json's error keeps the whole document in .doc


def test_text_that_is_not_utf8_is_refused(home: Path) -> None:
    write(home, b'{"profiles": {"\xff": {}}}')
    with pytest.raises(ConfigError) as raised:
        read_profile("prod", env={}, home=home)
    assert str(raised.value) == (
        f"{CONFIG} is not UTF-8 text (byte 15): fix it or run twilio login"
    )
    assert raised.value.__context__ is None


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        ([], "an array"),
        ("profiles", "a string"),
        (None, "null"),
        (3, "a number"),
        (True, "a boolean"),
    ],
)
def test_json_that_is_not_an_object_is_refused(content: object, kind: str, home: Path) -> None:
    write(home, content)
    assert refusal("prod", home) == (
        f"{CONFIG} holds {kind}, not the JSON object twilio-cli writes: check that "
        "TWILIO_CONFIG_DIR names twilio-cli's config directory"
    )


def subject(name: str = "prod") -> str:
    return f'twilio-cli profile "{name}" in {CONFIG}'


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            {"profiles": [current()]},
            f'{CONFIG}: "profiles" must be an object, not an array: fix it or run twilio login',
        ),
        (
            {"profiles": {}, "projects": {"prod": {}}},
            f'{CONFIG}: "projects" must be an array, not an object: fix it or run twilio login',
        ),
        (document(prod=None), f"{subject()} is null, not an object: {REDO_PROD}"),
        (document(prod=[SECRET]), f"{subject()} is an array, not an object: {REDO_PROD}"),
        (
            document(prod=current(accountSid=...)),
            f"{subject()} has no accountSid: {REDO_PROD}",
        ),
        (
            document(prod=current(accountSid=12)),
            f"{subject()}: accountSid must be a string, not a number: {REDO_PROD}",
        ),
        (
            document(prod=current(accountSid="AC123")),
            f"{subject()}: accountSid is not an Account SID (AC followed by 32 hex digits): "
            f"{REDO_PROD}",
        ),
        (
            document(prod=current(accountSid=ACCOUNT.lower())),
            f"{subject()}: accountSid is not an Account SID (AC followed by 32 hex digits): "
            f"{REDO_PROD}",
        ),
        (
            document(prod=current(accountSid=ACCOUNT + "\n")),
            f"{subject()}: accountSid is not an Account SID (AC followed by 32 hex digits): "
            f"{REDO_PROD}",
        ),
        (
            document(prod=current(apiKey=ACCOUNT)),
            f"{subject()}: apiKey is not an API key SID (SK followed by 32 hex digits): "
            f"{REDO_PROD}",
        ),
        (
            document(prod=current(apiKey=SECRET)),  # a secret pasted in the wrong field
            f"{subject()}: apiKey is not an API key SID (SK followed by 32 hex digits): "
            f"{REDO_PROD}",
        ),
        (
            document(prod=current(apiKey=["SK"])),
            f"{subject()}: apiKey must be a string, not an array: {REDO_PROD}",
        ),
        (
            document(prod=current(apiSecret=12345)),
            f"{subject()}: apiSecret must be a string, not a number: {REDO_PROD}",
        ),
        (
            document(prod=current(apiSecret=False)),
            f"{subject()}: apiSecret must be a string, not a boolean: {REDO_PROD}",
        ),
        (
            document(prod=current(region=1)),
            f"{subject()}: region must be a string, not a number: {REDO_PROD}",
        ),
        (
            document(prod=current(region="ie1.attacker.example#")),
            f"{subject()}: region is not a region or edge name (letters, digits and inner "
            f"hyphens, such as ie1 or dublin): {REDO_PROD}",
        ),
        (
            document(prod=current(edge=["dublin"])),
            f"{subject()}: edge must be a string, not an array: {REDO_PROD}",
        ),
        (
            document(prod=current(edge="dub lin")),
            f"{subject()}: edge is not a region or edge name (letters, digits and inner "
            f"hyphens, such as ie1 or dublin): {REDO_PROD}",
        ),
        (
            {**document(prod=current()), "edge": 5},
            f"{CONFIG}: the top-level edge must be a string, not a number: fix it with "
            '"twilio config:set --edge=<edge>"',
        ),
        (
            {**document(prod=current()), "edge": "-sydney"},
            f"{CONFIG}: the top-level edge is not a region or edge name (letters, digits and "
            'inner hyphens, such as ie1 or dublin): fix it with "twilio config:set --edge=<edge>"',
        ),
    ],
)
def test_wrong_types_and_shapes_are_refused(
    content: dict[str, Any], expected: str, home: Path
) -> None:
    write(home, content)
    assert refusal("prod", home) == expected


@pytest.mark.parametrize(
    "fields",
    [
        {"apiKey": ...},
        {"apiSecret": ...},
        {"apiKey": ..., "apiSecret": ...},
        {"apiSecret": ""},
        {"apiKey": None},
    ],
)
def test_a_profile_without_key_and_secret_says_how_to_get_them(
    fields: dict[str, Any], home: Path
) -> None:
    write(home, document(prod=current(**fields)))
    assert refusal("prod", home) == (
        f'{subject()} has no apiKey and apiSecret: re-create it with "twilio login -p prod", '
        f"or {ENV_ALTERNATIVE}"
    )


def test_an_oversized_file_is_refused(home: Path) -> None:
    text = json.dumps(document(prod=current()))
    write(home, text + " " * (MAX_CONFIG_BYTES + 1 - len(text)), raw=True)
    assert refusal("prod", home) == (
        f"{CONFIG} is over 1,000,000 bytes, far more than a twilio-cli config holds: check "
        "that TWILIO_CONFIG_DIR names twilio-cli's config directory"
    )


def test_a_directory_in_place_of_the_file_is_refused(home: Path) -> None:
    (home / ".twilio-cli" / "config.json").mkdir(parents=True)
    assert refusal("prod", home) == (
        f"{CONFIG} is not a regular file: point TWILIO_CONFIG_DIR at twilio-cli's config directory"
    )


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_named_pipe_in_place_of_the_file_is_refused_without_waiting(home: Path) -> None:
    (home / ".twilio-cli").mkdir()
    os.mkfifo(home / ".twilio-cli" / "config.json")
    assert refusal("prod", home) == (
        f"{CONFIG} is not a regular file: point TWILIO_CONFIG_DIR at twilio-cli's config directory"
    )


@pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() == 0, reason="needs POSIX permissions, not root"
)
def test_an_unreadable_file_is_refused(home: Path) -> None:
    path = write(home, document(prod=current()))
    path.chmod(0)
    try:
        assert refusal("prod", home) == f"cannot read {CONFIG}: Permission denied"
    finally:
        path.chmod(0o600)


def test_without_a_home_directory_twilio_config_dir_is_asked_for(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    with pytest.raises(ConfigError) as raised:
        read_profile("prod", env={})
    assert str(raised.value) == (
        "cannot tell your home directory, so cannot find twilio-cli's config: "
        "set TWILIO_CONFIG_DIR to the directory that holds config.json"
    )

    (tmp_path / "config.json").write_text(json.dumps(document(prod=current())), "utf-8")
    profile = read_profile("prod", env={"TWILIO_CONFIG_DIR": str(tmp_path)})
    assert profile.path == tmp_path / "config.json"
    assert str(tmp_path) in profile.describe()


# --- properties ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=25,
)
field_values = json_values | st.sampled_from(
    [ACCOUNT, KEY, SECRET, "", "ie1", "dublin", "AC", "SK" + "g" * 32, "a.b"]
)
names = st.sampled_from(["prod", "dev", "old", " prod"]) | st.text(max_size=8)
# The secret may turn up in any field but a name: names are shown in messages by design.
profile_entries = (
    st.fixed_dictionaries(
        {},
        optional={
            "accountSid": field_values,
            "apiKey": field_values,
            "apiSecret": field_values,
            "region": field_values,
            "edge": field_values,
            "id": names | json_values,
        },
    )
    | field_values
)
config_documents = st.fixed_dictionaries(
    {},
    optional={
        "profiles": st.dictionaries(names, profile_entries, max_size=3) | json_values,
        "projects": st.lists(profile_entries, max_size=3) | json_values,
        "edge": field_values,
        "activeProject": names | json_values,
    },
)


@st.composite
def nearly_valid_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A good profile with some fields replaced or dropped, so both outcomes are reached."""
    entry = current(region="ie1", edge="dublin")
    for key in draw(st.sets(st.sampled_from(sorted(entry)), max_size=3)):
        if draw(st.booleans()):
            del entry[key]
        else:
            entry[key] = draw(field_values)
    content = document(prod=entry)
    if draw(st.booleans()):
        content["edge"] = draw(field_values)
    return content


documents = json_values | config_documents | nearly_valid_documents()

property_settings = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def read_or_refuse(home: Path, content: bytes, name: str) -> Profile | None:
    write(home, content)
    try:
        return read_profile(name, env={}, home=home)
    except ConfigError as error:
        message = str(error)
        assert "\n" not in message, message
        assert SECRET not in message
        return None


@property_settings
@given(content=documents, name=names)
def test_any_json_document_gives_a_profile_or_a_config_error(
    content: object, name: str, home: Path
) -> None:
    profile = read_or_refuse(home, json.dumps(content).encode(), name)
    if profile is not None:
        assert profile.account_sid.startswith("AC")
        assert profile.api_key.startswith("SK")
        shown = (profile.name, profile.region or "", profile.edge or "")
        if not any(SECRET in value for value in shown):  # the string is not also the edge, say
            assert SECRET not in repr(profile)
            assert SECRET not in profile.describe(home=home)


@property_settings
@given(content=st.binary(max_size=200), name=names)
def test_any_bytes_give_a_profile_or_a_config_error(content: bytes, name: str, home: Path) -> None:
    read_or_refuse(home, content, name)


def test_an_os_error_on_opening_is_one_line(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(home, document(prod=current()))

    def refuse(path: object, flags: int) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("stuck_tasks.profiles.os.open", refuse)
    assert refusal("prod", home) == f"cannot read {CONFIG}: Permission denied"
