"""One run (``app.Run``) over the scripted fake gateway: the shapes, the question, the record."""

from __future__ import annotations

import asyncio
import io
import json
import signal
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from fakes import AC, WS, Call, FakeGateway, Tasks, ended_call, sid, voice_task
from stuck_tasks.app import Answer, Question, Run, RunResult, catch_signals
from stuck_tasks.errors import ConfigError
from stuck_tasks.models import Workspace
from stuck_tasks.report import Display
from stuck_tasks.settings import Connection, Credentials, Settings

KEY = Credentials("SK" + "1" * 32, "secret", AC, source="the environment")


def settings(tmp_path: Path, **changes) -> Settings:
    base = Settings(
        connection=Connection(KEY),
        run_id="20261201T120000Z-test",
        workspace=WS,
        grace=timedelta(minutes=2),
        concurrency=4,
        deadline=30.0,
        audit_log=tmp_path / "audit.jsonl",
    )
    return replace(base, **changes)


def workspace(n: int = 12) -> Tasks:
    tasks = Tasks(page_size=5)
    for i in range(1, n + 1):
        tasks.add(voice_task(i, "assigned" if i % 2 else "pending"), ended_call(sid("CA", i)))
    return tasks


def new_run(tmp_path: Path, handler, **changes) -> tuple[Run, FakeGateway]:
    gw = FakeGateway(handler)
    display = Display(io.StringIO(), quiet=True, tty=False, width=None)
    run = Run(settings(tmp_path, **changes), display, open_gateway=lambda *a, **k: gw.opener())
    return run, gw


def audit(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]


def test_an_interactive_run_asks_then_applies_and_the_log_is_complete(tmp_path):
    tasks = workspace()
    run, gw = new_run(tmp_path, tasks.handler())
    step = run.execute()
    assert isinstance(step, Question)
    assert "Close 12 tasks in workspace 'Support'" in step.text
    assert tasks.writes == []
    result = run.answer(Answer.YES)
    assert (result.exit_code, result.document["status"], result.document["closed"]) == (
        0,
        "done",
        12,
    )
    lines = audit(tmp_path)
    assert lines[0]["type"] == "header"
    assert lines[-1]["type"] == "footer"
    assert {x["task_sid"] for x in lines if x.get("outcome") == "closed"} == {
        s for s, _ in tasks.writes
    }
    # An API key may not read /Accounts: the run never asks for the account's name.
    assert "account_name" not in gw.methods()


def test_answering_no_records_declined_and_nothing_else(tmp_path):
    tasks = workspace()
    run, _ = new_run(tmp_path, tasks.handler())
    assert isinstance(run.execute(), Question)
    result = run.answer(Answer.NO)
    assert (result.exit_code, result.document["status"]) == (0, "declined")
    assert tasks.writes == []
    footer = audit(tmp_path)[-1]
    assert footer["status"] == "declined"
    assert footer["closed"] == 0
    assert {x["why"] for x in audit(tmp_path) if x.get("type") == "task"} == {"declined"}


def test_ctrl_c_at_the_question_exits_130_with_a_true_footer(tmp_path):
    tasks = workspace()
    run, _ = new_run(tmp_path, tasks.handler())
    run.execute()
    result = run.answer(Answer.INTERRUPTED)
    assert (result.exit_code, result.document["status"]) == (130, "interrupted")
    assert audit(tmp_path)[-1]["status"] == "interrupted"
    assert tasks.writes == []


def test_a_worker_raising_an_unexpected_exception_exits_1_with_a_true_summary(tmp_path):
    tasks = workspace(260)

    def fetch_call(call: Call):
        if call.args["sid"] == sid("CA", 250):
            raise TypeError("an attribute of an unexpected type")
        return tasks.calls[call.args["sid"]]

    run, _ = new_run(
        tmp_path, tasks.handler(fetch_call=fetch_call), assume_yes=True, limits=_limits(10_000)
    )
    result = run.execute()
    assert isinstance(result, RunResult)
    assert (result.exit_code, result.document["status"]) == (1, "error")
    assert "internal error" in result.messages[0]
    assert "TypeError" in result.messages[0]
    doc = result.document
    closed_in_log = {x["task_sid"] for x in audit(tmp_path) if x.get("outcome") == "closed"}
    applied = {s for s, _ in tasks.writes}
    # True: every close Twilio applied is in the log, or named as unknown.
    assert closed_in_log <= applied <= closed_in_log | set(doc["unknown"]["tasks"])
    assert doc["closed"] == len(closed_in_log)


def test_the_wrong_account_is_caught_before_any_write(tmp_path):
    tasks = workspace()
    other = "AC" + "9" * 32
    run, gw = new_run(
        tmp_path,
        tasks.handler(workspace=lambda call: Workspace(WS, "Support", other)),
        assume_yes=True,
    )
    with pytest.raises(ConfigError, match=f"belong to account {other}.*TWILIO_ACCOUNT_SID is {AC}"):
        run.execute()
    assert gw.methods() == ["workspace"]
    assert not (tmp_path / "audit.jsonl").exists()


def test_a_dry_run_reports_the_guards_a_real_run_would_meet(tmp_path):
    tasks = workspace(12)
    run, _ = new_run(tmp_path, tasks.handler(), dry_run=True, limits=_limits(5))
    result = run.execute()
    assert isinstance(result, RunResult)
    assert result.exit_code == 0
    assert result.document["status"] == "dry-run"
    assert "closes 12 tasks, more than --max-changes 5" in result.document["guards"]["refusals"][0]
    assert len(result.document["tasks"]) == 12  # the tasks to close, with their evidence
    assert result.document["tasks"][0]["evidence"][0]["lookup"].startswith("call CA")


def test_a_refused_plan_writes_nothing_and_says_so_with_the_final_numbers(tmp_path):
    tasks = workspace(12)
    run, _ = new_run(tmp_path, tasks.handler(), assume_yes=True, limits=_limits(5))
    result = run.execute()
    assert isinstance(result, RunResult)
    assert (result.exit_code, result.document["status"]) == (2, "refused")
    assert "closes 12 tasks" in result.messages[0]
    assert "--max-changes 12" in result.messages[0]
    assert tasks.writes == []


def _limits(max_changes: int):
    from stuck_tasks.guards import Limits

    return Limits(max_changes=max_changes)


# ------------------------------------------------------------------ signals without loop support


class WindowsLikeLoop(asyncio.SelectorEventLoop):
    """A loop without Unix signal handlers, as on Windows (Proactor)."""

    def add_signal_handler(self, sig, callback, *args):
        raise NotImplementedError

    def remove_signal_handler(self, sig):
        raise AssertionError("never installed through the loop")


def test_signals_fall_back_to_signal_signal_where_the_loop_has_no_handlers():
    seen: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        restore = catch_signals(loop, lambda: seen.append("stop"), (signal.SIGINT,))
        try:
            signal.raise_signal(signal.SIGINT)
            await asyncio.sleep(0.05)
        finally:
            restore()

    before = signal.getsignal(signal.SIGINT)
    with asyncio.Runner(loop_factory=WindowsLikeLoop) as runner:
        runner.run(main())
    assert seen == ["stop"]
    assert signal.getsignal(signal.SIGINT) is before


class SignalAfterPhase(Display):
    """A display whose ``clear`` (called as a phase ends, its signal handlers already put back)
    raises SIGINT at the end of phase ``n``: a Ctrl-C in the moment between phases."""

    def __init__(self, n: int) -> None:
        super().__init__(io.StringIO(), quiet=True, tty=False, width=None)
        self.phases, self.n = 0, n

    def clear(self) -> None:
        super().clear()
        self.phases += 1
        if self.phases == self.n:
            signal.raise_signal(signal.SIGINT)


def test_a_signal_between_phases_is_noted_and_the_record_of_the_writes_kept(tmp_path):
    # The --yes run's second phase (plan and apply) closed every task, then a Ctrl-C came as
    # it ended: the run must end with its true summary and footer, not a KeyboardInterrupt that
    # the command line reports as "interrupted; nothing was changed".
    tasks = workspace()
    gw = FakeGateway(tasks.handler())
    run = Run(
        settings(tmp_path, assume_yes=True),
        SignalAfterPhase(2),
        open_gateway=lambda *a, **k: gw.opener(),
    )
    try:
        result = run.execute()
    except KeyboardInterrupt:
        pytest.fail("a signal between phases escaped as KeyboardInterrupt")
    assert isinstance(result, RunResult)
    assert result.document["closed"] == 12 == len(tasks.writes)
    lines = audit(tmp_path)
    assert lines[-1]["type"] == "footer"
    assert sum(x.get("outcome") == "closed" for x in lines) == 12
    assert run.stop.requested  # noted: nothing new would start
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # and put back
