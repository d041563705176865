"""The queue simulation in bench/queue_sim.py: deterministic, faithful to the ranking, exactly-once.

No database and no timing: these check the simulation's behaviour on hand-made scenarios.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import queue_sim as sim
from triage.findings import CATALOGUE, Finding
from worklist.ranking import target_minutes

ROOT = Path(__file__).resolve().parents[2]
QUIET = sim.STUDY_STABLE_SECONDS / 60.0
INFERENCE = 2.0 / 60.0
INF = float("inf")
KIND = {kind.key: index for index, kind in enumerate(sim.KINDS)}
FALLBACK = {
    finding: sim.OperatingPoint(
        finding=finding, sensitivity=0.95, specificity=0.90, source="fallback (test)"
    )
    for finding in Finding
}


def study(
    arrival: float,
    read: float,
    *,
    kind: str = "xr_other",
    priority: str = "ROUTINE",
    ed: bool = False,
    flag: Finding | None = None,
    truth: bool | None = None,
    ready: float | None = None,
    flag_after: float = INFERENCE,
) -> dict[str, Any]:
    """One hand-made study; the flag (if any) lands `flag_after` minutes after it is ready."""
    ready = arrival + QUIET if ready is None else ready
    return {
        "arrival": arrival,
        "ready": ready,
        "read_minutes": read,
        "base_deadline": arrival + sim.base_target_minutes(priority, is_ed=ed),
        "flag_time": ready + flag_after if flag else INF,
        "flag_deadline": arrival + CATALOGUE[flag].target_minutes if flag else INF,
        "truth": bool(flag) if truth is None else truth,
        "kind": KIND[kind],
        "priority": sim.PRIORITIES.index(priority),
        "is_ed": ed,
    }


def scenario(*rows: dict[str, Any]) -> sim.Scenario:
    columns = {name: np.array([row[name] for row in rows]) for name in rows[0]}
    columns = {
        **columns,
        **{
            name: columns[name].astype(float)
            for name in (
                "arrival",
                "ready",
                "read_minutes",
                "base_deadline",
                "flag_time",
                "flag_deadline",
            )
        },
    }
    return sim.Scenario(**columns)


def generated(seed: int = 7, *, days: float = 1.0) -> sim.Scenario:
    return sim.scenario_generate(
        seed=seed,
        days=days,
        per_day=230.0,
        amplitude=0.3,
        ed_fraction=0.8,
        operating_points=FALLBACK,
    )


def check_read_once(s: sim.Scenario, reading: sim.Reading, radiologists: int) -> None:
    n = len(s)
    assert sorted(reading.order.tolist()) == list(range(n))
    assert np.isfinite(reading.start).all()
    assert ((reading.reader >= 0) & (reading.reader < radiologists)).all()
    assert (reading.start >= s.ready).all()  # nobody reads a study before it is on the list
    assert np.all(np.diff(reading.start[reading.order]) >= 0)
    for r in range(radiologists):
        mine = np.flatnonzero(reading.reader == r)
        mine = mine[np.argsort(reading.start[mine], kind="stable")]
        ends = reading.start[mine] + s.read_minutes[mine]
        assert (reading.start[mine][1:] >= ends[:-1] - 1e-9).all()  # one study at a time


def test_fifo_reads_routine_first_ranking_reads_flagged_ich_first() -> None:
    s = scenario(
        study(0.0, 20.0),  # keeps the radiologist busy until QUIET + 20
        study(1.0, 5.0),  # routine, not ED: deadline 1 + 240
        study(
            2.0,
            6.0,
            kind="ct_head",
            ed=True,
            flag=Finding.INTRACRANIAL_HEMORRHAGE,
        ),  # ED: 2 + 60, flagged ICH: 2 + 10
    )
    fifo = sim.simulate(s, policy="fifo", radiologists=1)
    ranked = sim.simulate(s, policy="ranked", radiologists=1)

    # Waits, indexed by study: starts at QUIET, QUIET + 20 and QUIET + 25, minus arrivals.
    assert fifo.order.tolist() == [0, 1, 2]
    assert fifo.waits(s) == pytest.approx([QUIET, 19.0 + QUIET, 23.0 + QUIET])
    assert ranked.order.tolist() == [0, 2, 1]
    # The ICH starts when the first read ends (QUIET + 20), the routine study 6 min later.
    assert ranked.waits(s) == pytest.approx([QUIET, 25.0 + QUIET, 18.0 + QUIET])


def test_ranking_sees_a_flag_only_once_it_has_landed() -> None:
    # The radiologist is free at QUIET + 10. The head CT joins the list at that instant, but its
    # flag lands 2 s later: the ranking still has the ED study (deadline 0.5 + 60) on top, since
    # the head CT's deadline is then 9.9 + 60. Reading is non-preemptive.
    busy_until = QUIET + 10.0
    late = study(
        busy_until - QUIET,
        6.0,
        kind="ct_head",
        ed=True,
        flag=Finding.INTRACRANIAL_HEMORRHAGE,
    )
    s = scenario(study(0.0, 10.0), study(0.5, 3.0, kind="cxr", ed=True), late)
    assert sim.simulate(s, policy="ranked", radiologists=1).order.tolist() == [0, 1, 2]

    # Had the flag landed before the radiologist was free, the head CT would go first.
    early = {**late, "flag_time": busy_until - 1e-6}
    s = scenario(study(0.0, 10.0), study(0.5, 3.0, kind="cxr", ed=True), early)
    assert sim.simulate(s, policy="ranked", radiologists=1).order.tolist() == [0, 2, 1]


def test_deadline_is_the_smallest_target_that_applies() -> None:
    assert sim.base_target_minutes("ROUTINE", is_ed=False) == 240
    assert sim.base_target_minutes("ROUTINE", is_ed=True) == 60
    assert sim.base_target_minutes("STAT", is_ed=True) == 30
    # A STAT C-spine CT flagged for fracture: 30 either way; the flag never pushes it back.
    # Both arrive while the radiologist is busy; the ED CXR (deadline 0.5 + 60) goes after it.
    s = scenario(
        study(0.0, 30.0),
        study(0.5, 2.0, kind="cxr", ed=True),
        study(1.0, 8.0, kind="ct_cspine", priority="STAT", flag=Finding.FRACTURE),
    )
    assert s.flag_deadline[2] == pytest.approx(1.0 + CATALOGUE[Finding.FRACTURE].target_minutes)
    assert sim.simulate(s, policy="ranked", radiologists=1).order.tolist() == [0, 2, 1]


def test_base_target_is_the_products_rule_with_the_runs_class_targets() -> None:
    for priority in sim.PRIORITIES:
        for is_ed in (False, True):
            assert sim.base_target_minutes(priority, is_ed=is_ed) == target_minutes(
                order_priority=priority,
                is_emergency=is_ed,
                priority_targets=sim.PRIORITY_TARGET_MINUTES,
                default_priority=sim.DEFAULT_PRIORITY,
                emergency_target=sim.ED_TARGET_MINUTES,
            )
    before = sim.targets_apply({"ED": 90, "STAT": 45})
    try:
        assert sim.base_target_minutes("ROUTINE", is_ed=True) == 90
        assert sim.base_target_minutes("STAT", is_ed=True) == 45
    finally:
        sim.targets_apply(before)
    assert sim.base_target_minutes("ROUTINE", is_ed=True) == 60


def test_idle_radiologist_reads_the_next_study_as_soon_as_it_is_listed() -> None:
    s = scenario(study(0.0, 1.0), study(30.0, 1.0))
    for policy in sim.POLICIES:
        reading = sim.simulate(s, policy=policy, radiologists=1)
        assert reading.waits(s) == pytest.approx([QUIET, QUIET])


def test_idle_radiologists_never_start_a_study_before_it_is_listed() -> None:
    # Two radiologists free at different times, both idle; two studies listed at the same
    # instant: each starts at that instant, one per radiologist.
    s = scenario(study(0.0, 5.0), study(0.0, 9.0), study(20.0, 3.0), study(20.0, 4.0))
    for policy in sim.POLICIES:
        reading = sim.simulate(s, policy=policy, radiologists=2)
        check_read_once(s, reading, 2)
        assert reading.waits(s) == pytest.approx([QUIET] * 4)
        assert sorted(reading.reader[2:].tolist()) == [0, 1]


def test_equal_targets_and_no_flags_make_the_ranking_fifo() -> None:
    s = generated(3)
    same = sim.Scenario(
        **{
            **s.__dict__,
            "base_deadline": s.arrival + 60.0,
            "flag_time": np.full(len(s), INF),
            "flag_deadline": np.full(len(s), INF),
        }
    )
    fifo = sim.simulate(same, policy="fifo", radiologists=1)
    ranked = sim.simulate(same, policy="ranked", radiologists=1)
    assert ranked.order.tolist() == fifo.order.tolist()
    assert np.array_equal(ranked.start, fifo.start)


@pytest.mark.parametrize("radiologists", [1, 2, 3])
@pytest.mark.parametrize("policy", sim.POLICIES)
def test_every_study_is_read_exactly_once(policy: sim.Policy, radiologists: int) -> None:
    s = generated(11, days=2.0)
    assert len(s) > 300
    reading = sim.simulate(s, policy=policy, radiologists=radiologists)
    check_read_once(s, reading, radiologists)


def test_simulation_is_deterministic_for_a_seed() -> None:
    a, b, other = generated(5), generated(5), generated(6)
    for name in a.__dict__:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert not np.array_equal(a.arrival[:10], other.arrival[:10])
    for policy in sim.POLICIES:
        first = sim.simulate(a, policy=policy, radiologists=1)
        second = sim.simulate(b, policy=policy, radiologists=1)
        assert np.array_equal(first.start, second.start)
        assert np.array_equal(first.order, second.order)

    kwargs: dict[str, Any] = {
        "days": 1.0,
        "radiologists": 1,
        "per_day": 230.0,
        "amplitude": 0.3,
        "ed_fraction": 0.8,
        "operating_points": FALLBACK,
    }
    assert sim.replay(seed=5, **kwargs) == sim.replay(seed=5, **kwargs)


def test_generated_scenario_is_plausible() -> None:
    s = generated(1, days=5.0)
    assert 5 * 180 < len(s) < 5 * 280
    assert np.all(np.diff(s.arrival) >= 0)
    assert (s.ready > s.arrival).all()
    flagged = s.flagged
    assert (s.flag_time[flagged] > s.ready[flagged]).all()
    # Only kinds a model applies to are flagged or truly positive.
    no_model = np.isin(s.kind, [KIND["ct_other"], KIND["xr_other"]])
    assert not (flagged & no_model).any()
    assert not (s.truth & no_model).any()
    # Flagged head CTs carry the ICH target.
    ich = flagged & (s.kind == KIND["ct_head"])
    assert ich.any()
    assert s.flag_deadline[ich] - s.arrival[ich] == pytest.approx(
        CATALOGUE[Finding.INTRACRANIAL_HEMORRHAGE].target_minutes
    )
    load = s.read_minutes.sum() / (5 * sim.DAY)
    assert 0.7 < load < 1.0


def test_operating_points_from_cards_with_fallback(tmp_path: Path) -> None:
    card = tmp_path / "pulmonary_embolism" / "card.json"
    card.parent.mkdir()
    card.write_text(json.dumps({"metrics": {"sensitivity": 0.91, "specificity": 0.87}}))
    broken = tmp_path / "pneumothorax" / "card.json"
    broken.parent.mkdir()
    broken.write_text("{not json")
    points = sim.operating_points_load(tmp_path)

    pe = points[Finding.PULMONARY_EMBOLISM]
    assert (pe.sensitivity, pe.specificity, pe.fallback) == (0.91, 0.87, False)
    for finding in (Finding.PNEUMOTHORAX, Finding.INTRACRANIAL_HEMORRHAGE, Finding.FRACTURE):
        point = points[finding]
        assert point.fallback
        assert (point.sensitivity, point.specificity) == (0.95, 0.90)


def test_mirrored_targets_match_the_settings_defaults() -> None:
    text = (ROOT / "triage" / "config" / "settings.py").read_text()
    match = re.search(r'"WORKLIST_PRIORITY_TARGET_MINUTES",\s*"([^"]+)"', text)
    assert match is not None
    defaults = dict(pair.split("=") for pair in match.group(1).split(","))
    assert {key: int(value) for key, value in defaults.items()} == sim.PRIORITY_TARGET_MINUTES
    assert f'"WORKLIST_ED_TARGET_MINUTES", "{sim.ED_TARGET_MINUTES}"' in text
    assert f'"WORKLIST_DEFAULT_PRIORITY", "{sim.DEFAULT_PRIORITY}"' in text
    assert f'"STUDY_STABLE_SECONDS", "{sim.STUDY_STABLE_SECONDS:g}"' in text


def test_json_output_has_the_agreed_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert sim.main(["--json", "--seed", "4", "--seeds", "3"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("tp_mean_wait_fifo", "tp_mean_wait_ranked", "max_wait_fifo", "max_wait_ranked"):
        assert isinstance(report[key], float)
    assert report["seed"] == 4
    assert report["seeds_summary"]["seeds"] == [4, 5, 6]
    assert len(report["per_seed"]) == 3
    # The fairness goals' figures, over all the seeded days (issue: "a fair queue").
    for key in ("ed_max_wait_fifo", "ed_max_wait_ranked"):
        assert isinstance(report[key], float)
    groups = {"ed", "non_ed", "priority_stat", "priority_high", "priority_routine"}
    for key in ("late_fifo", "late_ranked"):
        assert set(report[key]) == groups
        # The sum over days of each day's count.
        assert report[key]["ed"] == sum(day[key]["ed"] for day in report["per_seed"])
    assert isinstance(report["beyond_target_ranked"], int)
    assert report["beyond_target_ranked"] == sum(
        day["beyond_target_ranked"] or 0 for day in report["per_seed"]
    )


def test_a_study_past_its_class_target_is_counted_late_and_beyond() -> None:
    """Two routine ED studies, one radiologist, reads longer than the ED target: the second
    starts past its 60-minute target under both policies, so it is late and beyond target."""
    s = scenario(study(0.0, 90.0, ed=True), study(1.0, 5.0, ed=True))
    for policy in ("fifo", "ranked"):
        reading = sim.simulate(s, policy=policy, radiologists=1)
        assert int((reading.start > s.base_deadline).sum()) == 1


def test_table_output_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert sim.main(["--seeds", "2", "--radiologists", "2"]) == 0
    out = capsys.readouterr().out
    assert "true-positive critical" in out
    assert "over 2 seeds" in out


def test_what_if_targets_are_used_for_the_run_and_put_back(
    capsys: pytest.CaptureFixture[str],
) -> None:
    defaults = dict(sim.PRIORITY_TARGET_MINUTES)
    flags_only = "STAT=240,HIGH=240,ROUTINE=240,ED=240"
    assert sim.main(["--json", "--seed", "4", "--seeds", "20", "--targets", flags_only]) == 0
    what_if = json.loads(capsys.readouterr().out)
    assert what_if["assumptions"]["priority_target_minutes"] == {
        "STAT": 240,
        "HIGH": 240,
        "ROUTINE": 240,
    }
    assert what_if["assumptions"]["ed_target_minutes"] == 240
    assert (sim.PRIORITY_TARGET_MINUTES, sim.ED_TARGET_MINUTES) == (defaults, 60)
    assert sim.main(["--json", "--seed", "4", "--seeds", "20"]) == 0
    default = json.loads(capsys.readouterr().out)
    # With equal class targets only AI flags reorder the list: no class starves.
    assert (
        what_if["seeds_summary"]["max_wait_ranked"]["median"]
        < default["seeds_summary"]["max_wait_ranked"]["median"]
    )


def test_bad_targets_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        sim.main(["--targets", "URGENT=5"])
    assert exit_info.value.code == 2
    assert "is not one of" in capsys.readouterr().err
