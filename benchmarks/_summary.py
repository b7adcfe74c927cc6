"""Short summary of a results JSON: one row per configuration, the fastest backend against the best
baseline. ``python -m benchmarks._summary [results.json ...]`` (default: the newest file in
``benchmarks/results/``); ``--filter TEXT`` keeps rows whose subject or config contains TEXT."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def _ms(s):
    return "-" if s is None else f"{s * 1e3:.3g}"


def _first_line(text) -> str:
    return (text or "").strip().split("\n", 1)[0]


FUSED_SUBJECTS = ("entity_attention", "routed_merge", "dual_path_block", "micro_dualnet")
#: Column order of the baselines in the short table (any other baseline follows, sorted): eager reference,
#: torch.compile of it, SDPA and FlexAttention (entity_attention), torch.compile "reduce-overhead" (CUDA
#: graphs; the block and the model).
BASELINE_ORDER = ("eager", "compile", "sdpa", "flex", "compile-ro")


def short_table(rows: list[dict]) -> str:
    """Per fused op and configuration, each backend's median, its % of the bandwidth floor and its
    speed-up over each baseline measured in the same group (what a GPU check prints last)."""
    groups: dict = {}
    for r in rows:
        if r["subject"] in FUSED_SUBJECTS:
            groups.setdefault((r["subject"], r["group"]), []).append(r)
    # a column per baseline measured somewhere (one skipped everywhere, e.g. CUDA graphs on CPU, has none)
    present = {r["case"] for g in groups.values() for r in g if r["kind"] == "baseline" and r["status"] == "ok"}
    base_names = [b for b in BASELINE_ORDER if b in present] + sorted(present - set(BASELINE_ORDER))
    head = ["op", "config", "backend", "median ms", "% floor"] + [f"vs {b}" for b in base_names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    not_run: dict = {}
    for (subject, group), rs in sorted(groups.items(), key=lambda kv: FUSED_SUBJECTS.index(kv[0][0])):
        base = {r["case"]: r["median_s"] for r in rs if r["kind"] == "baseline" and r["status"] == "ok"}
        for r in rs:
            if r["kind"] != "backend":
                continue
            if r["status"] == "skipped":           # one line per backend and reason, under the table
                not_run.setdefault((r["case"], _first_line(r.get("reason"))[:150]), []).append(group)
                continue
            if r["status"] != "ok":
                why = _first_line(r.get("reason"))[:60].replace("|", "/")
                lines.append(f"| {subject} | {group} | {r['case']} | {r['status']}{': ' + why if why else ''} |"
                             + " |" * (len(head) - 4))
                continue
            fl = f"{r['floor_fraction']:.0%}" if r.get("floor_fraction") is not None else "-"
            ratios = [f"{base[b] / r['median_s']:.2f}x" if b in base else "-" for b in base_names]
            lines.append("| " + " | ".join([subject, group, r["case"], _ms(r["median_s"]), fl] + ratios) + " |")
    for (case, why), where in not_run.items():
        lines.append(f"not run: {case} in {len(where)} configuration(s): {why}")
    if not groups:
        lines.append("(no fused-op results)")
    return "\n".join(lines)


def summarize(payload: dict, filt: str | None = None) -> str:
    groups: dict = {}
    for r in payload["results"]:
        groups.setdefault((r["subject"], r["group"]), []).append(r)
    env = payload["environment"]
    lines = [f"{payload['device']} | torch {env['torch']} | triton {env['triton']} | {env['date']} | "
             f"commit {str(env['git_commit'])[:10]}",
             "",
             "| subject | config | best baseline (ms) | fastest backend (ms) | speed-up | floor | all backends |",
             "|---|---|---|---|---|---|---|"]
    for (subject, group), rows in groups.items():
        if filt and filt not in subject and filt not in group:
            continue
        ok = [r for r in rows if r["status"] == "ok"]
        base = [r for r in ok if r["kind"] == "baseline"]
        back = [r for r in ok if r["kind"] == "backend"]
        if not ok:
            lines.append(f"| {subject} | {group} | - | - | - | - | {rows[0]['status']} |")
            continue
        b = min(base, key=lambda r: r["median_s"]) if base else None
        f = min(back, key=lambda r: r["median_s"]) if back else None
        sp = f"{f['speedup_vs_best_baseline']:.2f}x" if f and f["speedup_vs_best_baseline"] else "-"
        fl = f"{f['floor_fraction']:.1%}" if f and f.get("floor_fraction") is not None else "-"
        others = ", ".join(f"{r['case']} {r['speedup_vs_best_baseline']:.2f}x" for r in back
                           if r["speedup_vs_best_baseline"]) or "none ran"
        lines.append(f"| {subject} | {group} | {b['case'] + ' ' + _ms(b['median_s']) if b else '-'} | "
                     f"{f['case'] + ' ' + _ms(f['median_s']) if f else '-'} | {sp} | {fl} | {others} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("files", nargs="*", type=Path)
    ap.add_argument("--filter", default=None)
    args = ap.parse_args(argv)
    files = args.files or sorted((Path(__file__).parent / "results").glob("*.json"),
                                 key=lambda p: p.stat().st_mtime)[-1:]
    if not files:
        raise SystemExit("no results JSON given and none in benchmarks/results/")
    for f in files:
        print(f"## {f}")
        print(summarize(json.loads(Path(f).read_text()), args.filter))
        print()


if __name__ == "__main__":
    main()
