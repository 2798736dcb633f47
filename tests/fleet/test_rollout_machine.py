"""The pure rollout machine: selection, phase sizes, thresholds and commands (no database)."""

from __future__ import annotations

import pytest

from sparkflash.errors import InputError
from sparkflash.fleet import rollout as m
from sparkflash.fleet.records import Device, Phase, Rollout, Target

PHASES = (Phase(1, 1.0), Phase(10, 0.9), Phase(100, 0.9))


def fleet(n: int, label_every: int = 0) -> list[Device]:
    return [Device(f"{i:024x}", "k", labels=("canary",) if label_every and i % label_every == 0 else ())
            for i in range(n)]


def rollout(state: str = "running", phase: int = 0, forgiven: int = 0) -> Rollout:
    return Rollout("r1", "s3://demo/p/r", Target(), PHASES, state, phase, forgiven)


def test_selection_is_deterministic_and_stable_as_the_fleet_grows() -> None:
    small, big = fleet(1000), fleet(2000)
    half = m.select("r1", small, Target(percent=50))
    assert half == m.select("r1", list(reversed(small)), Target(percent=50))  # order of input does not matter
    assert 430 <= len(half) <= 570  # about half (binomial, fixed by the hash)
    assert set(half) <= set(m.select("r1", big, Target(percent=50)))  # devices chosen stay chosen
    assert m.select("r2", small, Target(percent=50)) != half  # another rollout draws another half
    assert [m.bucket("r1", d) for d in half] == sorted(m.bucket("r1", d) for d in half)


def test_selection_by_id_and_label() -> None:
    devs = fleet(30, label_every=10)
    assert sorted(m.select("r1", devs, Target(labels=("canary",)))) == [f"{i:024x}" for i in (0, 10, 20)]
    chosen = m.select("r1", devs, Target(devices=(f"{5:024x}",), labels=("canary",)))
    assert sorted(chosen) == [f"{i:024x}" for i in (0, 5, 10, 20)]
    with pytest.raises(InputError, match="not registered"):
        m.select("r1", devs, Target(devices=("f" * 24,)))


@pytest.mark.parametrize(("n", "sizes"), [(1000, [10, 90, 900]), (50, [1, 4, 45]), (1, [1, 0, 0]), (7, [1, 0, 6])])
def test_phase_sizes(n: int, sizes: list[int]) -> None:
    assigned = m.assign_phases([f"{i:024x}" for i in range(n)], PHASES)
    assert [sum(1 for _, p in assigned if p == k) for k in range(3)] == sizes
    assert [p for _, p in assigned] == sorted(p for _, p in assigned)  # phases follow the rollout order


def test_failure_budget() -> None:
    assert [m.failure_budget(n, 0.9) for n in (1, 9, 10, 19, 20, 100)] == [0, 0, 1, 1, 2, 10]
    assert m.failure_budget(10, 1.0) == 0 and m.failure_budget(10, 0.0) == 10


def test_a_phase_passes_when_every_device_has_an_outcome() -> None:
    step = m.decide(rollout(), {0: {"succeeded": 1}, 1: {"waiting": 10}, 2: {"waiting": 89}})
    assert (step.state, step.phase, step.activate) == ("running", 1, (1,))
    assert step.events[0][0] == "phase-passed"
    assert m.decide(rollout(), {0: {"claimed": 1}, 1: {"waiting": 10}}).activate == ()


def test_empty_phases_pass_at_once_and_the_last_one_finishes_the_rollout() -> None:
    step = m.decide(rollout(), {0: {"succeeded": 1}, 2: {"waiting": 6}})  # phase 2 (10 %) is empty
    assert (step.state, step.phase, step.activate) == ("running", 2, (1, 2))
    done = m.decide(rollout(phase=2), {0: {"succeeded": 1}, 2: {"succeeded": 10, "failed": 1}})  # 1 of 11 allowed
    assert done.state == "done" and done.events[-1][0] == "rollout-done"


def test_the_rollout_pauses_itself_once_the_threshold_cannot_be_met() -> None:
    r = rollout(phase=2)
    ok = m.decide(r, {2: {"succeeded": 50, "failed": 10, "pending": 40}})  # 10 of 100 allowed at 90 %
    assert ok.state == "running"
    step = m.decide(r, {2: {"succeeded": 50, "failed": 11, "pending": 39}})
    assert step.state == "paused"
    assert step.reason == "phase 3 (100 %): 11 of 100 devices failed, more than the 10 its 90% success threshold allows"
    assert m.decide(rollout(), {0: {"failed": 1}}).state == "paused"  # the 1 % canary must all succeed


def test_resume_either_retries_or_accepts_the_failures() -> None:
    r = rollout(state="paused", phase=2)
    counts = {2: {"succeeded": 50, "failed": 11, "pending": 39}}
    retry = m.resume(r, counts, retry_failed=True)
    assert (retry.state, retry.retry, retry.forgiven) == ("running", 2, 0)
    accept = m.resume(r, counts)
    assert (accept.state, accept.forgiven) == ("running", 11)
    resumed = Rollout(r.id, r.release_ref, r.target, r.phases, "running", 2, accept.forgiven)
    assert m.decide(resumed, counts).state == "running"  # 11 accepted, 0 new failures
    assert m.decide(resumed, {2: {"succeeded": 50, "failed": 22, "pending": 28}}).state == "paused"  # 11 new ones


def test_commands_only_from_the_states_they_fit() -> None:
    assert m.pause(rollout()).state == "paused"
    with pytest.raises(InputError, match="only a running rollout"):
        m.pause(rollout(state="paused"))
    with pytest.raises(InputError, match="only a paused rollout"):
        m.resume(rollout(), {})
    assert m.abort(rollout(state="paused")).skip
    with pytest.raises(InputError, match="done already"):
        m.abort(rollout(state="done"))
    assert m.decide(rollout(state="paused"), {0: {"succeeded": 1}}).state == "paused"  # no auto-advance while paused
