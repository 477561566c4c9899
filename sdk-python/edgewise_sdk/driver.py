"""Drives a `Plugin` as the host does, with the Rust SDK's rules (its
`Driver`): a wake that falls inside a batch ticks the plugin before the
first reading past it, a tick comes at most once a second, and a snapshot
holds the clock with the state. The component glue uses it, and so can a
native test."""

import json

from .types import Outputs, Reading

MIN_WAKE_INTERVAL_MS = 1_000
_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1
_SNAPSHOT_FORMAT = 1


def grid_at_or_after(timestamp_ms, step_ms):
    """The first multiple of `step_ms` at or after `timestamp_ms`."""
    step = max(step_ms, 1)
    rest = timestamp_ms % step
    return timestamp_ms if rest == 0 else min(timestamp_ms + step - rest, _I64_MAX)


class Driver:
    """A plugin and what it has seen of the host clock."""

    def __init__(self, plugin_class, config, resume=None):
        """Build the plugin from `config` (a `Config`) and, when given, a
        `(schema, data)` snapshot a driver wrote."""
        self.plugin = plugin_class(config)
        self.last_tick_ms = None
        self.newest_ms = None
        if resume is not None:
            schema, data = resume
            try:
                saved = json.loads(bytes(data).decode("utf-8"))
                fmt = saved["format"]
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"the snapshot was not written by this SDK: {e}") from e
            if fmt != _SNAPSHOT_FORMAT:
                raise ValueError(f"the snapshot's SDK format is {fmt}; this SDK reads {_SNAPSHOT_FORMAT}")
            self.plugin.restore(schema, saved["state"])
            self.last_tick_ms = saved["last_tick_ms"]
            self.newest_ms = saved["newest_ms"]

    def on_readings(self, now_ms, readings, out):
        """A batch handed over when the host clock stood at `now_ms`."""
        self.plugin.on_clock(now_ms)
        for reading in readings:
            self.on_reading(reading, out)

    def on_reading(self, reading, out):
        """One reading of a batch, after the ticks due before it."""
        ts = reading.timestamp_ms
        due = self._tick_due_before(ts)
        while due is not None:
            self.on_tick(due, out)
            due = self._tick_due_before(ts)
        self.plugin.on_readings([reading], out)
        if self.newest_ms is None or ts > self.newest_ms:
            self.newest_ms = ts

    def _tick_due_before(self, timestamp_ms):
        wake = self.wake()
        if wake is None:
            return None
        now = timestamp_ms if self.newest_ms is None else self.newest_ms
        floor = _I64_MIN if self.last_tick_ms is None else min(self.last_tick_ms + MIN_WAKE_INTERVAL_MS, _I64_MAX)
        due = max(wake, floor, now)
        return due if timestamp_ms > due else None

    def on_tick(self, now_ms, out):
        """A tick of the host clock at `now_ms`."""
        self.last_tick_ms = now_ms
        self.plugin.on_tick(now_ms, out)

    def wake(self):
        """When the plugin next needs a tick, as the host is told; `None`:
        not until a reading arrives."""
        wake = self.plugin.next_wake()
        if wake.kind == "at":
            return wake.ms
        if wake.kind == "every":
            if self.last_tick_ms is not None:
                return grid_at_or_after(min(self.last_tick_ms + 1, _I64_MAX), wake.ms)
            if self.newest_ms is not None:
                return grid_at_or_after(self.newest_ms, wake.ms)
        return None

    def snapshot(self):
        """`(schema, bytes)`: the plugin's state and the clock."""
        state = self.plugin.snapshot()
        if state is None:
            raise ValueError("this plugin keeps no snapshot (it implements neither `snapshot` nor `restore`)")
        saved = {
            "format": _SNAPSHOT_FORMAT,
            "last_tick_ms": self.last_tick_ms,
            "newest_ms": self.newest_ms,
            "state": state,
        }
        data = json.dumps(saved, separators=(",", ":"), allow_nan=False).encode("utf-8")
        return type(self.plugin).SNAPSHOT_SCHEMA, data

    def replay(self, readings):
        """For native tests: every reading, one batch each, clock at the
        reading; returns the `Outputs`."""
        out = Outputs()
        for reading in readings:
            if not isinstance(reading, Reading):
                reading = Reading(*reading)
            self.on_readings(reading.timestamp_ms, [reading], out)
        return out
