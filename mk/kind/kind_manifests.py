"""Print a manifest kind keeps as a Go constant (pkg/build/nodeimage/const_*.go).

The offline node image (mk/kind/node-image.sh) writes kind's default storage manifest to
/kind/manifests/ the way `kind build node-image` does; reading it from the kind module of the
pinned version keeps it in step with kind instead of a copy kept by hand.
Usage: python3 kind_manifests.py KIND_MODULE_DIR CONST_NAME
"""

import pathlib
import re
import sys


def go_constants(source: str) -> dict[str, str]:
    simple = dict(re.findall(r'^const (\w+) = "([^"]*)"', source, re.M))
    out = dict(simple)
    for name, expr in re.findall(r"^const (\w+) = (`.*?`(?:\s*\+\s*(?:\w+|`.*?`))*)", source, re.M | re.S):
        parts = re.findall(r"`(.*?)`|(\w+)", expr, re.S)
        out[name] = "".join(lit if lit or not ident else simple[ident] for lit, ident in parts)
    return out


def main() -> None:
    module, name = pathlib.Path(sys.argv[1]), sys.argv[2]
    for path in sorted((module / "pkg/build/nodeimage").glob("const*.go")):
        constants = go_constants(path.read_text())
        if name in constants:
            sys.stdout.write(constants[name])
            return
    sys.exit(f"kind_manifests: no constant {name} in {module}")


if __name__ == "__main__":
    main()
