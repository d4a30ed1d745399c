"""The compiled waybill index and the packed identifier columns behave like a dict."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.packed import PackedStrings, WaybillSlots

# Short ASCII waybills fit a slot; long, non-ASCII and NUL-holding ones take the side dict.
waybills = st.one_of(
    st.from_regex(r"[A-Z]{2}[0-9]{1,13}", fullmatch=True),
    st.text(min_size=1, max_size=64),
)


def model_check(slots: WaybillSlots, model: dict[str, int], probes: list[str]) -> None:
    for waybill, row in model.items():
        assert slots.find(waybill) == row
        assert slots.get(row) == waybill
    for waybill in probes:
        assert slots.find(waybill) == model.get(waybill, -1)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), waybills), max_size=200),
       st.sampled_from([4, 24]))
def test_adds_and_removes_match_a_dict(operations, width):
    slots, model, free, rows = WaybillSlots(width), {}, [], 0
    for remove, waybill in operations:
        if remove and model:
            gone = next(iter(model))
            row = model.pop(gone)
            slots.remove(row)
            assert slots.get(row) is None and slots.find(gone) == -1
            free.append(row)
        elif waybill not in model:
            if free:
                row = free.pop()
            else:
                row, rows = rows, rows + 1
                slots.grow(rows)
            slots.add(waybill, row)
            model[waybill] = row
    model_check(slots, model, [w for _, w in operations])
    restored = pickle.loads(pickle.dumps(slots))  # the index is rebuilt from the slots
    model_check(restored, model, [w for _, w in operations])


def test_the_index_grows_past_many_rebuilds_and_keeps_every_row():
    slots, count = WaybillSlots(), 50_000
    slots.grow(count)
    for row in range(count):
        slots.add(f"SF{row:013d}", row)
    for row in range(0, count, 2):
        slots.remove(row)
    assert all(slots.find(f"SF{row:013d}") == (-1 if row % 2 == 0 else row)
               for row in range(count))


def test_a_waybill_that_is_a_prefix_of_another_is_not_taken_for_it():
    slots = WaybillSlots()
    slots.grow(2)
    slots.add("SF123", 0)
    assert slots.find("SF12") == -1 and slots.find("SF1234") == -1
    slots.add("SF1234", 1)
    assert (slots.find("SF123"), slots.find("SF1234")) == (0, 1)


def test_packed_strings_keep_none_empty_long_and_nul_values_apart():
    column = PackedStrings(width=8)
    values = [None, "", "O1", "ORDER-12345678-LONG", "a\0b", "订单123"]
    column.grow(len(values))
    for row, value in enumerate(values):
        column.set(row, value)
    assert [column.get(row) for row in range(len(values))] == values
    column.set(3, "short")
    assert column.get(3) == "short" and 3 not in column.long


def test_rows_outside_the_slots_or_without_a_waybill_are_refused():
    slots = WaybillSlots()
    slots.grow(1)
    with pytest.raises(IndexError):
        slots.add("SF1", 1)
    with pytest.raises(KeyError):
        slots.remove(0)
