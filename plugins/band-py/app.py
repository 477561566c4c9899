"""`band-py`: the Python twin of `plugins/band` (same outputs, byte for byte).

For each sensor it raises a warning when a reading leaves the band
`[low, high]` (`below-low`, `above-high`), an info alert when the readings
come back into it (`in-band`), and summarises each UTC hour (count, mean,
min, max) once a later reading or a tick at its end has closed it. A reading
older than the open hour is ignored. Configuration: `low` (default 70) and
`high` (default 180), in the sensor's unit.
"""

from edgewise_sdk import HOUR_MS, Alert, Plugin, Severity, Summary, Wake, export, fmt_number

DEFAULT_LOW = 70.0
DEFAULT_HIGH = 180.0
_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1


def hour_start(timestamp_ms):
    """The start of the UTC hour holding `timestamp_ms` (clamped at the start of time)."""
    return max(timestamp_ms - timestamp_ms % HOUR_MS, _I64_MIN)


class Hour:
    """The figures of the open UTC hour `[start, start + 1 h)`."""

    __slots__ = ("start", "count", "sum", "min", "max")

    def __init__(self, start, value):
        self.start = start
        self.count = 1
        self.sum = self.min = self.max = value

    def end(self):
        return min(self.start + HOUR_MS, _I64_MAX)

    def add(self, value):
        self.count += 1
        self.sum += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)

    def summary(self, sensor):
        return (
            Summary(sensor, self.start, self.end())
            .metric("count", self.count)
            .metric("mean", self.sum / self.count)
            .metric("min", self.min)
            .metric("max", self.max)
        )


class SensorState:
    """One sensor: the alert code of the condition its last reading was in
    (`None`: in band) and its open hour."""

    __slots__ = ("outside", "hour")

    def __init__(self):
        self.outside = None
        self.hour = None


class Band(Plugin):
    def __init__(self, config):
        self.low = config.float("low", DEFAULT_LOW)
        self.high = config.float("high", DEFAULT_HIGH)
        config.finish()
        if self.low >= self.high:
            raise ValueError(f"config: low ({fmt_number(self.low)}) must be below high ({fmt_number(self.high)})")
        self.sensors = {}

    def on_readings(self, readings, out):
        for reading in readings:
            self.observe(reading, out)

    def observe(self, reading, out):
        state = self.sensors.get(reading.sensor)
        if state is None:
            state = self.sensors[reading.sensor] = SensorState()
        value = reading.value
        start = hour_start(reading.timestamp_ms)
        hour = state.hour
        if hour is not None and start < hour.start:
            return
        if hour is not None and start == hour.start:
            hour.add(value)
        else:
            if hour is not None:
                out.summary(hour.summary(reading.sensor))
            state.hour = Hour(start, value)
        unit = f" {reading.unit}" if reading.unit else ""
        if value < self.low:
            outside = "below-low"
        elif value > self.high:
            outside = "above-high"
        else:
            outside = None
        if outside == state.outside:
            return
        state.outside = outside
        if outside == "below-low":
            message = f"{fmt_number(value)}{unit} below {fmt_number(self.low)}{unit}"
            out.alert(Alert.about(reading, Severity.WARNING, outside, message))
        elif outside == "above-high":
            message = f"{fmt_number(value)}{unit} above {fmt_number(self.high)}{unit}"
            out.alert(Alert.about(reading, Severity.WARNING, outside, message))
        else:
            out.alert(Alert.about(reading, Severity.INFO, "in-band", f"back in band at {fmt_number(value)}{unit}"))

    def on_tick(self, now_ms, out):
        """Close every hour that has ended by `now_ms`, sensors in sorted order."""
        for sensor in sorted(self.sensors):
            state = self.sensors[sensor]
            if state.hour is not None and state.hour.end() <= now_ms:
                out.summary(state.hour.summary(sensor))
                state.hour = None

    def next_wake(self):
        """At the end of the earliest open hour; idle when none is open."""
        ends = [s.hour.end() for s in self.sensors.values() if s.hour is not None]
        return Wake.at(min(ends)) if ends else Wake.IDLE

    def snapshot(self):
        return {
            sensor: [s.outside, None if s.hour is None else [s.hour.start, s.hour.count, s.hour.sum, s.hour.min, s.hour.max]]
            for sensor, s in self.sensors.items()
        }

    def restore(self, schema, state):
        if schema != self.SNAPSHOT_SCHEMA:
            raise ValueError(f"snapshot: schema {schema}, this version reads only {self.SNAPSHOT_SCHEMA}")
        for sensor, (outside, hour) in state.items():
            s = self.sensors[sensor] = SensorState()
            s.outside = outside
            if hour is not None:
                s.hour = Hour(hour[0], hour[3])
                s.hour.count, s.hour.sum, s.hour.max = hour[1], hour[2], hour[4]


WitWorld = export(Band)
