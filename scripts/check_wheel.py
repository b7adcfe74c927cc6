"""Does a built mdn_fast wheel say the truth (issue 19)? Reads the file only; installs and imports nothing.

    python scripts/check_wheel.py dist/mdn_fast-0.1.0+cu130-cp310-abi3-manylinux_2_34_x86_64.whl

Checks, each printed as a PROBLEM line when it fails (exit status 1):
  - the name is ``mdn_fast-VERSION-cp310-abi3-PLATFORM.whl``: Python's limited API from 3.10 on, and a
    manylinux platform tag (``auditwheel repair`` gives one; a plain ``linux_x86_64`` is refused by PyPI);
  - VERSION has a local part naming the compiled part (``+cu130`` for the wheel with the CUDA library,
    ``+cpu`` without), so the two wheels never share a file name;
  - its METADATA requires ``torch>=2.11`` and nothing narrower (the stable ABI needs no upper bound);
  - it holds ``mdn_fast/_C``, and no library in it imports a C++ torch symbol (``c10::``, ``at::``,
    ``torch::``, ``caffe2::``, demangled, so vtables and typeinfo count): such a symbol ties the file to
    the exact torch it was built against, which is what the stable ABI ends.
``--libs-only FILE.so ...`` runs the symbol check alone on libraries (the tests use it on a planted one).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import zipfile

WHEEL_NAME = re.compile(r"mdn_fast-([^-]+)-(cp\d+)-(abi3)-(\S+)\.whl$")
TORCH_SYMBOL = re.compile(r"(^|[^A-Za-z0-9_])(c10|at|torch|caffe2)::")
REQUIRES_TORCH = re.compile(r"Requires-Dist: torch\b(?!vision)")
WANT_REQUIRES = ["Requires-Dist: torch>=2.11"]


def torch_symbols(lib: str) -> tuple[int, list[str]]:
    """(number of undefined dynamic symbols, the sorted C++ torch ones among them) of a shared library."""
    try:
        out = subprocess.run(["nm", "-D", "--undefined-only", "-C", lib], check=True,
                             capture_output=True, text=True).stdout
    except FileNotFoundError:
        sys.exit("check_wheel: `nm` not found: install binutils (it reads the libraries' symbol tables)")
    und = [line.split(None, 1)[1] for line in out.splitlines() if line.strip()]
    return len(und), sorted({s for s in und if TORCH_SYMBOL.search(s)})


def check_libs(paths: list[str], names: list[str] | None = None) -> list[str]:
    problems = []
    for path, name in zip(paths, names or paths):
        n, bad = torch_symbols(path)
        print(f"{name}: {n} undefined symbols, {len(bad)} of them C++ torch symbols")
        if bad:
            problems.append(f"{name} imports {len(bad)} C++-mangled torch symbols, e.g. {bad[:3]}: it was "
                            "built against torch's C++ API, not the stable ABI, and loads only under that torch")
    return problems


def check_wheel(path: str) -> list[str]:
    name = os.path.basename(path)
    problems = []
    m = WHEEL_NAME.match(name)
    if not m:
        problems.append(f"{name}: not an abi3 wheel (want mdn_fast-VERSION-cp310-abi3-PLATFORM.whl)")
    else:
        version, py, _, plat = m.groups()
        if py != "cp310":
            problems.append(f"python tag {py}: the limited API floor is 3.10 (cp310)")
        if "manylinux" not in plat:
            problems.append(f"platform tag {plat}: no manylinux tag (run auditwheel repair, torch's libraries "
                            "excluded: see README)")
        if not re.search(r"\+(cu\d+|cpu)$", version):
            problems.append(f"version {version}: no local part naming the compiled part (+cu130 / +cpu)")
    with zipfile.ZipFile(path) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        requires = [l for l in z.read(meta).decode().splitlines() if REQUIRES_TORCH.match(l)]
        if requires != WANT_REQUIRES:
            problems.append(f"Requires-Dist for torch is {requires}, want {WANT_REQUIRES}")
        libs = [n for n in z.namelist() if n.endswith(".so") or ".so." in n]
        if not any(n.startswith("mdn_fast/_C.") for n in libs):
            problems.append(f"no mdn_fast/_C library in the wheel (libraries: {libs})")
        with tempfile.TemporaryDirectory() as tmp:
            for n in libs:
                z.extract(n, tmp)
            problems += check_libs([os.path.join(tmp, n) for n in libs], libs)
    print(f"{name}: {', '.join(requires) or 'no torch requirement'}; libraries {libs}")
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+", help="a wheel (or, with --libs-only, shared libraries)")
    ap.add_argument("--libs-only", action="store_true", help="only the symbol check, on .so files")
    args = ap.parse_args(argv)
    missing = [f for f in args.files if not os.path.isfile(f)]
    if missing:
        print(f"check_wheel: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    problems = check_libs(args.files) if args.libs_only else [p for f in args.files for p in check_wheel(f)]
    for p in problems:
        print("PROBLEM:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
