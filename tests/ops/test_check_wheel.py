"""scripts/check_wheel.py, the wheel matrix's truth check (issue 19): it must refuse what it is there to
refuse (a library built on torch's C++ API, a non-abi3 or untagged wheel, a bounded torch requirement)
and pass the extension this checkout built."""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from tests._paths import REPO

ROOT = REPO
_spec = importlib.util.spec_from_file_location("check_wheel", ROOT / "scripts" / "check_wheel.py")
check_wheel = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_wheel)

needs_tools = pytest.mark.skipif(not (shutil.which("g++") and shutil.which("nm")), reason="needs g++ and nm")


def _so(tmp_path: Path, name: str, source: str) -> Path:
    src, lib = tmp_path / f"{name}.cpp", tmp_path / f"{name}.so"
    src.write_text(source)
    subprocess.run(["g++", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    return lib


# A library calling a function of torch's C++ API (declared only: left undefined, as in a real build).
_TORCH_CPP = "namespace c10 { void f(); }\nextern \"C\" void entry() { c10::f(); }\n"
# One using only the C ABI (the stable ABI's shim is C functions: aoti_torch_*).
_C_ONLY = "extern \"C\" int aoti_torch_fake(int);\nextern \"C\" int entry(int x) { return aoti_torch_fake(x); }\n"


@needs_tools
def test_a_library_on_the_cpp_api_is_refused(tmp_path):
    problems = check_wheel.check_libs([str(_so(tmp_path, "cpp_api", _TORCH_CPP))])
    assert len(problems) == 1 and "c10::f()" in problems[0], problems


@needs_tools
def test_a_c_abi_library_passes(tmp_path):
    assert check_wheel.check_libs([str(_so(tmp_path, "c_abi", _C_ONLY))]) == []


def _wheel(tmp_path: Path, name: str, requires: str, lib: Path | None) -> Path:
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mdn_fast-0.1.0.dist-info/METADATA", f"Metadata-Version: 2.1\nName: mdn-fast\n{requires}\n"
                   "Requires-Dist: torchvision\n")
        if lib is not None:
            z.write(lib, "mdn_fast/_C.abi3.so")
    return path


@needs_tools
def test_a_truthful_wheel_passes(tmp_path):
    lib = _so(tmp_path, "c_abi", _C_ONLY)
    whl = _wheel(tmp_path, "mdn_fast-0.1.0+cu130-cp310-abi3-manylinux_2_34_x86_64.whl",
                 "Requires-Dist: torch>=2.11", lib)
    assert check_wheel.check_wheel(str(whl)) == []
    assert check_wheel.main([str(whl)]) == 0


@needs_tools
def test_each_untruth_is_named(tmp_path):
    lib = _so(tmp_path, "cpp_api", _TORCH_CPP)
    whl = _wheel(tmp_path, "mdn_fast-0.1.0-cp311-cp311-linux_x86_64.whl", "Requires-Dist: torch<2.15,>=2.11", lib)
    text = "\n".join(check_wheel.check_wheel(str(whl)))
    assert "not an abi3 wheel" in text and "torch<2.15" in text and "C++-mangled" in text, text
    whl = _wheel(tmp_path, "mdn_fast-0.1.0-cp310-abi3-linux_x86_64.whl", "Requires-Dist: torch>=2.11", None)
    text = "\n".join(check_wheel.check_wheel(str(whl)))
    assert "no manylinux tag" in text and "no local part" in text and "no mdn_fast/_C" in text, text
    assert check_wheel.main([str(whl)]) == 1
    assert check_wheel.main([str(tmp_path / "missing.whl")]) == 2


@pytest.mark.skipif(not shutil.which("nm"), reason="needs nm")
def test_this_checkouts_extension_imports_no_cpp_torch_symbol():
    """The libraries this checkout built (none: skipped) are on the stable ABI."""
    import mdn_fast

    libs = sorted(str(p) for p in Path(mdn_fast.__file__).parent.glob("_C*.so"))
    if not libs:
        pytest.skip("the extension is not built in this checkout")
    assert check_wheel.check_libs(libs) == [], libs
