"""Examples shown on a unit page: the best, without the same spot of a photo twice."""
from __future__ import annotations

from galleria.extract.layout import Layout
from galleria.records import Example, InputItem
from galleria.sources.images import InputSet
from galleria.visualize.receptive import ReceptiveField
from galleria.visualize.examples import distinct

RF = ReceptiveField(size=(20, 20), stride=(4, 4), offset=(-8, -8), input_size=(64, 64))
MAP = Layout("channels-first", (8, 16, 16))
VECTOR = Layout("vector", (8,))


def items():
    return InputSet((
        InputItem(0, "a-0", "a.png", "a", (0, 0, 64, 64)),
        InputItem(1, "a-1", "a.png", "a shifted", (16, 0, 80, 64)),  # overlaps crop 0 by 48 px
        InputItem(2, "b-0", "b.png", "b", (0, 0, 64, 64)),
        InputItem(3, "a-2", "a.png", "a far", (200, 200, 264, 264)),
    ), (), "key")


def test_the_same_spot_in_overlapping_crops_is_shown_once():
    candidates = (
        Example(0, 9.0, (8, 8)),  # a.png around source pixel (32, 32)
        Example(1, 8.5, (8, 4)),  # a.png again: crop shifted 16 px right, position 4 columns left
        Example(2, 8.0, (8, 8)),  # another photo: kept
        Example(3, 7.0, (8, 8)),  # same photo, far away: kept
        Example(0, 6.0, (1, 1)),  # same crop, other corner: kept
    )
    chosen = distinct(candidates, RF, MAP, items(), want=4)
    assert [slot for slot, _ in chosen] == [0, 2, 3, 4]
    assert [e.value for _, e in chosen] == [9.0, 8.0, 7.0, 6.0]


def test_whole_input_fields_compare_crops_and_stop_at_the_wanted_count():
    candidates = (Example(0, 3.0, None), Example(0, 2.5, None), Example(2, 2.0, None), Example(3, 1.0, None))
    chosen = distinct(candidates, None, VECTOR, items(), want=2)
    assert [slot for slot, _ in chosen] == [0, 2]  # the same crop twice is one spot
