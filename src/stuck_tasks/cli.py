"""The click layer: options, .env, validation, wiring, rendering, exit codes."""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import click
from dotenv import find_dotenv, load_dotenv
from dotenv.parser import parse_stream

from . import __version__
from .errors import AuthError, ConfigError, StuckTasksError
from .report import (
    EXIT_FATAL,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    render_summary,
    summary_document,
)

DEFAULT_REASON = "Orchestration issue: closed stuck voice Task."
DEFAULT_CONCURRENCY = 25

EPILOG = """\b
Exit codes:
  0    done (a dry run, nothing to do, or every planned task settled)
  1    fatal error (the API failed past all retries, unexpected answers)
  2    usage or configuration error, refused by a guard, no terminal to confirm
  3    finished, but some tasks failed (see the summary and the audit log)
  130  interrupted (Ctrl-C or SIGTERM); the summary says what was done

\b
Examples:
  stuck-tasks --sandbox                 try it against a local emulated Twilio
  stuck-tasks --dry-run                 preview what would be closed, and why
  stuck-tasks                           show the plan, ask, then apply it
  stuck-tasks --yes --json | jq .closed   unattended, machine-readable
"""

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


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
    """Load ``.env`` below the real environment (flag > environment > .env)."""
    path = value or find_dotenv(".env", usecwd=True)
    if not path:
        return
    try:
        with open(path, encoding="utf-8") as stream:
            for binding in parse_stream(stream):
                if binding.error:
                    raise click.BadParameter(
                        f"{path}: line {binding.original.line} does not parse "
                        "(expected NAME=value)",
                        ctx=ctx,
                        param=param,
                    )
    except OSError as error:
        raise click.BadParameter(
            f"cannot read {path}: {error.strerror}", ctx=ctx, param=param
        ) from None
    except UnicodeDecodeError:
        raise click.BadParameter(f"{path} is not UTF-8 text", ctx=ctx, param=param) from None
    load_dotenv(path, override=False)


class ClickUI:
    """Talks to the person on stderr; the summary alone goes to stdout."""

    def __init__(self, *, quiet: bool, plan_to_stdout: bool) -> None:
        self.quiet = quiet
        self.plan_to_stdout = plan_to_stdout
        self.tty = sys.stderr.isatty()
        self._last_plain = 0.0
        self._drawn = False

    def info(self, text: str) -> None:
        if not self.quiet:
            self.progress_done()
            click.echo(text, err=True)

    def show_plan(self, text: str) -> None:
        if self.plan_to_stdout:
            click.echo(text)
        else:
            self.info(text)

    def can_ask(self) -> bool:
        return sys.stdin.isatty()

    def confirm(self, question: str) -> bool:
        return click.confirm(question, default=False, err=True)

    def progress(self, live: Any, metrics: Any, *, phase: str) -> None:
        if self.quiet:
            return
        elapsed = max(time.monotonic() - live.started, 1e-6)
        total = sum(metrics.requests.values())
        rate = total / elapsed
        if phase == "plan":
            line = f"planning: listed {live.listed}, examined {live.examined}, to close {live.to_close}"
            remaining = live.listed - live.examined + live.to_close - live.settled
        else:
            line = f"applying: settled {live.settled}"
            remaining = live.to_close - live.settled
        if live.closed:
            line += f", closed {live.closed}"
        done = live.examined + live.settled
        eta = remaining / (done / elapsed) if done else 0.0
        line += f" | {rate:.0f} req/s | ETA {eta:.0f}s"
        if self.tty:
            click.echo("\r\033[K" + line, err=True, nl=False)
            self._drawn = True
        elif time.monotonic() - self._last_plain >= 5.0:
            self._last_plain = time.monotonic()
            click.echo(line, err=True)

    def progress_done(self) -> None:
        if self._drawn:
            click.echo("\r\033[K", err=True, nl=False)
            self._drawn = False


def _run_id() -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


@click.command(
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="stuck-tasks")
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False),
    is_eager=True,
    expose_value=False,
    callback=_load_env_file,
    help="Read variables from this file instead of ./.env.",
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
@click.option("--task-queue", help="Only tasks in this queue (WQ... SID or name).")
@click.option("--workflow", help="Only tasks of this workflow (WW... SID or name).")
@click.option(
    "--task",
    "task_sids",
    multiple=True,
    callback=_sid("WT", "a task SID"),
    help="Check just this task (repeatable), with a per-task explanation.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Examine at most N open tasks.")
@click.option(
    "--grace",
    type=Duration(),
    default="2m",
    show_default=True,
    help="How long a call must have been over before its task is closed.",
)
@click.option(
    "--channels",
    default="voice",
    show_default=True,
    callback=lambda ctx, param, value: _channels(value),
    help="Which tasks to clean: voice, or voice,messaging (Flex Conversations, via the Interactions API).",
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
    help="Connect and read timeout of each request, in seconds.",
)
@click.option(
    "--deadline",
    type=Duration(),
    default="30m",
    show_default=True,
    help="Give up retrying once the whole run has taken this long.",
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
    "--json", "as_json", is_flag=True, help="Print one JSON document instead of the summary."
)
@click.option("-q", "--quiet", is_flag=True, help="No progress or plan on stderr.")
@click.option(
    "--audit-log",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the JSON Lines audit log here (default: ./stuck-tasks-audit-RUN.jsonl).",
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
    "--base-url",
    envvar="STUCK_TASKS_BASE_URL",
    show_envvar=True,
    help="Send every request to this scheme://host[:port] instead of twilio.com (an emulator or proxy).",
)
def cli(**options: Any) -> None:
    """Close TaskRouter tasks left pending, reserved or assigned after their voice call ended.

    A task is closed only on proof: it is a voice task, its call is over (completed, busy,
    failed, no-answer or canceled) and has been for --grace. Pending and reserved tasks are
    canceled, assigned ones completed, each with If-Match so a task that changed is left alone.
    """
    ctx = click.get_current_context()
    code = _main(options)
    ctx.exit(code)


def _main(options: dict[str, Any]) -> int:
    from .app import Run  # imported here: keeps --help fast

    if options["summarize"] is not None:
        return _summarize(options["summarize"], as_json=options["as_json"])
    sandbox = None
    try:
        if options["sandbox"]:
            sandbox = _start_sandbox(options)
        settings = _settings(options)
        ui = ClickUI(
            quiet=options["quiet"], plan_to_stdout=options["dry_run"] and not options["as_json"]
        )
        outcome = Run(settings, ui).execute()
    except AuthError as error:
        _fail(
            f"Twilio rejected the credentials (HTTP {error.status}, error {error.code}): check the account SID and token or API key/secret, and the region",
            EXIT_USAGE,
        )
        return EXIT_USAGE
    except ConfigError as error:
        _fail(str(error), EXIT_USAGE)
        return EXIT_USAGE
    except StuckTasksError as error:
        _fail(str(error), EXIT_FATAL)
        return EXIT_FATAL
    except KeyboardInterrupt:
        _fail("interrupted; nothing was changed", EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    finally:
        if sandbox is not None:
            sandbox.stop()
    for line in outcome.refusals:
        _fail(f"refused: {line}", EXIT_USAGE)
    if outcome.error is not None:
        _fail(outcome.error, EXIT_FATAL)
    _render(outcome.document, as_json=options["as_json"])
    return outcome.exit_code


def _fail(message: str, code: int) -> None:
    click.echo(f"Error: {message}", err=True)


def _render(document: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(document, sort_keys=True, indent=2))
    else:
        click.echo(render_summary(document))


def _summarize(path: Path, *, as_json: bool) -> int:
    from .audit import read_audit

    try:
        header, lines, footer = read_audit(path)
    except ConfigError as error:
        _fail(str(error), EXIT_USAGE)
        return EXIT_USAGE
    document = summary_document(
        header,
        lines,
        metrics=footer.get("api") if footer else None,
        elapsed=footer.get("elapsed_seconds") if footer else None,
        interrupted=footer.get("status") == "interrupted" if footer else True,
        exit_code=footer.get("exit_code") if footer else None,
        audit_log=str(path),
        in_flight=footer.get("updates_in_flight", ()) if footer else (),
    )
    if footer is None:
        click.echo("Note: the log has no footer; the run ended before it finished.", err=True)
    _render(document, as_json=as_json)
    return 0


def _start_sandbox(options: dict[str, Any]) -> Any:
    from .emulator import sandbox_world

    emulator, world = sandbox_world(n_tasks=options["sandbox_tasks"])
    base_url = emulator.start()
    options.update(
        account_sid=world.account_sid,
        auth_token=world.auth_token,
        api_key=None,
        api_secret=None,
        workspace=world.workspace_sid,
        base_url=base_url,
        region=None,
        edge=None,
    )
    if not options["quiet"]:
        click.echo(
            f"Sandbox: an emulated Twilio at {base_url} with a seeded outage "
            f"({options['sandbox_tasks']} tasks). No real account is touched.",
            err=True,
        )
    return emulator


def _settings(options: dict[str, Any]) -> Any:
    from .app import Settings
    from .gateway import Connection, Credentials
    from .guards import Limits

    account_sid = options["account_sid"]
    api_key, api_secret, token = options["api_key"], options["api_secret"], options["auth_token"]
    if api_key or api_secret:
        if not (api_key and api_secret):
            raise ConfigError("an API key needs both TWILIO_API_KEY and TWILIO_API_SECRET")
        if not account_sid:
            raise ConfigError(
                "an API key needs the account SID too: set TWILIO_ACCOUNT_SID (AC...) "
                "or pass --account-sid"
            )
        credentials = Credentials(api_key, api_secret, account_sid)
    elif account_sid and token:
        credentials = Credentials(account_sid, token, account_sid)
    else:
        raise ConfigError(
            "no Twilio credentials: set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN "
            "(or TWILIO_API_KEY and TWILIO_API_SECRET with TWILIO_ACCOUNT_SID) in the "
            "environment or ./.env, or try it with --sandbox"
        )
    if options["save_plan"] and options["apply_plan"]:
        raise ConfigError("--save-plan and --apply-plan do not go together: save first, then apply")
    if options["apply_plan"] and (options["task_sids"] or options["dry_run"]):
        raise ConfigError("--apply-plan acts on the saved plan's tasks; drop --task and --dry-run")
    if options["include_wrapping"] != (options["wrapping_older_than"] is not None):
        raise ConfigError(
            "--include-wrapping and --wrapping-older-than go together, e.g. "
            "--include-wrapping --wrapping-older-than 30m (there is no default duration)"
        )
    if bool(options["region"]) != bool(options["edge"]):
        raise ConfigError(
            "set --region and --edge together (TWILIO_REGION and TWILIO_EDGE), e.g. ie1 and dublin"
        )
    base_url = options["base_url"]
    if base_url and not re.match(r"^https?://[^/\s]+/?$", base_url):
        raise ConfigError(f"--base-url must look like http://127.0.0.1:8080, not {base_url!r}")
    shown = {
        k: (
            sorted(v)
            if isinstance(v, frozenset)
            else str(v)
            if isinstance(v, timedelta | Path)
            else v
        )
        for k, v in options.items()
        if k not in {"auth_token", "api_secret"}
    }
    return Settings(
        connection=Connection(
            credentials=credentials,
            region=options["region"],
            edge=options["edge"],
            base_url=base_url,
            timeout=options["timeout"],
            pool_size=options["concurrency"],
        ),
        run_id=_run_id(),
        workspace=options["workspace"],
        task_queue=options["task_queue"],
        workflow=options["workflow"],
        task_sids=tuple(options["task_sids"]),
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


def main() -> None:
    """Console entry point."""
    os.environ.setdefault("PYTHONIOENCODING", "utf-8")
    cli(prog_name="stuck-tasks")
