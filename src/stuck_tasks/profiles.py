"""Read one named twilio-cli profile (``twilio login``) from twilio-cli's ``config.json``.

Pure apart from reading that one file: no network, no keychain, no writes. Every refusal is a
``ConfigError`` whose message is one line saying what to do, and no message, repr or str ever
holds an API secret. The CLI layer decides what to do with the result (flag > profile > env >
``./.env``) and whether a region without an edge is acceptable.

What twilio-cli does, as read in twilio/twilio-cli-core @ 9f7d3dc2 (8.3.4, 2026-05-06),
twilio/twilio-cli @ 46d572b1 (6.2.3) and oclif/core ``src/config/config.ts``:

- Location. The file is ``<config dir>/config.json`` (cli-core src/services/config.js L226-230).
  The directory is ``$TWILIO_CONFIG_DIR`` when that is set and not empty, else ``~/.twilio-cli``
  (cli-core src/services/env.js L6-16, run first by twilio-cli bin/run L4; oclif's
  ``configDir = scopedEnvVar('CONFIG_DIR') || ...`` with bin ``twilio``, twilio-cli
  package.json L90). An empty value counts as unset in both. ``~`` is not expanded.
- Encoding. fs-extra ``readJSON`` (config.js L239) decodes UTF-8 and drops a leading BOM
  (jprichardson/node-jsonfile utils.js L11-15, ``stripBom``); so do we.
- Top-level keys: ``edge``, ``email``, ``requireProfileInput``, ``prompts``, ``projects``,
  ``profiles``, ``activeProject`` (config.js L195-218 reads them, L243-253 writes exactly these).
  Only ``profiles``, ``projects`` and ``edge`` matter here; the rest is ignored.
- ``profiles`` is an object keyed by profile id; each value holds ``accountSid``, ``region``,
  ``edge``, ``apiKey``, ``apiSecret`` (config.js L10-18, L204-215). ``twilio login`` is an alias of
  ``profiles:create`` (twilio-cli src/commands/profiles/create.js L297), which makes a new API
  key and stores its SID (``SK...``) and secret there (create.js L275-294). A region given
  without an edge gets a mapped edge at creation time, with a deprecation warning
  (create.js L19-29, L74-84); older files may still hold a region alone.
- Lookup by id: ``profiles[id]`` first, then the first ``projects`` entry with that ``id``
  (config.js L73-79); the requested id is trimmed first (config.js L89-92, L220-223).
- ``projects`` is the pre-3.0 list of ``{id, accountSid, region}``; loading keeps only those
  three fields (config.js L20-26, L170-176, L201-202). Its secret lived in the OS keychain
  (keytar) until twilio-cli 3.0.0 moved keys into config.json (CHANGES.md L1960-1965;
  cli-core 4380dac "Storing profiles in config file instead of keytar"). twilio-cli 4.0.0
  removed keytar and ``profiles:port`` (cli-core 7a37f0b, twilio-cli d00f7ee; CHANGES.md
  L1502-1517), so today's twilio-cli cannot use such a profile either: it asks to re-create it
  (cli-core src/base-commands/twilio-client-command.js L60-63).
- The active profile (``activeProject``) is used only when no ``-p`` is given
  (config.js L81-103). This module never falls back to it: only a named profile is read.
- Region and edge. twilio-cli builds the client with ``region = profile.region`` and
  ``edge = TWILIO_EDGE || profile.edge || <top-level edge>`` (twilio-client-command.js L148-155),
  so the top-level edge (``twilio config:set --edge``) applies only to a profile without its
  own, and an empty string counts as absent (JS ``||``). There is no top-level region.
  A profile's own ``edge`` exists since cli-core 8.2.4 (9f023f4). A region without an edge:
  cli-core 8.2.4 to 8.3.1 (8.3.1 is what twilio-cli 6.2.3 pins, package.json L45) fills in a
  mapped edge at request time (8.3.1 twilio-client-command.js L160-174); 8.3.2 dropped that
  (fadef91) and passes the region alone, as did releases before 8.2.4.
  Here ``edge`` is the profile's edge, else the top-level one, else None (a region alone passes
  through as read); ``TWILIO_EDGE`` is for the CLI layer to apply.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from .errors import ConfigError

__all__ = ["MAX_CONFIG_BYTES", "Profile", "config_path", "read_profile"]

MAX_CONFIG_BYTES = 1_000_000
"""A twilio-cli config.json is a few kilobytes; anything over this is not one."""

_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
_API_KEY_SID = re.compile(r"SK[0-9a-fA-F]{32}")
# Region and edge become hostname labels (taskrouter.{edge}.{region}.twilio.com).
_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_LISTED_NAMES = 20
_SHOWN_NAME_CHARS = 64
_ENV_ALTERNATIVE = "set TWILIO_ACCOUNT_SID, TWILIO_API_KEY and TWILIO_API_SECRET and drop --profile"


@dataclass(frozen=True)
class Profile:
    """Credentials and location from one twilio-cli profile, as read from ``path``."""

    name: str
    account_sid: str
    api_key: str
    api_secret: str = field(repr=False)
    region: str | None
    edge: str | None
    path: Path

    def describe(self, *, home: Path | None = None) -> str:
        """One secret-free line for the plan and audit headers.

        :param home: shown as ``~`` in the path; defaults to ``Path.home()``.
        """
        parts = [
            f"twilio-cli profile {_quote(self.name)} ({_show_path(self.path, home)})",
            f"account {self.account_sid}",
            f"key {self.api_key}",
        ]
        if self.region is not None:
            parts.append(f"region {self.region}")
        if self.edge is not None:
            parts.append(f"edge {self.edge}")
        return ", ".join(parts)


def config_path(env: Mapping[str, str], home: Path) -> Path:
    """Where twilio-cli keeps its config: ``$TWILIO_CONFIG_DIR/config.json`` or ``~/.twilio-cli``."""
    directory = env.get("TWILIO_CONFIG_DIR")
    return (Path(directory) if directory else home / ".twilio-cli") / "config.json"


def read_profile(
    name: str, *, env: Mapping[str, str] | None = None, home: Path | None = None
) -> Profile:
    """Read the twilio-cli profile called ``name``; never the active one by default.

    :param name: the profile id, as given to ``twilio login -p``; surrounding spaces are ignored.
    :param env: where ``TWILIO_CONFIG_DIR`` is looked up; defaults to ``os.environ``.
    :param home: the home directory; defaults to ``Path.home()``.
    :raises ConfigError: the file or the profile cannot give usable credentials.
    """
    environment = os.environ if env is None else env
    wanted = name.strip()
    if not wanted:
        raise ConfigError(
            'give --profile the name of a twilio-cli profile (see "twilio profiles:list")'
        )
    directory = environment.get("TWILIO_CONFIG_DIR")
    if home is None:
        home = _home()
    if home is None and not directory:
        raise ConfigError(
            "cannot tell your home directory, so cannot find twilio-cli's config: "
            "set TWILIO_CONFIG_DIR to the directory that holds config.json"
        )
    # With TWILIO_CONFIG_DIR set, config_path does not use home.
    path = config_path(environment, home if home is not None else Path(str(directory)))
    where = _show_path(path, home)
    text = _read_text(path, where, wanted, from_env=bool(directory))
    return _profile_from(_parse(text, where), wanted, path, where)


def _home() -> Path | None:
    try:
        return Path.home()
    except (RuntimeError, KeyError):
        return None


def _read_text(path: Path, where: str, name: str, *, from_env: bool) -> str:
    """The file's text: read once, regular files only, at most MAX_CONFIG_BYTES."""
    # O_NONBLOCK: a FIFO at the path must not hang the tool; it is then refused as irregular.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        descriptor = os.open(path, flags)
    except (FileNotFoundError, NotADirectoryError):
        source = " (from TWILIO_CONFIG_DIR)" if from_env else ""
        raise ConfigError(
            f"no twilio-cli config at {where}{source}: run {_login(name)} to create the "
            "profile, or drop --profile to use TWILIO_* variables or ./.env"
        ) from None
    except OSError as error:
        raise ConfigError(f"cannot read {where}: {_os_reason(error)}") from None
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise ConfigError(
                f"{where} is not a regular file: point TWILIO_CONFIG_DIR at "
                "twilio-cli's config directory"
            )
        with open(descriptor, "rb", closefd=False) as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"cannot read {where}: {_os_reason(error)}") from None
    finally:
        os.close(descriptor)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{where} is over {MAX_CONFIG_BYTES:,} bytes, far more than a twilio-cli config "
            "holds: check that TWILIO_CONFIG_DIR names twilio-cli's config directory"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        # Raised outside this block below, so that no exception holding the bytes is chained.
        offset = error.start
    raise ConfigError(f"{where} is not UTF-8 text (byte {offset}): fix it or run twilio login")


def _parse(text: str, where: str) -> object:
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as error:
        problem = f"line {error.lineno}, column {error.colno}: {error.msg}"
    except RecursionError:
        problem = "nested too deeply"
    except ValueError:
        problem = "it holds NaN, Infinity or a number too long to read"
    # Raised here, not in the handlers: the decoder's exception holds the whole text.
    raise ConfigError(f"{where} is not valid JSON ({problem}): fix it or run twilio login")


def _no_constant(constant: str) -> object:
    raise ValueError(constant)


def _profile_from(document: object, name: str, path: Path, where: str) -> Profile:
    if not isinstance(document, dict):
        raise ConfigError(
            f"{where} holds {_kind(document)}, not the JSON object twilio-cli writes: "
            "check that TWILIO_CONFIG_DIR names twilio-cli's config directory"
        )
    profiles = _member(document, "profiles", dict, where)
    if name not in profiles:
        _refuse_missing(name, profiles, _member(document, "projects", list, where), where)
    entry = profiles[name]
    subject = f"twilio-cli profile {_quote(name)} in {where}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{subject} is {_kind(entry)}, not an object: {_redo(name)}")
    if _absent(entry.get("apiKey")) or _absent(entry.get("apiSecret")):
        raise ConfigError(
            f"{subject} has no apiKey and apiSecret: re-create it with {_login(name)}, "
            f"or {_ENV_ALTERNATIVE}"
        )
    account_sid = _sid(entry, "accountSid", _ACCOUNT_SID, "an Account SID", subject, name)
    api_key = _sid(entry, "apiKey", _API_KEY_SID, "an API key SID", subject, name)
    api_secret = entry["apiSecret"]
    if not isinstance(api_secret, str):
        raise ConfigError(
            f"{subject}: apiSecret must be a string, not {_kind(api_secret)}: {_redo(name)}"
        )
    region = _label(entry.get("region"), f"{subject}: region", _redo(name))
    edge = _label(entry.get("edge"), f"{subject}: edge", _redo(name))
    if edge is None:
        edge = _label(
            document.get("edge"),
            f"{where}: the top-level edge",
            'fix it with "twilio config:set --edge=<edge>"',
        )
    return Profile(name, account_sid, api_key, api_secret, region, edge, path)


def _member(document: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = document.get(key)
    if value is None:
        return kind()
    if not isinstance(value, kind):
        wanted = "an object" if kind is dict else "an array"
        raise ConfigError(
            f'{where}: "{key}" must be {wanted}, not {_kind(value)}: fix it or run twilio login'
        )
    return value


def _refuse_missing(
    name: str, profiles: dict[str, Any], projects: list[Any], where: str
) -> NoReturn:
    legacy = [
        p["id"].strip() for p in projects if isinstance(p, dict) and isinstance(p.get("id"), str)
    ]
    if name in legacy:
        raise ConfigError(
            f"twilio-cli profile {_quote(name)} in {where} is a legacy profile whose API secret "
            "lives in the OS keychain, which stuck-tasks does not read (nor does twilio-cli 4 "
            f"or later): re-create it with {_login(name)}, which stores the key and secret in "
            f"config.json, or {_ENV_ALTERNATIVE}"
        )
    known = sorted(set(profiles) | set(legacy))
    if not known:
        raise ConfigError(
            f"no twilio-cli profile {_quote(name)} in {where}, which has no profiles: "
            f"run {_login(name)} to create it, or drop --profile"
        )
    shown = ", ".join(_quote(n) for n in known[:_LISTED_NAMES])
    more = f" and {len(known) - _LISTED_NAMES} more" if len(known) > _LISTED_NAMES else ""
    raise ConfigError(
        f"no twilio-cli profile {_quote(name)} in {where}; the profiles there are "
        f'{shown}{more} (see "twilio profiles:list"), or create it with {_login(name)}'
    )


def _sid(
    entry: dict[str, Any], key: str, shape: re.Pattern[str], what: str, subject: str, name: str
) -> str:
    value = entry.get(key)
    prefix = shape.pattern[:2]
    if value is None:
        raise ConfigError(f"{subject} has no {key}: {_redo(name)}")
    if not isinstance(value, str):
        raise ConfigError(f"{subject}: {key} must be a string, not {_kind(value)}: {_redo(name)}")
    if not shape.fullmatch(value):
        raise ConfigError(
            f"{subject}: {key} is not {what} ({prefix} followed by 32 hex digits): {_redo(name)}"
        )
    return value


def _label(value: object, subject: str, remedy: str) -> str | None:
    """A region or edge: absent, null and "" all mean none (twilio-cli uses JS ``||``)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{subject} must be a string, not {_kind(value)}: {remedy}")
    if not _HOST_LABEL.fullmatch(value):
        raise ConfigError(
            f"{subject} is not a region or edge name (letters, digits and inner hyphens, "
            f"such as ie1 or dublin): {remedy}"
        )
    return value


def _absent(value: object) -> bool:
    return value is None or value == ""


def _redo(name: str) -> str:
    return f"fix it or re-create the profile with {_login(name)}"


def _login(name: str) -> str:
    shown = shlex.quote(name) if name.isprintable() else "<name>"
    return f'"twilio login -p {shown}"'


def _kind(value: object) -> str:
    """The JSON type of a decoded value, with its article: "an array", "null"."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null"


def _quote(text: str) -> str:
    """``"text"`` on one line: escapes quotes, backslashes and unprintable characters."""
    clipped = text if len(text) <= _SHOWN_NAME_CHARS else text[:_SHOWN_NAME_CHARS] + "…"
    return '"' + "".join(_escape(ch) for ch in clipped) + '"'


def _escape(ch: str) -> str:
    if ch in '"\\':
        return "\\" + ch
    if ch.isprintable():
        return ch
    return ch.encode("unicode_escape").decode("ascii")


def _show_path(path: Path, home: Path | None) -> str:
    """The path with the home directory as ``~``, printable on one line."""
    if home is None:
        home = _home()
    shown = str(path)
    if home is not None and path.is_relative_to(home):
        shown = os.path.join("~", path.relative_to(home))
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in shown)


def _os_reason(error: OSError) -> str:
    return error.strerror or type(error).__name__
