"""Edgewise plugins in Python, on the same contract as the Rust SDK
(`edgewise:plugin/sensor-plugin@0.2.0`, built into a component by
componentize-py).

A plugin is a subclass of `Plugin`; the app module exports it with
`WitWorld = export(MyPlugin)`. Build with `python -m edgewise_sdk.build`
(see README.md). Everything but `export` works in plain CPython, so a plugin
is tested natively with `Driver`.
"""

from .config import Config
from .driver import Driver
from .glue import export
from .numbers import fmt_number
from .plugin import Plugin
from .types import (
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    Alert,
    LogLevel,
    Outputs,
    Reading,
    Severity,
    Summary,
    Wake,
)

__all__ = [
    "Alert",
    "Config",
    "DAY_MS",
    "Driver",
    "HOUR_MS",
    "LogLevel",
    "MINUTE_MS",
    "Outputs",
    "Plugin",
    "Reading",
    "Severity",
    "Summary",
    "Wake",
    "export",
    "fmt_number",
]
