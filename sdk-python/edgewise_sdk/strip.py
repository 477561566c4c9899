"""Drop the DWARF custom sections (`.debug_*`) from a component and the
core modules inside it: they describe CPython's C code for a debugger, take
about half of a componentize-py component, and do not change what it runs."""


def _leb(data, i):
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def _uleb(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


_CUSTOM, _CORE_MODULE, _COMPONENT = 0, 1, 4


def strip_debug(data, component=True):
    """`data` (a component, or a core module when `component` is false)
    without its `.debug_*` custom sections, at every nesting level."""
    if data[:4] != b"\0asm":
        raise ValueError("not a WebAssembly binary")
    out = bytearray(data[:8])
    i = 8
    while i < len(data):
        section = data[i]
        size, start = _leb(data, i + 1)
        body = data[start : start + size]
        if len(body) != size:
            raise ValueError("truncated section")
        i = start + size
        if section == _CUSTOM:
            name_len, name_at = _leb(body, 0)
            if body[name_at : name_at + name_len].startswith(b".debug_"):
                continue
        elif component and section == _CORE_MODULE:
            body = strip_debug(body, component=False)
        elif component and section == _COMPONENT:
            body = strip_debug(body, component=True)
        out.append(section)
        out += _uleb(len(body))
        out += body
    return bytes(out)
