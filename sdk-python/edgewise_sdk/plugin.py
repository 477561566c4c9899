"""The base class of a Python plugin."""

from .types import DEFAULT_WAKE


class Plugin:
    """A sensor plugin, as the Rust SDK's `Plugin` trait.

    The host builds one instance with `__init__(config)` (read each key with
    the `Config` getters, then `config.finish()`; raise to refuse to start),
    then calls `on_readings` with readings and `on_tick` when the plugin
    asks for it (`next_wake`). Time comes only from reading timestamps and
    ticks: never read the wall clock, so a replay gives what a live run does.
    An exception fails that one call; outputs written before it are still
    delivered.
    """

    #: The layout version of what `snapshot` returns (`[snapshot] writes`).
    SNAPSHOT_SCHEMA = 1

    def __init__(self, config):
        config.finish()

    def on_readings(self, readings, out):
        """Handle readings (a list of `Reading`), writing to `out` (`Outputs`)."""

    def on_clock(self, now_ms):
        """The host's clock as it hands over readings; the default ignores it."""

    def on_tick(self, now_ms, out):
        """The host's clock reached the plugin's wake."""

    def next_wake(self):
        """When the plugin next needs `on_tick` (a `Wake`), asked after every
        reading and tick; the default ticks every five minutes."""
        return DEFAULT_WAKE

    def snapshot(self):
        """The plugin's whole state as JSON-able data (`None`: no snapshots)."""
        return None

    def restore(self, schema, state):
        """Take the state a `snapshot` wrote in `schema`, right after `__init__`."""
        raise ValueError("this plugin keeps no snapshot (it implements neither `snapshot` nor `restore`)")
