"""Fuzz the installed command through the mutating proxy: hostile answers must not break promises.

For each generated case: a small seeded post-outage workspace behind the emulator, a proxy in
front of it with a Plan of 1-3 rules, and one real run of ``stuck-tasks --yes --json`` as a
subprocess through the proxy. Whatever the answers, the run must:

- end (no hang) with a documented exit code, without a traceback, any error in one line;
- close no task without proof (``wrong_closures``, see ``wrong_closes``);
- keep a true record: the audit log's ``closed`` tasks are exactly the tasks Twilio changed (or,
  without a log, stdout names each), and the ``--json`` summary's ``closed`` is their number;
- never follow a ``next_page_url`` to a foreign host.

Budget: two tests (voice only; voice and messaging) of ``EXAMPLES`` cases each, a workspace of
``N_TASKS`` tasks in pages of ``PAGE_SIZE``; with ``-n 2`` they run side by side. Generation is
derandomized and there is no example database, so CI sees the same plans every time (which task
the n-th request touches still depends on the tool's concurrency). Shrinking is off: a case is
1-3 readable rules already, and a hang costs the full ``HARD_TIMEOUT`` per try.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from conftest import World, make_world, stuck_tasks_command
from fault_scenarios import wrong_closures
from mutating_proxy import (
    EACH,
    Always,
    DeepNesting,
    DeleteKey,
    Drop,
    EmptyBody,
    Every,
    Exchange,
    Html,
    HugeBody,
    MutatingProxy,
    Mutation,
    NextPage,
    Nth,
    NullEverywhere,
    Plan,
    Repeat,
    Rule,
    Select,
    SetHeader,
    SetValue,
    Status,
    Trickle,
    Truncate,
)
from stuck_tasks.emulator import EXTRA_KINDS, Emulator, Faults

EXAMPLES = 12
N_TASKS = 30
PAGE_SIZE = 10
HARD_TIMEOUT = 60.0
DOCUMENTED_EXIT_CODES = {0, 1, 2, 3, 130}
CLOSED = {"canceled", "completed"}
ARGS = (
    "--yes",
    "--json",
    "--timeout",
    "2",
    "--deadline",
    "40s",
    "--max-changes",
    "100000",
)

# ---------------------------------------------------------------- strategies

# Request kinds a voice run makes, and the Interactions ones a messaging run adds.
VOICE_KINDS = (
    "list_tasks",
    "fetch_task",
    "update_task",
    "fetch_call",
    "list_conferences",
    "fetch_workspace",
    "fetch_account",
)
MESSAGING_KINDS = ("interactions", "fetch_channel", "list_participants", "update_participant")

# Paths worth garbling, across the shapes of every answer the tool reads.
PATHS: tuple[tuple[str | int, ...], ...] = (
    ("attributes",),
    ("assignment_status",),
    ("task_channel_unique_name",),
    ("sid",),
    ("status",),
    ("end_time",),
    ("date_updated",),
    ("date_created",),
    ("age",),
    ("friendly_name",),
    ("account_sid",),
    ("tasks",),
    ("tasks", EACH),
    ("tasks", EACH, "sid"),
    ("tasks", EACH, "assignment_status"),
    ("tasks", EACH, "task_channel_unique_name"),
    ("tasks", 0),
    ("meta",),
    ("meta", "next_page_url"),
    ("meta", "key"),
    ("conferences",),
    ("conferences", EACH, "status"),
    ("participants",),
    ("participants", EACH, "routing_properties"),
    ("routing_properties",),
    ("zz_unknown",),
)

# No bare strings: a string of the right shape could be a plausible lie ("completed"), which
# no client can tell from the truth. Every value here is of another type or shape.
LEAVES = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=6)
SHAPES = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
WRONG_VALUES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.lists(SHAPES, max_size=3)
    | st.dictionaries(st.text(max_size=6), SHAPES, max_size=3)
    | st.just({"call_sid": "CA" + "0" * 32})  # attributes as an object instead of a string
    | st.just([{"sid": "WT" + "0" * 32}])
)

JSON_MUTATIONS = st.one_of(
    st.builds(SetValue, st.sampled_from(PATHS), WRONG_VALUES),
    st.builds(DeleteKey, st.sampled_from(PATHS)),
    st.just(NullEverywhere()),
    st.builds(NextPage, st.sampled_from(["same", "foreign"])),
    st.builds(SetHeader, st.just("ETag"), st.none() | st.just("")),
)
BODY_MUTATIONS = st.one_of(
    st.just(DeepNesting()),
    st.builds(Truncate, st.integers(0, 3000)),
    st.just(Html()),
    st.just(EmptyBody()),
    st.builds(
        Status,
        st.sampled_from([500, 502, 429, 401, 403, 404]),
        st.sampled_from(["keep", "twilio", "empty"]),
    ),
    st.just(Repeat()),
)
# Slow or heavy: applied to one request (or every few), never to all of them.
TRANSPORT_MUTATIONS = st.one_of(
    st.builds(Trickle, st.integers(4, 16), st.just(0.5)),
    st.builds(Drop, st.sampled_from(["unsent", "before_answer", "mid_body"])),
    st.just(HugeBody(megabytes=20)),
)


def whens(*, cheap: bool) -> st.SearchStrategy[Nth | Every | Always]:
    rare = st.builds(Nth, st.integers(1, 30)) | st.builds(Every, st.integers(4, 10))
    if not cheap:
        return rare
    return rare | st.builds(Every, st.integers(2, 3)) | st.just(Always())


@st.composite
def rules(draw: st.DrawFn, kinds: tuple[str, ...]) -> Rule:
    kind = draw(st.sampled_from((*kinds, None)))
    mutation: Mutation = draw(JSON_MUTATIONS | BODY_MUTATIONS | TRANSPORT_MUTATIONS)
    cheap = not isinstance(mutation, (Trickle, Drop, HugeBody))
    return Rule(Select(kind, when=draw(whens(cheap=cheap))), mutation)


def plans(kinds: tuple[str, ...]) -> st.SearchStrategy[Plan]:
    return st.builds(Plan, st.lists(rules(kinds), min_size=1, max_size=3).map(tuple))


# ---------------------------------------------------------------- one run and its verdict


@dataclass(frozen=True)
class Case:
    seed: int
    messaging: bool
    plan: Plan


@dataclass
class Run:
    """What one run did, as the process, the emulator and the proxy saw it."""

    case: Case
    exit_code: int | None  # None: killed after HARD_TIMEOUT
    stdout: str
    stderr: str
    seconds: float
    changed: set[str]  # tasks Twilio closed: Task API writes and Interactions API writes
    wrong: list[str]
    audit_closed: set[str] | None  # None: no audit log was written
    audit_problem: str | None
    exchanges: list[Exchange] = field(default_factory=list)

    def applied(self) -> list[str]:
        return [
            f"#{e.seq} {e.method} {e.kind} -> rule {e.rule} {e.mutation}"
            for e in self.exchanges
            if e.mutation is not None and not e.note
        ]

    def summary(self) -> dict[str, Any] | None:
        try:
            doc = json.loads(self.stdout)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None


def closed_by_emulator(emu: Emulator) -> set[str]:
    closed = {m.task_sid for m in emu.mutations if m.after_status in CLOSED}
    for write in emu.flex_writes:
        closed |= {c.task_sid for c in write.task_changes if c.after in CLOSED}
    return closed


def wrong_closes(world: World) -> list[str]:
    """``wrong_closures``, which knows call evidence only, plus the seed's word on the rest.

    A task the seed made closable on conference evidence (``conference_by_name_ended``, ...) is
    flagged by ``wrong_closures`` for its missing call; it is right when closed to its seeded
    verdict. An Interactions write is right only for a task seeded ``close-interaction``.
    """
    assert world.seed is not None
    kinds, expected = world.seed.kinds, world.seed.expected
    due = {"cancel": "canceled", "complete": "completed"}
    after = {m.task_sid: m.after_status for m in world.emu.mutations}
    wrong = [
        sid
        for sid in wrong_closures(world.emu)
        if not (kinds.get(sid) in EXTRA_KINDS and due.get(expected[sid]) == after[sid])
    ]
    for write in world.emu.flex_writes:
        wrong += [
            c.task_sid
            for c in write.task_changes
            if c.after in CLOSED and expected.get(c.task_sid) != "close-interaction"
        ]
    return sorted(wrong)


def read_closed(path: Path) -> tuple[set[str] | None, str | None]:
    """Task SIDs the audit log calls closed; None when there is no log (with the reason)."""
    if not path.exists() or not path.read_text(encoding="utf-8").strip():
        return None, None
    closed: set[str] = set()
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            line = json.loads(raw)
        except ValueError:
            return closed, f"audit log line {number} is not JSON: {raw[:80]!r}"
        if line.get("type") == "task" and line.get("outcome") == "closed":
            closed.add(line["task_sid"])
    return closed, None


def run_case(case: Case, workdir: Path) -> Run:
    kinds = "all" if case.messaging else "voice"
    world: World = make_world(
        Faults(max_page_size=PAGE_SIZE), n_tasks=N_TASKS, seed=case.seed, kinds=kinds
    )
    audit = workdir / f"audit-{time.monotonic_ns()}.jsonl"
    try:
        with MutatingProxy(world.emu.base_url, case.plan) as proxy:
            args = [*ARGS, "--audit-log", str(audit), "--base-url", proxy.base_url]
            if case.messaging:
                args += ["--channels", "voice,messaging"]
            started = time.monotonic()
            try:
                done = subprocess.run(
                    [stuck_tasks_command(), *args],
                    env=world.process_env(STUCK_TASKS_BASE_URL=proxy.base_url),
                    capture_output=True,
                    text=True,
                    timeout=HARD_TIMEOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=workdir,
                    check=False,
                )
                code, out, err = done.returncode, done.stdout, done.stderr
            except subprocess.TimeoutExpired as hung:
                code = None
                out = _text(hung.stdout)
                err = _text(hung.stderr)
            seconds = time.monotonic() - started
        audit_closed, audit_problem = read_closed(audit)
        return Run(
            case=case,
            exit_code=code,
            stdout=out,
            stderr=err,
            seconds=seconds,
            changed=closed_by_emulator(world.emu),
            wrong=wrong_closes(world),
            audit_closed=audit_closed,
            audit_problem=audit_problem,
            exchanges=proxy.log,
        )
    finally:
        world.emu.stop()


def _text(raw: str | bytes | None) -> str:
    if isinstance(raw, bytes):
        return raw.decode(errors="replace")
    return raw or ""


def problems(run: Run) -> list[str]:
    """Every promise the run broke, each as one line."""
    found: list[str] = []
    if run.exit_code is None:
        found.append(f"hang: still running after {HARD_TIMEOUT:g}s")
    elif run.exit_code not in DOCUMENTED_EXIT_CODES:
        found.append(f"undocumented exit code {run.exit_code}")
    if "Traceback (most recent call last)" in run.stderr:
        last = [line for line in run.stderr.splitlines() if line.strip()][-1]
        found.append(f"traceback: {last[:200]}")
    elif sum(line.startswith("Error") for line in run.stderr.splitlines()) > 1:
        found.append("more than one error line on stderr")
    if run.wrong:
        found.append(f"wrong closures: {sorted(run.wrong)}")
    found += record_problems(run)
    if any(e.followed_foreign for e in run.exchanges):
        found.append("followed a next_page_url to a foreign host")
    return found


def record_problems(run: Run) -> list[str]:
    found: list[str] = []
    if run.audit_problem:
        found.append(run.audit_problem)
    if run.audit_closed is not None:
        if run.audit_closed != run.changed:
            missing = sorted(run.changed - run.audit_closed)
            extra = sorted(run.audit_closed - run.changed)
            found.append(
                f"audit log: {len(missing)} closed by Twilio but not logged closed {missing[:3]}, "
                f"{len(extra)} logged closed but unchanged {extra[:3]}"
            )
    else:
        unnamed = sorted(sid for sid in run.changed if sid not in run.stdout)
        if unnamed:
            found.append(f"no audit log, and stdout does not name {len(unnamed)} closed tasks")
    summary = run.summary()
    if summary is None:
        if run.changed or run.exit_code in (0, 3):
            found.append(f"no JSON summary on stdout (exit {run.exit_code})")
    elif summary.get("closed") != len(run.changed):
        found.append(f"--json closed {summary.get('closed')!r}, Twilio closed {len(run.changed)}")
    return found


def check(run: Run) -> None:
    note(f"exit {run.exit_code} after {run.seconds:.1f}s")
    note("applied: " + ("; ".join(run.applied()) or "nothing"))
    note("stderr tail: " + run.stderr[-600:])
    found = problems(run)
    assert not found, "\n".join(found)


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.mark.slow
@FUZZ
@given(seed=st.integers(0, 3), plan=plans(VOICE_KINDS))
def test_voice_run_keeps_its_promises_under_hostile_answers(
    seed: int, plan: Plan, tmp_path: Path
) -> None:
    check(run_case(Case(seed, messaging=False, plan=plan), tmp_path))


@pytest.mark.slow
@FUZZ
@given(seed=st.integers(0, 3), plan=plans(VOICE_KINDS + MESSAGING_KINDS))
def test_voice_and_messaging_run_keeps_its_promises_under_hostile_answers(
    seed: int, plan: Plan, tmp_path: Path
) -> None:
    check(run_case(Case(seed, messaging=True, plan=plan), tmp_path))
