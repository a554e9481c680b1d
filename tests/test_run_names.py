"""Run names: manual names never repeat and never go back, whatever the clock does."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from b2bd.run_names import later, manual_name, order

T = dt.datetime(2026, 12, 2, 10, 15, 7, tzinfo=dt.UTC)


def test_the_first_manual_name_is_the_second_it_starts() -> None:
    assert manual_name(T, None) == "manual-20261202T101507Z"


def test_the_same_second_takes_the_next_suffix() -> None:
    first = manual_name(T, None)
    second = manual_name(T, first)
    third = manual_name(T, second)
    assert (second, third) == ("manual-20261202T101507Z-2", "manual-20261202T101507Z-3")
    assert manual_name(T + dt.timedelta(seconds=1), third) == "manual-20261202T101508Z"


def test_a_clock_stepped_back_continues_after_the_last_name() -> None:
    last = "manual-20261202T101507Z-2"
    assert manual_name(T - dt.timedelta(hours=1), last) == "manual-20261202T101507Z-3"


def test_names_a_folder_holds_are_skipped() -> None:
    held = {"manual-20261202T101507Z", "manual-20261202T101507Z-2"}
    assert manual_name(T, None, held.__contains__) == "manual-20261202T101507Z-3"


def test_order_puts_suffix_ten_after_nine() -> None:
    assert order("manual-20261202T101507Z-10") > order("manual-20261202T101507Z-9")
    assert later("manual-20261202T101507Z-10", "manual-20261202T101507Z-9") == (
        "manual-20261202T101507Z-10"
    )
    assert order("20261202T063000Z") == ("", 0)  # a scheduled name never constrains


@given(st.lists(st.integers(-3, 3), min_size=1, max_size=40))
def test_names_strictly_increase_and_never_repeat_whatever_the_clock_does(steps) -> None:
    now, last, names = T, None, []
    for step in steps:
        now += dt.timedelta(seconds=step)  # forward, still, or stepped back
        name = manual_name(now, last)
        assert last is None or order(name) > order(last)
        names.append(name)
        last = later(last, name)
    assert len(set(names)) == len(names)
