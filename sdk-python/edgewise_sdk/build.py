"""`python -m edgewise_sdk.build APP_DIR [-o OUT.wasm]`: build a plugin
component from the module `app` in APP_DIR with componentize-py, and drop
any DWARF debug sections left in it (componentize-py 0.17 left ~18 MB of
them; the host refuses bundles over 32 MiB).

componentize-py must be importable (`pip install componentize-py==0.25.1`,
or PYTHONPATH pointing at a `pip install --target` folder); releases before
0.19 are refused: the components they write leak every call's arguments."""

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

from . import strip

SDK_DIR = Path(__file__).resolve().parent.parent
# The contract, from this repository (sdk-python/../wit/v0.2).
DEFAULT_WIT = SDK_DIR.parent / "wit" / "v0.2"
WORLD = "sensor-plugin"
# The release the SDK is tested with (procs/src/componentize.rs pins the same).
TESTED_VERSION = "0.25.1"
# componentize-py before 0.19 (its own glue, replaced by wit-dylib in 0.19)
# never frees an export's arguments: each call leaks the argument objects
# (a reference too many on each parameter and list element) and the buffers
# the host wrote them into, so a plugin's memory grows with every call until
# the instance hits its limit (sdk-python/README.md).
FIRST_WITHOUT_LEAK = (0, 19)


def check_version(version):
    """Refuse a componentize-py `version` whose components leak memory."""
    numbers = tuple(int(n) for n in re.findall(r"\d+", version)[:2])
    if numbers < FIRST_WITHOUT_LEAK:
        sys.exit(
            f"componentize-py {version} writes components that leak every call's arguments "
            f"(their memory grows until the host stops them): `pip install componentize-py=={TESTED_VERSION}`"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m edgewise_sdk.build", description=__doc__.splitlines()[0])
    parser.add_argument("app_dir", type=Path, help="folder holding the plugin's `app.py`")
    parser.add_argument("-o", "--output", type=Path, help="the component to write [default: APP_DIR/NAME.wasm]")
    parser.add_argument("--module", default="app", help="the app module [default: app]")
    parser.add_argument("--wit", type=Path, default=DEFAULT_WIT, help=f"the contract's WIT folder [default: {DEFAULT_WIT}]")
    parser.add_argument("--keep-debug", action="store_true", help="keep the DWARF sections")
    args = parser.parse_args(argv)
    try:
        import componentize_py
    except ImportError:
        sys.exit(f"componentize-py is not installed: `pip install componentize-py=={TESTED_VERSION}`")
    try:
        check_version(metadata.version("componentize-py"))
    except metadata.PackageNotFoundError:
        print("warning: cannot tell componentize-py's version (no package metadata)", file=sys.stderr)
    output = args.output or args.app_dir / (args.app_dir.resolve().name + ".wasm")
    raw = output.with_name(output.name + ".partial")
    componentize = [
        "componentize-py",
        "-d", str(args.wit),
        "-w", WORLD,
        "componentize",
        "-p", str(args.app_dir),
        "-p", str(SDK_DIR),
        "-o", str(raw),
        args.module,
    ]  # fmt: skip
    sys.argv = componentize
    componentize_py.script()
    data = raw.read_bytes()
    if not args.keep_debug:
        data = strip.strip_debug(data)
    output.write_bytes(data)
    raw.unlink()
    print(f"wrote {output} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
