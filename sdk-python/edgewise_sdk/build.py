"""`python -m edgewise_sdk.build APP_DIR [-o OUT.wasm]`: build a plugin
component from the module `app` in APP_DIR with componentize-py, and drop
the DWARF debug sections it embeds (about half of the ~36 MB; the host
refuses bundles over 32 MiB).

componentize-py must be importable (`pip install componentize-py==0.17.2`,
or PYTHONPATH pointing at a `pip install --target` folder)."""

import argparse
import sys
from pathlib import Path

from . import strip

SDK_DIR = Path(__file__).resolve().parent.parent
# The contract, from this repository (sdk-python/../wit/v0.2).
DEFAULT_WIT = SDK_DIR.parent / "wit" / "v0.2"
WORLD = "sensor-plugin"


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
        sys.exit("componentize-py is not installed: `pip install componentize-py==0.17.2`")
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
