"""Background loops: registered by app factories, started by the serving
process, replaced (not doubled) when the app is built again."""

from __future__ import annotations

import eventlet

from glance_clone.common import background


def test_start_runs_the_registered_loops_once_each() -> None:
    runs: list[str] = []

    def loop(name: str):
        def run() -> None:
            while True:
                runs.append(name)
                eventlet.sleep(0.001)
        return run

    background.register("test loop", loop("first"))
    try:
        assert background.start() >= 1
        eventlet.sleep(0.01)
        assert "first" in runs
        # A reloaded app registers again under the same name: the old loop
        # stops, the new one runs, never both.
        background.register("test loop", loop("second"))
        background.start()
        runs.clear()
        eventlet.sleep(0.01)
        assert "second" in runs and "first" not in runs
    finally:
        background._loops.pop("test loop", None)
        background.start()
