"""Copy the labeling simulations' tables and a small summary into benchmarks/results/active/ (issue 22).

    python benchmarks/active_summary.py SCRATCH_DIR [OUT_DIR]

SCRATCH_DIR holds one ``marsctl active simulate`` folder per set (report.json, table.md, curves.png); OUT_DIR gets
``<set>/table.md`` and ``summary.json`` (per set: random's lift, each strategy's AUC and its paired difference from
random, the labels to reach random's final accuracy, the verdict), and ``summary.md``, the cross-set table.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path


def main(scratch: Path, out: Path) -> None:
    sets = sorted(p.parent for p in scratch.glob("*/report.json"))
    summary = {}
    lines = ["| set | random, first → last budget (lift) | strategy | AUC − random, points [95% CI] | "
             "labels to random's final |", "|---|---|---|---|---|"]
    for d in sets:
        report = json.loads((d / "report.json").read_text(encoding="utf-8"))
        s = report["summary"]
        (out / d.name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(d / "table.md", out / d.name / "table.md")
        rnd = s["strategies"]["random"]
        summary[d.name] = {"command": report.get("command"), "split": report["split"], "labels": s["labels"],
                           "random_lift_points": s["random_lift_points"], "verdict": s["verdict"],
                           "strategies": {k: {x: v.get(x) for x in ("accuracy", "auc", "auc_vs_random",
                                                                     "labels_to_random_final")}
                                          for k, v in s["strategies"].items()}}
        first = f"{100 * rnd['accuracy'][0]:.1f} → {100 * rnd['accuracy'][-1]:.1f} ({s['random_lift_points']:+.1f})"
        for st, row in s["strategies"].items():
            if st == "random":
                continue
            dd = row["auc_vs_random"]
            reach = row["labels_to_random_final"]
            ci = f"[{dd['ci95'][0]:+.2f}, {dd['ci95'][1]:+.2f}]"
            lines.append(f"| {d.name} | {first} | {st} | {dd['mean']:+.2f} {ci} | "
                         f"{'not reached' if reach is None else reach} |")
            first = ""
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    (out / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2] if len(sys.argv) > 2 else "benchmarks/results/active"))
