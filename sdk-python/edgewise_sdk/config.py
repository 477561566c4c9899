"""Typed access to a plugin's string-to-string configuration, with the Rust
SDK's rules and messages: read each key with a getter naming its default,
then `finish()` refuses keys nothing read."""

import re

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_DURATION = re.compile(r"(\d+)\s*(ms|s|m|min|h)")
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "min": 60_000, "h": 3_600_000}
_I64_MAX = (1 << 63) - 1
_U64_MAX = (1 << 64) - 1


class ConfigError(ValueError):
    """A value that does not parse, or keys nothing read."""


class Config:
    """A plugin's configuration: the manifest's defaults overlaid with the
    operator's, as `key = value` strings."""

    def __init__(self, pairs=()):
        self._values = dict(pairs)
        self._read = set()

    def _raw(self, key):
        self._read.add(key)
        value = self._values.get(key)
        return None if value is None else value.strip()

    def string(self, key, default):
        """The string value of `key`, or `default`."""
        raw = self._raw(key)
        return default if raw is None else raw

    def float(self, key, default):
        """A finite number, e.g. `70` or `2.5`."""
        raw = self._raw(key)
        if raw is None:
            return float(default)
        value = float(raw) if _NUMBER.fullmatch(raw) else float("nan")
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"config key `{key}`: `{raw}` is not a finite number")
        return value

    def int(self, key, default):
        """A whole number (0 or more)."""
        raw = self._raw(key)
        if raw is None:
            return int(default)
        if not re.fullmatch(r"\+?\d+", raw) or int(raw) > _U64_MAX:
            raise ConfigError(f"config key `{key}`: `{raw}` is not a whole number")
        return int(raw)

    def duration_ms(self, key, default_ms):
        """A positive duration written with a unit: `500ms`, `90s`, `30m`, `1h`."""
        raw = self._raw(key)
        if raw is None:
            return int(default_ms)
        match = _DURATION.fullmatch(raw)
        ms = int(match.group(1)) * _UNIT_MS[match.group(2)] if match else 0
        if not 0 < ms <= _I64_MAX:
            raise ConfigError(f"config key `{key}`: `{raw}` is not a duration such as `90s`, `30m` or `1h`")
        return ms

    def finish(self):
        """Refuse every key that no getter has read."""
        unknown = sorted(k for k in self._values if k not in self._read)
        if unknown:
            raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
