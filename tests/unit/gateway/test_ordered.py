"""Replies leave in the order their messages came, each once it and all before it are done."""

from __future__ import annotations

from gateway.listeners.ordered import OrderedReplies


def test_a_reply_waits_for_every_earlier_one_then_all_ready_go_in_one_release() -> None:
    released: list[list[bytes]] = []
    replies: OrderedReplies[bytes] = OrderedReplies(released.append)
    first, second, third = replies.add(b"1"), replies.add(b"2"), replies.add(b"3")
    third()
    second()
    assert released == []
    first()
    assert released == [[b"1", b"2", b"3"]]
    assert len(replies) == 0


def test_a_reply_done_at_once_goes_at_once() -> None:
    released: list[list[bytes]] = []
    replies: OrderedReplies[bytes] = OrderedReplies(released.append)
    replies.add(b"a")()
    later = replies.add(b"b")
    assert (released, len(replies)) == ([[b"a"]], 1)
    later()
    assert released == [[b"a"], [b"b"]]
