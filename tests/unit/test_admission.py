"""Stage slots: the limit holds, queued runs go in creation order, freed slots wake the next."""

from __future__ import annotations

from claimops_operator.admission import StageSlots, order_of


def key(name: str) -> tuple[str, str]:
    return ("claims", name)


def order(name: str, second: int) -> tuple[str, str, str]:
    return order_of("claims", name, f"2026-12-02T02:00:{second:02d}Z")


def test_at_most_the_limit_is_admitted_and_the_rest_queue_in_creation_order() -> None:
    slots = StageSlots(limit=2)
    for name, second in (("a", 0), ("b", 1)):
        assert slots.ticket(key(name), order(name, second)).admitted
        assert slots.settle(key(name), order(name, second), [f"{name}-ci-1"], queued=False) == []
    # c and d were created later; d reconciles first but c keeps its place.
    for name, second in (("d", 3), ("c", 2)):
        ticket = slots.ticket(key(name), order(name, second))
        assert not ticket.admitted
        assert ticket.in_use == 2
        slots.settle(key(name), order(name, second), [], queued=True)
    assert slots.ticket(key("d"), order("d", 3)).ahead == 1
    # a's Job finishes: exactly one slot frees, and c (created first) is woken, not d.
    woken = slots.settle(key("a"), order("a", 0), [], queued=False)
    assert woken == [key("c")]
    assert not slots.ticket(key("d"), order("d", 3)).admitted  # c is ahead of it
    assert slots.ticket(key("c"), order("c", 2)).admitted
    slots.settle(key("c"), order("c", 2), ["c-ci-1"], queued=False)
    assert slots.in_use == 2
    assert slots.queued == 1


def test_a_new_run_does_not_jump_a_queue_even_when_a_slot_is_free() -> None:
    slots = StageSlots(limit=1)
    slots.settle(key("old"), order("old", 0), [], queued=True)  # queued when the slot was taken
    assert not slots.ticket(key("new"), order("new", 5)).admitted
    assert slots.ticket(key("old"), order("old", 0)).admitted


def test_runs_created_in_the_same_second_go_by_name() -> None:
    slots = StageSlots(limit=1)
    slots.settle(key("holder"), order("holder", 0), ["holder-1"], queued=False)
    for name in ("load-02", "load-01"):
        slots.settle(key(name), order(name, 9), [], queued=True)
    assert slots.settle(key("holder"), order("holder", 0), [], queued=False) == [key("load-01")]


def test_a_deleted_or_cancelled_run_gives_its_slot_and_place_up() -> None:
    slots = StageSlots(limit=1)
    slots.settle(key("a"), order("a", 0), ["a-1"], queued=False)
    slots.settle(key("b"), order("b", 1), [], queued=True)
    slots.settle(key("c"), order("c", 2), [], queued=True)
    assert slots.forget(key("a")) == [key("b")]
    # b is cancelled while queued: c is next.
    assert slots.settle(key("b"), order("b", 1), [], queued=False) == [key("c")]


def test_seed_restores_the_slots_in_use_and_the_queue_after_a_restart() -> None:
    slots = StageSlots(limit=2)
    slots.seed({key("a"): ["a-full-train-1"], key("b"): ["b-ci-1"]}, {key("c"): order("c", 2)})
    assert slots.in_use == 2
    assert not slots.ticket(key("d"), order("d", 1)).admitted  # full, though d is older than c
    assert slots.ticket(key("d"), order("d", 1)).ahead == 0


def test_a_run_holding_several_jobs_counts_each() -> None:
    slots = StageSlots(limit=2)
    slots.settle(key("a"), order("a", 0), ["a-1", "a-2"], queued=False)
    assert not slots.ticket(key("b"), order("b", 1)).admitted


def test_waited_measures_time_in_the_queue() -> None:
    now = [100.0]
    slots = StageSlots(limit=1, clock=lambda: now[0])
    slots.settle(key("a"), order("a", 0), ["a-1"], queued=False)
    slots.settle(key("b"), order("b", 1), [], queued=True)
    now[0] = 130.0
    slots.settle(key("b"), order("b", 1), [], queued=True)  # still queued: its start is kept
    assert slots.waited(key("b")) == 30.0
    assert slots.waited(key("a")) is None


def test_a_run_whose_job_just_finished_takes_the_freed_slot_for_its_next_stage() -> None:
    slots = StageSlots(limit=1)
    slots.settle(key("old"), order("old", 0), ["old-ci-1"], queued=False)
    slots.settle(key("young"), order("young", 1), [], queued=True)
    # old's ci-tests Job finished (no longer active): its data-validation may start at once,
    # ahead of the younger queued run.
    assert slots.ticket(key("old"), order("old", 0), holding=()).admitted
    assert not slots.ticket(key("young"), order("young", 1)).admitted


def test_a_later_run_reconciled_first_leaves_the_last_slot_to_an_earlier_one() -> None:
    # Twenty runs created in one second reach the operator in any order: load-04 came to the
    # last free slot while load-03 had not been reconciled yet, and took it (kind, 2026-12-03).
    slots = StageSlots(limit=1)
    created = {key(name): order(name, 41) for name in ("load-03", "load-04")}
    assert slots.note_unfinished(created) == []
    ticket = slots.ticket(key("load-04"), created[key("load-04")])
    assert (ticket.admitted, ticket.ahead) == (False, 1)
    slots.settle(key("load-04"), created[key("load-04")], [], queued=True)
    assert slots.ticket(key("load-03"), created[key("load-03")]).admitted
    # load-03 takes the slot: nothing frees, nobody is woken.
    assert slots.settle(key("load-03"), created[key("load-03")], ["load-03-ci-1"], queued=False) == []
    assert not slots.ticket(key("load-04"), created[key("load-04")]).admitted


def test_a_run_still_to_be_reconciled_holds_later_ones_back_only_until_it_is() -> None:
    slots = StageSlots(limit=2)
    slots.settle(key("busy"), order("busy", 0), ["busy-ci-1"], queued=False)
    slots.note_unfinished({key("gate"): order("gate", 1), key("late"): order("late", 2)})
    assert not slots.ticket(key("late"), order("late", 2)).admitted  # gate may want the slot
    slots.settle(key("late"), order("late", 2), [], queued=True)
    # gate turns out to wait for an approval (no Job): late is woken and admitted.
    assert slots.settle(key("gate"), order("gate", 1), [], queued=False) == [key("late")]
    assert slots.ticket(key("late"), order("late", 2)).admitted


def test_a_run_deleted_before_it_was_reconciled_stops_holding_others_back() -> None:
    slots = StageSlots(limit=1)
    slots.note_unfinished({key("gone"): order("gone", 0), key("next"): order("next", 1)})
    slots.settle(key("next"), order("next", 1), [], queued=True)
    # The next list no longer shows it (deleted, or finished by an earlier leader).
    assert slots.note_unfinished({key("next"): order("next", 1)}) == [key("next")]
    assert slots.ticket(key("next"), order("next", 1)).admitted
    # Or its deletion is seen first.
    slots.note_unfinished({key("gone2"): order("gone2", 0), key("next"): order("next", 1)})
    assert not slots.ticket(key("next"), order("next", 1)).admitted
    assert slots.forget(key("gone2")) == [key("next")]


def test_runs_already_reconciled_or_queued_are_not_counted_twice() -> None:
    slots = StageSlots(limit=2)
    slots.settle(key("gate"), order("gate", 0), [], queued=False)  # waits for an approval
    slots.settle(key("held"), order("held", 1), ["held-ci-1"], queued=False)
    slots.note_unfinished({key(n): order(n, s) for n, s in (("gate", 0), ("held", 1), ("new", 2))})
    ticket = slots.ticket(key("new"), order("new", 2))
    assert (ticket.admitted, ticket.ahead, ticket.in_use) == (True, 0, 1)
