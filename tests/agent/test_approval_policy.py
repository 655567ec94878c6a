"""Approval: modes, allow/deny/ask rules, and how an answer is obtained (callback, awaitable,
`approve()` from another thread, or, headless, by policy without waiting)."""

import asyncio
import threading

from agent import events as ev
from agent.approval import ApprovalDecision, ApprovalGate, ApprovalPolicy
from agent.backends.base import CancelToken
from agent.config import ApprovalConfig, ApprovalRule


def _policy(mode, *rules):
    return ApprovalPolicy(ApprovalConfig(mode=mode, rules=list(rules)))


def test_modes_decide_file_tools_and_shell_differently():
    for mode, bash, edit in [
        ("ask", "ask", "ask"),
        ("auto-edit", "ask", "allow"),
        ("auto", "allow", "allow"),
    ]:
        p = _policy(mode)
        assert p.decide("bash", {"command": "ls"}).action == bash, mode
        assert p.decide("edit_file", {"path": "a.py"}).action == edit, mode
        assert p.decide("submit", {"summary": "done"}).action == "allow", mode


def test_rules_match_tool_and_command_pattern_and_deny_wins():
    p = _policy(
        "ask",
        ApprovalRule(tool="bash", pattern="python3 -m unittest*", action="allow"),
        ApprovalRule(tool="bash", pattern="*rm -rf*", action="deny"),
        ApprovalRule(tool="*_file", pattern="secrets/*", action="deny"),
    )
    assert p.decide("bash", {"command": "python3 -m unittest -v"}).action == "allow"
    assert p.decide("bash", {"command": "python3 -m unittest; rm -rf /"}).action == "deny"
    assert p.decide("bash", {"command": "make"}).action == "ask"
    verdict = p.decide("write_file", {"path": "secrets/key", "text": ""})
    assert (verdict.action, verdict.by) == ("deny", "rule")
    assert "secrets/*" in verdict.reason
    assert (
        _policy("auto", ApprovalRule(tool="bash", action="ask"))
        .decide("bash", {"command": "ls"})
        .action
        == "ask"
    )


def _check(gate, cancel=None):
    seen = []
    decision = gate.check(
        "call_1", "bash", {"command": "make"}, seen.append, cancel or CancelToken()
    )
    return decision, seen


def test_headless_never_waits_and_denies_what_would_ask():
    decision, seen = _check(ApprovalGate(_policy("ask")))
    assert not decision.approved and "headless" in decision.reason
    assert [type(e) for e in seen] == [ev.ApprovalResolved]
    assert seen[0].by == "policy" and not seen[0].approved


def test_a_callback_answers_with_a_bool_or_a_decision():
    asked = []

    def approver(request):
        asked.append(request)
        return request.subject == "make"

    decision, seen = _check(ApprovalGate(_policy("ask"), approver))
    assert decision.approved and asked[0].tool == "bash" and asked[0].call_id == "call_1"
    assert [type(e) for e in seen] == [ev.ApprovalRequested, ev.ApprovalResolved]
    assert seen[1].by == "user" and seen[1].request_id == seen[0].request_id

    decision, _ = _check(
        ApprovalGate(_policy("ask"), lambda r: ApprovalDecision(approved=False, reason="no"))
    )
    assert not decision.approved and decision.reason == "no"


def test_an_async_approver_is_awaited():
    async def approver(request):
        await asyncio.sleep(0.01)
        return True

    decision, _ = _check(ApprovalGate(_policy("ask"), approver))
    assert decision.approved


def test_interactive_requests_wait_for_approve_from_another_thread():
    gate = ApprovalGate(_policy("ask"), interactive=True)
    seen = []

    def on_event(event):
        seen.append(event)
        if isinstance(event, ev.ApprovalRequested):
            threading.Timer(0.05, gate.resolve, (event.request_id, False, "not now")).start()

    decision = gate.check("call_9", "bash", {"command": "make"}, on_event, CancelToken())
    assert not decision.approved and decision.reason == "not now"
    assert isinstance(seen[-1], ev.ApprovalResolved) and seen[-1].reason == "not now"


def test_a_cancel_ends_the_wait_for_approval():
    gate, cancel = ApprovalGate(_policy("ask"), interactive=True), CancelToken()
    threading.Timer(0.05, cancel.cancel).start()
    decision, _ = _check(gate, cancel)
    assert not decision.approved and "cancelled" in decision.reason
