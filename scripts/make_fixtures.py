"""Cut the small real fixtures in fixtures/ from ../shared/data (reproducible: seeded, deterministic).

    python scripts/make_fixtures.py [--shared ../shared]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load(shared: Path, name: str) -> list[dict]:
    with open(shared / "data" / name / "pairs.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def dump(rows: list[dict], path: Path) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    shared = Path(ap.parse_args().shared)
    out = ROOT / "fixtures"
    out.mkdir(exist_ok=True)

    hh = load(shared, "hh_rlhf_harmless_base_test")
    order = list(range(len(hh)))
    random.Random(0).shuffle(order)
    hh_train = [hh[i] for i in order[:300]]
    hh_test = [hh[i] for i in order[300:500]]
    dump(hh_train, out / "hh_train.jsonl")
    dump(hh_test, out / "hh_test.jsonl")
    dump(hh_train[:40], out / "tiny.jsonl")
    dump(hh_test[:30], out / "tiny_test.jsonl")
    # The same real rows in the two other input shapes marsctl accepts.
    dump([{"chosen": r["prompt"] + r["chosen"], "rejected": r["prompt"] + r["rejected"]} for r in hh_train[:5]],
         out / "shape_hh_raw.jsonl")
    pandalm = load(shared, "pandalm_testset")
    chat = []
    for r in pandalm[:5]:
        user = {"role": "user", "content": r["prompt"]}
        chat.append({"id": r["id"], "chosen": [user, {"role": "assistant", "content": r["chosen"]}],
                     "rejected": [user, {"role": "assistant", "content": r["rejected"]}]})
    dump(chat, out / "shape_chat.jsonl")
    llmbar = load(shared, "llmbar")
    sample = []
    for subset in sorted({r["subset"] for r in llmbar}):
        sample += [r for r in llmbar if r["subset"] == subset][:5]
    dump(sample, out / "llmbar_sample.jsonl")

    for name, files in (("hh_rlhf_harmless_base_test", ["hh_train", "hh_test", "tiny", "tiny_test",
                                                        "shape_hh_raw"]),
                        ("pandalm_testset", ["shape_chat"]), ("llmbar", ["llmbar_sample"])):
        lic = out / "licenses" / name
        lic.mkdir(parents=True, exist_ok=True)
        for f in ("LICENSE", "LICENSE_NOTE.md", "provenance.json"):
            shutil.copy(shared / "data" / name / f, lic / f)
        (lic / "FILES").write_text("\n".join(f"fixtures/{f}.jsonl" for f in files) + "\n")


if __name__ == "__main__":
    main()
