"""Lanes: work handed to a native thread in order, a bounded way behind."""

from __future__ import annotations

import threading

import pytest

from glance_clone.common.offload import Lane


def test_pieces_are_handled_in_order_on_another_thread() -> None:
    seen: list[tuple[int, int]] = []
    lane = Lane(lambda piece: seen.append((piece, threading.get_ident())), depth=3)
    for piece in range(50):
        lane.put(piece)
    lane.join()
    assert [piece for piece, _ in seen] == list(range(50))
    assert threading.get_ident() not in {thread for _, thread in seen}


def test_put_waits_only_when_depth_pieces_are_queued() -> None:
    gate = threading.Event()
    handled: list[int] = []

    def slow(piece: int) -> None:
        gate.wait(5)
        handled.append(piece)

    lane = Lane(slow, depth=2)
    lane.put(1)
    lane.put(2)     # two queued: neither call waited for the lane
    assert handled == []
    waiter = threading.Thread(target=lane.put, args=(3,))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()    # the third waits for room
    gate.set()
    waiter.join(5)
    lane.join()
    assert handled == [1, 2, 3]


def test_put_waits_for_one_piece_not_for_the_lane_to_run_dry() -> None:
    # While the caller waits for room the lane must stay busy: a caller
    # held until every queued piece was done left a core idle.
    allowed = threading.Semaphore(0)
    handled: list[int] = []

    def gated(piece: int) -> None:
        allowed.acquire(timeout=5)
        handled.append(piece)

    lane = Lane(gated, depth=2)
    lane.put(1)
    lane.put(2)
    waiter = threading.Thread(target=lane.put, args=(3,))
    waiter.start()
    allowed.release()           # piece 1 done; piece 2 still held
    waiter.join(2)
    assert not waiter.is_alive()
    assert handled == [1]
    allowed.release()
    allowed.release()
    lane.join()
    assert handled == [1, 2, 3]


def test_an_error_is_raised_by_the_next_call_and_stays() -> None:
    handled: list[int] = []

    def fails_on_two(piece: int) -> None:
        if piece == 2:
            raise OSError("disk full")
        handled.append(piece)

    lane = Lane(fails_on_two, depth=1)
    with pytest.raises(OSError, match="disk full"):
        for piece in range(1, 10):
            lane.put(piece)
        lane.join()
    assert handled == [1]
    # The lane does not go on after a failed piece.
    with pytest.raises(OSError, match="disk full"):
        lane.put(11)
    with pytest.raises(OSError, match="disk full"):
        lane.join()
    assert handled == [1]


def test_join_of_an_unused_lane_returns() -> None:
    Lane(print).join()
