"""What a plugin sees and produces: readings, alerts, summaries, wakes."""

from enum import Enum

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS


class Reading:
    """One measurement: `sensor` id, `timestamp_ms`, `value` (always finite)
    and the sensor's `unit` (`""` when the source did not say)."""

    __slots__ = ("sensor", "timestamp_ms", "value", "unit")

    def __init__(self, sensor, timestamp_ms, value, unit=""):
        self.sensor = sensor
        self.timestamp_ms = timestamp_ms
        self.value = value
        self.unit = unit

    def __repr__(self):
        return f"Reading({self.sensor!r}, {self.timestamp_ms}, {self.value!r}, {self.unit!r})"


class Severity(Enum):
    """How urgently a person should look at an alert."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class LogLevel(Enum):
    """Severity of a log line."""

    TRACE = "trace"
    DEBUG = "debug"
    INFO = "info"
    WARN = "warn"
    ERROR = "error"


class Alert:
    """A condition a person should know about. `Alert.about(reading, ...)`
    takes the sensor, time and value from a reading; from `on_tick`, build
    one with `Alert(sensor, now_ms, ...)` (value `None`)."""

    __slots__ = ("sensor", "timestamp_ms", "severity", "code", "message", "value")

    def __init__(self, sensor, timestamp_ms, severity, code, message, value=None):
        self.sensor = sensor
        self.timestamp_ms = timestamp_ms
        self.severity = severity
        self.code = code
        self.message = message
        self.value = value

    @classmethod
    def about(cls, reading, severity, code, message):
        """An alert about `reading`, carrying its sensor, timestamp and value."""
        return cls(reading.sensor, reading.timestamp_ms, severity, code, message, reading.value)

    def __repr__(self):
        return f"Alert({self.sensor!r}, {self.timestamp_ms}, {self.severity}, {self.code!r}, {self.message!r}, {self.value!r})"


class Summary:
    """Figures for one sensor over the closed window
    `[window_start_ms, window_end_ms)`, in the order added with `metric`."""

    __slots__ = ("sensor", "window_start_ms", "window_end_ms", "metrics")

    def __init__(self, sensor, window_start_ms, window_end_ms):
        self.sensor = sensor
        self.window_start_ms = window_start_ms
        self.window_end_ms = window_end_ms
        self.metrics = []

    def metric(self, name, value):
        """Add a figure (builder style): `Summary(s, a, b).metric("mean", m)`."""
        self.metrics.append((name, float(value)))
        return self

    def get(self, name):
        """The value of the figure called `name`, or `None`."""
        return next((v for n, v in self.metrics if n == name), None)


class Wake:
    """When the plugin next needs `on_tick`: `Wake.IDLE` (not until a
    reading arrives), `Wake.at(ms)` or `Wake.every(ms)` (on a grid of that
    step, the default: every five minutes, as in the Rust SDK)."""

    __slots__ = ("kind", "ms")

    def __init__(self, kind, ms=None):
        self.kind = kind
        self.ms = ms

    @classmethod
    def at(cls, ms):
        return cls("at", ms)

    @classmethod
    def every(cls, step_ms):
        return cls("every", step_ms)


Wake.IDLE = Wake("idle")
DEFAULT_WAKE = Wake.every(5 * MINUTE_MS)


class Outputs:
    """What one call produced, in order: ("alert", Alert), ("summary",
    Summary) or ("log", (LogLevel, str)). The SDK hands them to the host after
    the call; a native test reads `alerts`, `summaries` and `logs`."""

    __slots__ = ("items",)

    def __init__(self):
        self.items = []

    def alert(self, alert):
        self.items.append(("alert", alert))

    def summary(self, summary):
        self.items.append(("summary", summary))

    def log(self, level, message):
        self.items.append(("log", (level, str(message))))

    @property
    def alerts(self):
        return [o for k, o in self.items if k == "alert"]

    @property
    def summaries(self):
        return [o for k, o in self.items if k == "summary"]

    @property
    def logs(self):
        return [o for k, o in self.items if k == "log"]
