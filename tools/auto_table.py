"""Order of the fused backends for ``backend="auto"``, from a benchmark results file.

``python -m tools.auto_table RESULTS [--write]``

RESULTS is a benchmark log (``bench.jsonl``: one case per line, what ``scripts/gpu_check.sh`` writes to
``$OUT/gpu_check/``, committed as ``benchmarks/results/gpu-<device>-<date>/bench.jsonl``) or a results
JSON of ``pytest benchmarks/`` (``benchmarks/results/<device>-<date>.json``). Per op and dtype it takes the
fused backends' medians at the paper size (B=256, T=8, K=6, H=8, Dh=32 / D=256, masked), in mode fwd+bwd
when any fused backend has an ok row there, else fwd; rows whose status is not ok are never used. It
prints each median and its ratio to the fastest, and the order "auto" will try. ``--write`` regenerates
``mdn_fast/ops/_auto_table.py``: the entries of this file's device type are replaced, the other device
types' entries are kept.

Only the fused backends "auto" considers on that device type (``_backends._AUTO_ORDER``) are ordered: on
CPU that is the C++ extension alone (Triton runs there only under the interpreter). The file is refused,
with what is missing, when it mixes devices, has no fused-backend rows at the paper size, or only rows
that did not run ok.
"""
from __future__ import annotations

import argparse
import json
import pprint
import sys
from pathlib import Path

from mdn_fast.ops import _auto_table, _backends
from mdn_fast.ops._capabilities import OPS

try:
    from benchmarks import _progress
    from benchmarks._harness import DTYPES, PAPER
except ImportError as e:   # the benchmark harness needs the test tools (pytest, pytest-benchmark)
    raise SystemExit(f"tools.auto_table: {e}; install the test extra first: "
                     "pip install --no-build-isolation -e '.[test]'") from None

REPO = Path(__file__).resolve().parents[1]
TABLE_PATH = REPO / "mdn_fast" / "ops" / "_auto_table.py"
#: The size the order is measured at: the paper's (B=256 clips of T=8 frames, K=6 entities, D=256, H=8).
SIZE = dict(B=256, T=8, **PAPER)
MODES = ("fwd+bwd", "fwd")          # preferred first


class Refused(SystemExit):
    """The results file cannot give an order (the message names the file and what is missing)."""


def load_rows(path: Path) -> list[dict]:
    """The case rows of a log (each with its ``environment``) or of a results JSON (its environment and
    device label copied into each row)."""
    if not path.exists():
        raise Refused(f"{path}: no such file")
    if path.suffix == ".json":
        payload = json.loads(path.read_text())
        env = {**payload.get("environment", {}), "device": payload.get("device")}
        return [{**r, "environment": env} for r in payload.get("results", [])]
    return _progress.read_log(path)


def _at_size(r: dict) -> bool:
    c = r["config"]
    return (all(c.get(k) == v for k, v in SIZE.items()) and c.get("masked") is True
            and not c.get("variant"))


def _fused(device_type: str) -> list[str]:
    """The fused backends "auto" considers on this device type (the reference is not ordered: it closes)."""
    return [b for b in _backends._AUTO_ORDER.get(device_type, ()) if b != "reference"]


def _candidates(rows: list[dict]) -> list[dict]:
    """The fused-backend rows of the ops at the paper size in a mode that may be used, whatever status."""
    return [r for r in rows if r["subject"] in OPS and r["kind"] == "backend"
            and r["case"] in _fused(r["config"]["device"]) and r["config"]["mode"] in MODES and _at_size(r)]


def decide(rows: list[dict], path: Path) -> dict:
    """``{(device type, op, dtype): entry}`` from the rows of one device (``Refused`` when impossible)."""
    if not rows:
        raise Refused(f"{path}: no result rows")
    devices = {(r["config"]["device"], (r.get("environment") or {}).get("device")) for r in rows}
    if len(devices) > 1:
        raise Refused(f"{path}: mixes devices {sorted(devices, key=str)}; give one device's results")
    dev = rows[0]["config"]["device"]
    fused = _fused(dev)
    cands = _candidates(rows)
    size = ", ".join(f"{k}={v}" for k, v in SIZE.items()) + ", masked"
    if not cands:
        raise Refused(f"{path}: no fused-backend rows ({'/'.join(fused) or 'none on ' + dev}) of "
                      f"{'/'.join(OPS)} in mode {' or '.join(MODES)} at {size}")
    ok = [r for r in cands if r["status"] == "ok" and r.get("median_s")]
    if not ok:
        why = sorted({f"{r['case']} {r['status']}: {str(r.get('reason') or '')[:80]}" for r in cands})
        raise Refused(f"{path}: none of the {len(cands)} fused-backend rows at {size} ran ok ({'; '.join(why)})")
    table = {}
    for op in OPS:
        for dt in sorted({r["config"]["dtype"] for r in ok if r["subject"] == op}):
            mine = [r for r in ok if r["subject"] == op and r["config"]["dtype"] == dt]
            mode = next(m for m in MODES if any(r["config"]["mode"] == m for r in mine))
            # one median per backend (a resumed log may hold a case twice: the last logged wins)
            med = {r["case"]: r["median_s"] for r in mine if r["config"]["mode"] == mode}
            env = next(r for r in mine if r["config"]["mode"] == mode).get("environment") or {}
            order = tuple(sorted(med, key=med.get))
            table[(dev, op, str(DTYPES[dt]).removeprefix("torch."))] = {
                "order": order, "medians_s": {b: med[b] for b in order}, "mode": mode,
                "sizes": {**SIZE, "Dh": SIZE["D"] // SIZE["H"]}, "masked": True,
                "source": _rel(path), "device": env.get("device"), "torch": env.get("torch"),
                "triton": env.get("triton"), "date": env.get("date"), "git_commit": env.get("git_commit"),
                "git_dirty": env.get("git_dirty")}
    return table


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def report(table: dict, rows: list[dict]) -> str:
    """The medians, their ratio to the fastest, the order "auto" tries, and the rows not used."""
    lines = ["| device | op | dtype | mode | backend | median ms | x fastest |", "|---|---|---|---|---|---|---|"]
    for (dev, op, dt), e in sorted(table.items()):
        best = e["medians_s"][e["order"][0]]
        for b in e["order"]:
            m = e["medians_s"][b]
            lines.append(f"| {dev} | {op} | {dt} | {e['mode']} | {b} | {m * 1e3:.4g} | {m / best:.2f} |")
    lines.append("")
    for (dev, op, dt), e in sorted(table.items()):
        new = _backends.auto_order(dev, op, dt, table)[0]
        assumed = _backends._AUTO_ORDER.get(dev, ("reference",))
        lines.append(f"auto on {dev}, {op} {dt}: {', '.join(new)}  (assumed: {', '.join(assumed)}; "
                     f"measured on {e['device']} {str(e['date'])[:10]}, commit {str(e['git_commit'])[:10]})")
    bad = sorted({(r["subject"], r["config"]["mode"], r["config"]["dtype"], r["case"], r["status"])
                  for r in _candidates(rows) if r["status"] != "ok"})
    for subject, mode, dt, case, status in bad:
        lines.append(f"not used: {subject} {mode} {dt} {case}: status {status}")
    return "\n".join(lines)


HEADER = '''"""Measured order of the fused backends for ``backend="auto"`` (read by ``mdn_fast.ops._backends``).

Generated by ``python -m tools.auto_table RESULTS --write``; do not edit: regenerate it from a new
results file. Key: (device type, op, dtype). ``order``: the fused backends measured, fastest first (medians
in ``medians_s``, seconds, at ``sizes``/``masked`` in ``mode``); ``source``, ``device``, ``date``,
``git_commit``, ``torch``, ``triton``: where the numbers came from. A (device type, op, dtype) without an
entry uses ``_backends._AUTO_ORDER`` (an assumption).
"""

'''


def render(table: dict) -> str:
    return HEADER + "TABLE = " + pprint.pformat(table, width=110, sort_dicts=True) + "\n"


def merged(table: dict) -> dict:
    """The current table with this device type's entries replaced by ``table``'s."""
    devs = {k[0] for k in table}
    return {**{k: v for k, v in _auto_table.TABLE.items() if k[0] not in devs}, **table}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path, help="bench.jsonl (gpu_check) or a benchmarks/results/*.json")
    ap.add_argument("--write", action="store_true", help=f"regenerate {_rel(TABLE_PATH)}")
    ap.add_argument("--out", type=Path, default=TABLE_PATH, help=argparse.SUPPRESS)  # tests write elsewhere
    args = ap.parse_args(argv)
    rows = load_rows(args.results)
    table = decide(rows, args.results)
    print(report(table, rows))
    if args.write:
        args.out.write_text(render(merged(table)))
        print(f"wrote {_rel(args.out)}: commit it with {_rel(args.results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
