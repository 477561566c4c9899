"""The glue between a `Plugin` and the component model (the bindings
componentize-py generates as `wit_world`): used through `export`, not by
plugin authors directly."""

from .config import Config
from .driver import Driver
from .types import Outputs, Reading

# The host keeps 1 KiB of an error message (MAX_ERROR_BYTES); longer ones are cut there.
_MAX_ERROR_CHARS = 1024


def export(plugin_class):
    """The class componentize-py looks for: in the app module, write
    `WitWorld = export(MyPlugin)`. Natively (no component bindings, e.g. in
    a unit test) there is nothing to export: `None`."""
    try:
        import wit_world
        from wit_world.imports import host, types
    except ImportError:
        return None

    severities = {
        "info": types.Severity.INFO,
        "warning": types.Severity.WARNING,
        "critical": types.Severity.CRITICAL,
    }
    levels = {name.lower(): level for name, level in types.LogLevel.__members__.items()}

    def flush(out):
        for kind, item in out.items:
            if kind == "alert":
                host.emit_alert(
                    types.Alert(
                        item.sensor,
                        item.timestamp_ms,
                        severities[item.severity.value],
                        item.code,
                        item.message,
                        None if item.value is None else float(item.value),
                    )
                )
            elif kind == "summary":
                metrics = [types.Metric(name, value) for name, value in item.metrics]
                host.emit_summary(types.Summary(item.sensor, item.window_start_ms, item.window_end_ms, metrics))
            else:
                level, message = item
                host.log(levels[level.value], message)

    def failed(error):
        text = f"{type(error).__name__}: {error}" if not isinstance(error, ValueError) else str(error)
        return types.Err(text[:_MAX_ERROR_CHARS])

    class WitWorld(wit_world.WitWorld):
        driver = None

        def init(self, config, resume):
            try:
                snapshot = None if resume is None else (resume.schema, resume.data)
                WitWorld.driver = Driver(plugin_class, Config(config), snapshot)
                return WitWorld.driver.wake()
            except Exception as e:
                raise failed(e) from None

        def on_readings(self, batch):
            def run(driver, out):
                driver.plugin.on_clock(batch.now_ms)
                sensors = [(s.id, s.unit) for s in batch.sensors]
                for sample in batch.samples:
                    sensor, unit = sensors[sample.sensor]
                    driver.on_reading(Reading(sensor, sample.timestamp_ms, sample.value, unit), out)

            return self._call(run)

        def on_tick(self, now_ms):
            return self._call(lambda driver, out: driver.on_tick(now_ms, out))

        def snapshot(self):
            if WitWorld.driver is None:
                raise types.Err("the host called the plugin before `init` succeeded")
            try:
                schema, data = WitWorld.driver.snapshot()
            except Exception as e:
                raise failed(e) from None
            return types.Snapshot(schema, data)

        def _call(self, run):
            driver = WitWorld.driver
            if driver is None:
                raise types.Err("the host called the plugin before `init` succeeded")
            out = Outputs()
            try:
                run(driver, out)
                return driver.wake()
            except Exception as e:
                raise failed(e) from None
            finally:
                flush(out)

    return WitWorld
