"""A registry-client transport that loses answers on purpose.

It sits between glance-api's registry client and the registry (in-process
through ``wsgi_transport``) so that tests can make the registry commit a
write whose answer never comes back (a reset connection), or refuse a
request before the registry sees it (connection refused).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from glance_clone.registry.client.v1 import transport as transport_mod

Match = Callable[[str, str, dict, dict], bool]


class LossyTransport:
    """Forwards registry calls; ``lose(match)`` drops the answer of the next
    matching call after the registry handled it (and with ``then_down``
    refuses every call after it until ``down`` is cleared),
    ``refuse(match, n)`` fails the next ``n`` matching calls before they
    are sent."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.rules: list[list] = []
        self.calls: list[tuple[str, str]] = []
        self.down = False

    def lose(self, match: Match, times: int = 1, then_down: bool = False) -> None:
        self.rules.append([match, times, "lose and go down" if then_down else "lose"])

    def refuse(self, match: Match, times: int = 1) -> None:
        self.rules.append([match, times, "refuse"])

    def _rule(self, method, target, headers, body):
        document = json.loads(body) if body else {}
        for rule in self.rules:
            if rule[1] > 0 and rule[0](method, target, headers, document):
                rule[1] -= 1
                return rule[2]
        return None

    def send(self, method, target, headers, body=None):
        self.calls.append((method, target))
        action = None if self.down else self._rule(method, target, headers, body)
        if action == "refuse" or self.down:
            raise transport_mod.NotSent("connection refused")
        reply = self.inner.send(method, target, headers, body)
        if action is not None and action.startswith("lose"):
            self.down = action == "lose and go down"
            raise transport_mod.TransportError("connection reset by peer")
        return reply

    def close(self) -> None:
        pass


def install(client: Any) -> LossyTransport:
    """Put a LossyTransport in front of ``client``'s transport."""
    transport = LossyTransport(client.transport)
    client.transport = transport
    return transport
