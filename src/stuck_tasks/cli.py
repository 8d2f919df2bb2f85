"""The click layer: options, ``.env``, profiles, validation, the question, rendering, exit codes.

Everything here is about the person at the terminal; the run itself is ``app.Run``, which this
module drives (``execute()``, then ``answer()`` after the question) and whose result it renders.
"""

from __future__ import annotations

import contextlib
import gc
import ipaddress
import json
import logging
import os
import platform
import re
import secrets
import shutil
import signal
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn
from urllib.parse import urlsplit

import click
from click.core import ParameterSource
from dotenv import dotenv_values
from dotenv.parser import parse_stream

from . import __version__
from .errors import AuthError, ConfigError, StuckTasksError
from .report import (
    EXIT_FATAL,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    Display,
    clean,
    render_explain,
    render_plan,
    render_summary,
    summary_document,
    utcnow,
)

DEFAULT_REASON = "Orchestration issue: closed stuck voice Task."
DEFAULT_CONCURRENCY = 25
SANDBOX_SOURCE = "the sandbox (an emulated Twilio on this machine)"

EPILOG = """\b
Exit codes:
  0    done (a dry run, nothing to do, declined, or every planned task settled)
  1    fatal error (the API failed past all retries or the deadline, unexpected answers,
       the audit log could not be written)
  2    usage or configuration: bad option, credentials refused or revoked, a missing
       permission, wrong account, refused by a guard, no terminal to confirm
  3    finished, but some tasks failed or their outcome is unknown (see the summary)
  4    with --detailed-exitcode: a dry run found stuck tasks
  130  interrupted (Ctrl-C, SIGTERM or SIGHUP); the summary says what was done

\b
Examples:
  stuck-tasks --sandbox                 try it against a local emulated Twilio
  stuck-tasks -p prod --dry-run         preview with a twilio-cli profile
  stuck-tasks                           show the plan, ask, then apply it
  stuck-tasks --task WT... --dry-run    explain one task, step by step
  stuck-tasks --yes --json | jq .closed   unattended, machine-readable
"""

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")

# --help groups (click has no option groups of its own; this is the whole helper).
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Credentials",
        (
            "profile",
            "env_file",
            "account_sid",
            "auth_token",
            "api_key",
            "api_secret",
            "region",
            "edge",
        ),
    ),
    ("Scope", ("workspace", "task_queue", "workflow", "task_sids", "limit", "channels")),
    ("Rules", ("grace", "include_wrapping", "wrapping_older_than", "reason")),
    (
        "Safety",
        (
            "dry_run",
            "assume_yes",
            "save_plan",
            "apply_plan",
            "max_plan_age",
            "max_changes",
            "max_lookup_failures",
            "allow_missing_calls",
            "detailed_exitcode",
        ),
    ),
    ("Speed", ("concurrency", "timeout", "deadline")),
    ("Output", ("as_json", "quiet", "verbose", "audit_log", "summarize")),
    ("Sandbox and testing", ("sandbox", "sandbox_tasks", "sandbox_seed", "base_url")),
)


class GroupedCommand(click.Command):
    """A command whose ``--help`` lists its options under the headings of ``GROUPS``."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        records = {
            p.name: p.get_help_record(ctx) for p in self.get_params(ctx) if p.name is not None
        }
        placed: set[str] = set()
        for title, names in GROUPS:
            rows = [records[n] for n in names if records.get(n)]
            placed.update(names)
            if rows:
                with formatter.section(title):
                    formatter.write_dl([r for r in rows if r is not None])
        rest = [r for n, r in records.items() if n not in placed and r is not None]
        if rest:
            with formatter.section("Other"):
                formatter.write_dl(rest)


class Duration(click.ParamType):  # type: ignore[type-arg,unused-ignore]
    """``90``, ``90s``, ``2m``, ``1h30m``: a non-negative duration."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:
        if isinstance(value, timedelta):
            return value
        text = str(value).strip().lower()
        if text.startswith("-"):
            self.fail(f"{value!r} is negative; give a duration such as 2m or 90s", param, ctx)
        if text.isdigit():
            return timedelta(seconds=int(text))
        match = _DURATION.match(text)
        if not text or match is None or not any(match.groups()):
            self.fail(f"{value!r} is not a duration such as 90s, 2m or 1h30m", param, ctx)
        hours, minutes, seconds = (int(g or 0) for g in match.groups())
        return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def _sid(prefix: str, what: str) -> Any:
    pattern = re.compile(rf"^{prefix}[0-9a-fA-F]{{32}}$")

    def check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        values = value if isinstance(value, tuple) else (value,)
        for item in values:
            if item is not None and item != "" and not pattern.match(item):
                raise click.BadParameter(f"expected {what} ({prefix} followed by 32 hex digits)")
        return value

    return check


def _channels(value: str) -> frozenset[str]:
    chosen = frozenset(part.strip() for part in value.split(",") if part.strip())
    unknown = chosen - {"voice", "messaging"}
    if unknown or "voice" not in chosen:
        raise click.BadParameter(f"{value!r}: choose voice, or voice,messaging")
    return chosen


def _load_env_file(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """Load ``./.env`` (or ``--env-file``) below the real environment.

    Only the working folder's ``.env`` is read (never a parent's: a stray ``.env`` of another
    account must not be picked up). ``ctx.meta`` remembers which variables it supplied, so the
    plan and audit headers can name the credentials' source.
    """
    path = Path(value) if value else Path(".env")
    if value is None and not path.is_file():
        return
    try:
        with path.open(encoding="utf-8") as stream:
            for binding in parse_stream(stream):
                if binding.error:
                    raise click.BadParameter(
                        f"{path}: line {binding.original.line} does not parse "
                        "(expected NAME=value)",
                        ctx=ctx,
                        param=param,
                    )
        values = dotenv_values(path)
    except OSError as error:
        raise click.BadParameter(
            f"cannot read {path}: {error.strerror}", ctx=ctx, param=param
        ) from None
    except UnicodeDecodeError:
        raise click.BadParameter(f"{path} is not UTF-8 text", ctx=ctx, param=param) from None
    supplied = {}
    for name, setting in values.items():
        if setting is not None and name not in os.environ:
            os.environ[name] = setting
            supplied[name] = str(path) if value else "./.env"
    ctx.meta["stuck_tasks.dotenv"] = supplied


def _version(ctx: click.Context, param: click.Parameter, value: bool) -> None:  # noqa: FBT001
    if not value or ctx.resilient_parsing:
        return
    try:
        from importlib.metadata import version

        twilio = version("twilio")
    except Exception:
        twilio = "unknown"
    click.echo(
        f"stuck-tasks {__version__} (twilio {twilio}, click {version('click')}, "
        f"Python {platform.python_version()})"
    )
    ctx.exit(0)


@click.command(
    cls=GroupedCommand,
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_version,
    help="Show the version (with twilio's and Python's) and exit.",
)
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False),
    is_eager=True,
    expose_value=False,
    callback=_load_env_file,
    help="Read variables from this file instead of ./.env (only the working folder's).",
)
@click.option(
    "-p",
    "--profile",
    metavar="NAME",
    help="Use this twilio-cli profile (twilio login); a flag beats it, it beats the environment.",
)
@click.option(
    "--account-sid",
    envvar="TWILIO_ACCOUNT_SID",
    show_envvar=True,
    callback=_sid("AC", "an account SID"),
    help="Twilio account SID (AC...).",
)
@click.option(
    "--auth-token",
    envvar="TWILIO_AUTH_TOKEN",
    show_envvar=True,
    help="Auth token. Prefer the variable: flags end up in shell history.",
)
@click.option(
    "--api-key",
    envvar="TWILIO_API_KEY",
    show_envvar=True,
    callback=_sid("SK", "an API key SID"),
    help="API key SID (SK...), used with --api-secret and --account-sid.",
)
@click.option("--api-secret", envvar="TWILIO_API_SECRET", show_envvar=True, help="API key secret.")
@click.option(
    "--region",
    envvar="TWILIO_REGION",
    show_envvar=True,
    help="Twilio region, e.g. ie1 (set --edge too).",
)
@click.option("--edge", envvar="TWILIO_EDGE", show_envvar=True, help="Twilio edge, e.g. dublin.")
@click.option(
    "-w",
    "--workspace",
    envvar="TWILIO_WORKSPACE_SID",
    show_envvar=True,
    help="Workspace SID (WS...) or friendly name. Default: the account's only workspace.",
)
@click.option("--task-queue", help="Only tasks in this queue (WQ... SID or exact name).")
@click.option("--workflow", help="Only tasks of this workflow (WW... SID or exact name).")
@click.option(
    "--task",
    "task_sids",
    multiple=True,
    callback=_sid("WT", "a task SID"),
    help="Check just this task (repeatable), explained step by step.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Examine at most N open tasks.")
@click.option(
    "--channels",
    default="voice",
    show_default=True,
    callback=lambda ctx, param, value: _channels(value),
    help="Which tasks to clean: voice, or voice,messaging (Flex Conversations, via the Interactions API).",
)
@click.option(
    "--grace",
    type=Duration(),
    default="2m",
    show_default=True,
    help="How long a call must have been over (on Twilio's clock) before its task is closed.",
)
@click.option(
    "--include-wrapping",
    is_flag=True,
    help="Also complete voice tasks abandoned in wrap-up (needs --wrapping-older-than).",
)
@click.option(
    "--wrapping-older-than",
    type=Duration(),
    help="With --include-wrapping: complete wrap-ups older than this (from the call's end).",
)
@click.option(
    "--reason",
    default=DEFAULT_REASON,
    show_default=True,
    help="Reason written to each closed task (the run id is appended).",
)
@click.option("-n", "--dry-run", is_flag=True, help="Plan and show, change nothing.")
@click.option(
    "-y",
    "--yes",
    "assume_yes",
    is_flag=True,
    help="Apply without asking (closing may overlap planning).",
)
@click.option(
    "--save-plan",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the plan (tasks to close, with evidence) to FILE and change nothing.",
)
@click.option(
    "--apply-plan",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Act on exactly the tasks of a saved plan, re-checking each one first.",
)
@click.option(
    "--max-plan-age",
    type=Duration(),
    default="1h",
    show_default=True,
    help="Refuse a saved plan older than this.",
)
@click.option(
    "--max-changes",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="Refuse to apply a plan that closes more tasks than this.",
)
@click.option(
    "--max-lookup-failures",
    type=click.FloatRange(0, 1),
    default=0.1,
    show_default=True,
    help="Refuse when more than this share of call lookups failed (API unhealthy).",
)
@click.option(
    "--allow-missing-calls",
    is_flag=True,
    help="Do not refuse when nearly every call lookup is a 404 (wrong account?).",
)
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="With --dry-run: exit 4 when stuck tasks were found, 0 when none (for monitoring).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1, max=1000),
    default=DEFAULT_CONCURRENCY,
    show_default=True,
    help="Most requests in flight; lowered automatically on 429.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1, max=600),
    default=15.0,
    show_default=True,
    help="The longest one request may take, answer included, in seconds.",
)
@click.option(
    "--deadline",
    type=Duration(),
    default="30m",
    show_default=True,
    help="Stop the run once it has taken this long (in-flight writes settle).",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON document instead of the summary."
)
@click.option("-q", "--quiet", is_flag=True, help="No progress or plan on stderr.")
@click.option(
    "-v", "--verbose", is_flag=True, help="One line per request on stderr (never a secret)."
)
@click.option(
    "--audit-log",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the JSON Lines audit log here (default: ./stuck-tasks-audit-RUN.jsonl).",
)
@click.option(
    "--summarize",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Re-print the summary of a past run from its audit log; needs no credentials.",
)
@click.option(
    "--sandbox", is_flag=True, help="Run against a built-in emulated Twilio with a seeded outage."
)
@click.option(
    "--sandbox-tasks",
    type=click.IntRange(min=1, max=50000),
    default=300,
    show_default=True,
    help="How many tasks the sandbox seeds.",
)
@click.option(
    "--sandbox-seed",
    type=click.IntRange(min=0),
    help="Seed the sandbox so its SIDs are the same each time (rehearse --task, saved plans).",
)
@click.option(
    "--base-url",
    envvar="STUCK_TASKS_BASE_URL",
    show_envvar=True,
    help="Send every request to this https:// (or loopback http://) address instead of twilio.com.",
)
def cli(**options: Any) -> None:
    """Close TaskRouter tasks left pending, reserved or assigned after their call ended.

    A task is closed only on proof: its call (or conference) is over, and has been for --grace
    on Twilio's clock. Pending and reserved tasks are canceled, assigned ones completed, each
    with If-Match so a task that changed is left alone. The plan is shown first and the
    question defaults to No.
    """
    ctx = click.get_current_context()
    _check_combinations(ctx, options)
    ctx.exit(_main(ctx, options))


# ------------------------------------------------------------------ option rules


def _given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)


def _check_combinations(ctx: click.Context, o: dict[str, Any]) -> None:
    """Options that cannot go together are click usage errors (exit 2, nothing sent)."""

    def refuse(message: str) -> NoReturn:
        raise click.UsageError(message, ctx=ctx)

    if o["summarize"] is not None:
        extra = [
            f"--{n.replace('_', '-')}"
            for n in ctx.params
            if n not in ("summarize", "as_json", "quiet", "verbose")
            and ctx.get_parameter_source(n) is ParameterSource.COMMANDLINE
        ]
        if extra:
            refuse(f"--summarize reads a past run's log; it does not go with {', '.join(extra)}")
    if o["task_sids"]:
        for name in ("task_queue", "workflow", "limit"):
            if _given(ctx, name):
                refuse(f"--task checks exactly the tasks named; drop --{name.replace('_', '-')}")
    if o["apply_plan"] is not None:
        for name in ("task_sids", "dry_run", "save_plan", "task_queue", "workflow", "limit"):
            if o[name]:
                refuse(
                    "--apply-plan acts on the saved plan's tasks; drop "
                    f"--{name.replace('_', '-').replace('task-sids', 'task')}"
                )
    if o["include_wrapping"] != (o["wrapping_older_than"] is not None):
        refuse(
            "--include-wrapping and --wrapping-older-than go together, e.g. "
            "--include-wrapping --wrapping-older-than 30m (there is no default duration)"
        )
    if o["detailed_exitcode"] and not (o["dry_run"] or o["save_plan"]):
        refuse("--detailed-exitcode is for checks: use it with --dry-run (or --save-plan)")
    if o["sandbox_seed"] is not None and not o["sandbox"]:
        refuse("--sandbox-seed seeds the sandbox: add --sandbox")
    if o["sandbox"]:
        for name in ("profile", "base_url", "account_sid", "auth_token", "api_key", "api_secret"):
            if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE:
                refuse(f"--sandbox brings its own account; drop --{name.replace('_', '-')}")


def _base_url(value: str | None) -> str | None:
    """Credentials go only to Twilio or to an emulator on this machine."""
    if not value:
        return None
    parts = urlsplit(value.strip())
    if parts.username or parts.password or "@" in parts.netloc:
        raise ConfigError("--base-url must not hold credentials (user:password@); nothing was sent")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise ConfigError(
            f"--base-url must look like https://host[:port] or http://127.0.0.1:PORT, not {clean(value)!r}"
        )
    if parts.query or parts.fragment:
        raise ConfigError("--base-url takes no query or fragment")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise ConfigError(
            f"--base-url {clean(value)} would send the credentials unencrypted to another machine: "
            "use https://, or http:// only on a loopback address (127.0.0.1, ::1, localhost); "
            "nothing was sent"
        )
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"--base-url has an invalid port: {clean(value)!r}") from None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}"


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ------------------------------------------------------------------ credentials


def _source_of(ctx: click.Context, name: str, variable: str) -> str:
    source = ctx.get_parameter_source(name)
    if source is ParameterSource.COMMANDLINE:
        return "flags"
    supplied: Mapping[str, str] = ctx.meta.get("stuck_tasks.dotenv", {})
    if variable in supplied:
        return supplied[variable]
    return "the environment"


def _credentials(ctx: click.Context, o: dict[str, Any]) -> Any:
    from .settings import Credentials

    if o.get("_sandbox_credentials") is not None:
        return o["_sandbox_credentials"]
    flags = {
        n
        for n in ("account_sid", "auth_token", "api_key", "api_secret")
        if ctx.get_parameter_source(n) is ParameterSource.COMMANDLINE
    }
    if o["profile"] is not None and not flags:
        from .profiles import read_profile

        profile = read_profile(o["profile"])
        return Credentials(
            profile.api_key, profile.api_secret, profile.account_sid, source=profile.describe()
        )
    account_sid = o["account_sid"]
    api_key, api_secret, token = o["api_key"], o["api_secret"], o["auth_token"]
    if api_key or api_secret:
        if not (api_key and api_secret):
            raise ConfigError("an API key needs both TWILIO_API_KEY and TWILIO_API_SECRET")
        if not account_sid:
            raise ConfigError(
                "an API key needs the account SID too: set TWILIO_ACCOUNT_SID (AC...) "
                "or pass --account-sid"
            )
        sources = {_source_of(ctx, "api_secret", "TWILIO_API_SECRET")}
        sources.add(_source_of(ctx, "account_sid", "TWILIO_ACCOUNT_SID"))
        return Credentials(api_key, api_secret, account_sid, source=" and ".join(sorted(sources)))
    if account_sid and token:
        sources = {
            _source_of(ctx, "auth_token", "TWILIO_AUTH_TOKEN"),
            _source_of(ctx, "account_sid", "TWILIO_ACCOUNT_SID"),
        }
        return Credentials(account_sid, token, account_sid, source=" and ".join(sorted(sources)))
    raise ConfigError(
        "no Twilio credentials: set TWILIO_ACCOUNT_SID with TWILIO_API_KEY and TWILIO_API_SECRET "
        "(or TWILIO_AUTH_TOKEN) in the environment or ./.env, name a twilio-cli profile with "
        "-p, or try it with --sandbox"
    )


def _region_edge(ctx: click.Context, o: dict[str, Any]) -> tuple[str | None, str | None]:
    region, edge = o["region"], o["edge"]
    if o["profile"] is not None and o.get("_sandbox_credentials") is None:
        from .profiles import read_profile

        profile = read_profile(o["profile"])
        if ctx.get_parameter_source("region") is not ParameterSource.COMMANDLINE:
            region = profile.region or region
        if ctx.get_parameter_source("edge") is not ParameterSource.COMMANDLINE:
            edge = profile.edge or edge
    if bool(region) != bool(edge):
        raise ConfigError(
            "set --region and --edge together (TWILIO_REGION and TWILIO_EDGE, or both in the "
            "profile), e.g. ie1 and dublin: Twilio retired region-only hostnames"
        )
    for value in (region, edge):
        if value and not re.fullmatch(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?", value):
            raise ConfigError(f"{clean(value)!r} is not a Twilio region or edge name")
    return region, edge


# ------------------------------------------------------------------ the run


def _settings(ctx: click.Context, options: dict[str, Any]) -> Any:
    from .guards import Limits
    from .settings import Connection, Settings

    credentials = _credentials(ctx, options)
    region, edge = _region_edge(ctx, options)
    base_url = _base_url(options["base_url"])
    shown = {
        k: (
            sorted(v)
            if isinstance(v, frozenset)
            else str(v)
            if isinstance(v, timedelta | Path)
            else v
        )
        for k, v in options.items()
        if k not in {"auth_token", "api_secret", "_sandbox_credentials"}
    }
    return Settings(
        connection=Connection(
            credentials=credentials,
            region=region,
            edge=edge,
            base_url=base_url,
            timeout=options["timeout"],
            pool_size=options["concurrency"],
        ),
        run_id=_run_id(),
        workspace=options["workspace"],
        task_queue=options["task_queue"],
        workflow=options["workflow"],
        task_sids=tuple(dict.fromkeys(options["task_sids"])),
        limit=options["limit"],
        grace=options["grace"],
        messaging="messaging" in options["channels"],
        wrapping_after=options["wrapping_older_than"],
        concurrency=options["concurrency"],
        deadline=options["deadline"].total_seconds() or 1.0,
        reason=options["reason"],
        dry_run=options["dry_run"],
        assume_yes=options["assume_yes"],
        audit_log=options["audit_log"],
        limits=Limits(
            max_changes=options["max_changes"],
            max_lookup_failure_share=options["max_lookup_failures"],
            allow_missing_calls=options["allow_missing_calls"],
        ),
        save_plan=options["save_plan"],
        apply_plan=options["apply_plan"],
        max_plan_age=options["max_plan_age"],
        options=shown,
    )


def _run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


class _Out:
    """stdout that a closed pipe (``| head``) cannot break: the run's outcome never changes."""

    def __init__(self) -> None:
        self.broken = False

    def echo(self, text: str) -> None:
        if self.broken:
            return
        try:
            click.echo(text)
            sys.stdout.flush()
        except BrokenPipeError:
            self.broken = True
            # Point stdout at /dev/null so the interpreter's final flush does not fail too.
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, sys.stdout.fileno())
            except (OSError, ValueError):
                pass
            finally:
                os.close(devnull)


def _err(message: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # the terminal is gone: the log has it
        click.echo(f"Error: {clean(message)}", err=True)


def _width(stream: Any) -> int | None:
    """The width of the terminal ``stream`` writes to; None off a terminal (lines stay whole)."""
    try:
        if not stream.isatty():
            return None
    except (AttributeError, ValueError, OSError):
        return None
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return max(40, int(columns))
    try:
        return max(40, os.get_terminal_size(stream.fileno()).columns)
    except (AttributeError, ValueError, OSError):
        return max(40, shutil.get_terminal_size((80, 24)).columns)


def _main(ctx: click.Context, options: dict[str, Any]) -> int:
    if options["summarize"] is not None:
        return _summarize(options["summarize"], as_json=options["as_json"])
    out = _Out()
    if options["verbose"]:
        _verbose()
    stdin_tty = sys.stdin.isatty()
    interactive = not (options["assume_yes"] or options["dry_run"] or options["save_plan"])
    if interactive and not stdin_tty:
        _err(
            "standard input is not a terminal, so there is no one to confirm: re-run with "
            "--yes to apply the plan, or with --dry-run to only preview it; nothing was changed"
        )
        return EXIT_USAGE
    sandbox = None
    stderr_width = _width(sys.stderr)
    display = Display(
        sys.stderr,
        quiet=options["quiet"],
        tty=stderr_width is not None and not options["verbose"],
        width=stderr_width,
    )
    try:
        if options["sandbox"]:
            sandbox = _start_sandbox(options, display)
        settings = _settings(ctx, options)
        from .app import Question, Run

        run = Run(settings, display)
        step = run.execute()
        if isinstance(step, Question):
            display.show(
                render_plan(
                    step.plan,
                    now=utcnow(),
                    target=step.target,
                    width=stderr_width,
                    refusals=step.refusals,
                )
            )
            step = run.answer(_ask(step.text))
    except AuthError as error:
        _err(
            f"Twilio refused the credentials (HTTP {error.status}, error {error.code}): check the "
            "account SID and the token or API key and secret, and the region; nothing was changed"
        )
        return EXIT_USAGE
    except ConfigError as error:
        _err(str(error))
        return EXIT_USAGE
    except StuckTasksError as error:
        _err(f"{error}; nothing was changed")
        return EXIT_FATAL
    except KeyboardInterrupt:
        _err("interrupted; nothing was changed")
        return EXIT_INTERRUPTED
    finally:
        if sandbox is not None:
            sandbox.stop()
    for message in step.messages:
        _err(message)
    _render(step, out, as_json=options["as_json"])
    return step.exit_code


def _ask(question: str) -> Any:
    from .app import Answer

    try:
        return Answer.YES if click.confirm(question, default=False, err=True) else Answer.NO
    except (click.Abort, KeyboardInterrupt, EOFError):
        return Answer.INTERRUPTED


def _render(result: Any, out: _Out, *, as_json: bool) -> None:
    if as_json:
        out.echo(json.dumps(result.document, sort_keys=True, indent=2))
        return
    width = _width(sys.stdout)
    if result.explain is not None:
        out.echo(render_explain(result.explain, result.results, width=width))
        out.echo("")
    elif (
        result.plan is not None
        and result.target is not None
        and result.document["status"] == "dry-run"
    ):
        out.echo(
            render_plan(
                result.plan,
                now=utcnow(),
                target=result.target,
                width=width,
                refusals=result.document["guards"]["refusals"],
            )
        )
    out.echo(render_summary(result.document, width=width))


def _verbose() -> None:
    logger = logging.getLogger("stuck_tasks.http")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _summarize(path: Path, *, as_json: bool) -> int:
    from .audit import read_audit
    from .report import Tally

    try:
        header, lines, footer, cut = read_audit(path)
    except ConfigError as error:
        _err(str(error))
        return EXIT_USAGE
    tally = Tally()
    for line in lines:
        tally.add(line)
    footer = footer or {}
    status = footer.get("status") or "interrupted"
    code = footer.get("exit_code")
    document = summary_document(
        header,
        tally,
        status=status if isinstance(status, str) else "interrupted",
        exit_code=code if isinstance(code, int) else EXIT_INTERRUPTED,
        metrics=footer.get("api") if isinstance(footer.get("api"), dict) else None,
        elapsed=footer.get("elapsed_seconds")
        if isinstance(footer.get("elapsed_seconds"), int | float)
        else None,
        audit_log=str(path),
        in_flight=_strings(footer.get("updates_in_flight")),
        not_logged=_strings(footer.get("not_in_audit_log")),
        refusals=_strings(
            footer.get("guards", {}).get("refusals")
            if isinstance(footer.get("guards"), dict)
            else None
        ),
        error=footer.get("error") if isinstance(footer.get("error"), str) else None,
    )
    if not footer:
        _err_note("the log has no footer; the run ended before it finished")
    if cut:
        _err_note("the log's last line was cut off half-way (the disk filled?) and was skipped")
    _render_summary_only(document, as_json=as_json)
    return 0


def _strings(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _err_note(message: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        click.echo(f"Note: {message}.", err=True)


def _render_summary_only(document: dict[str, Any], *, as_json: bool) -> None:
    out = _Out()
    if as_json:
        out.echo(json.dumps(document, sort_keys=True, indent=2))
    else:
        out.echo(render_summary(document, width=_width(sys.stdout)))


def _start_sandbox(options: dict[str, Any], display: Display) -> Any:
    from .emulator import sandbox_world
    from .settings import Credentials

    seed = options["sandbox_seed"]
    emulator, world = sandbox_world(
        n_tasks=options["sandbox_tasks"], seed=seed or 0, fixed_sids=seed is not None
    )
    base_url = emulator.start()
    options.update(
        _sandbox_credentials=Credentials(
            world.account_sid, world.auth_token, world.account_sid, source=SANDBOX_SOURCE
        ),
        profile=None,
        workspace=world.workspace_sid,
        base_url=base_url,
        region=None,
        edge=None,
    )
    display.notice(
        f"Sandbox: an emulated Twilio at {base_url} with a seeded outage "
        f"({options['sandbox_tasks']} tasks{f', seed {seed}' if seed is not None else ''}). "
        "No real account is touched."
    )
    return emulator


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Console entry point."""
    os.environ.setdefault("PYTHONIOENCODING", "utf-8")
    # A run makes a few short-lived objects per request, nearly all freed by reference counting;
    # at the default threshold (a pass per 700 net allocations) the cyclic collector spent about
    # 5 % of the CPU re-scanning the run's long-lived records. Start-up's objects (modules,
    # classes) are frozen out of its scans.
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    # Outside a phase (at the question, say) SIGTERM and SIGHUP end the run like Ctrl-C does,
    # so the audit footer is still written; during a phase the run's own handlers take over.
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _interrupt)
    if hasattr(signal, "SIGXFSZ"):
        # A file-size limit then fails the write (EFBIG) instead of killing the process.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    cli(prog_name="stuck-tasks")
