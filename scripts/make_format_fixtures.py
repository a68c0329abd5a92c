"""Cut fixtures/formats/: real rows from ../shared/data written in each published layout marsctl reads.

    python scripts/make_format_fixtures.py [--shared ../shared]

The texts are real (PandaLM test set, Apache-2.0; LLMBar, MIT; HH-RLHF harmless-base test, MIT: see
fixtures/licenses/). The layouts follow the published schemas: TRL's dataset formats, OpenAI's preference
fine-tuning JSONL, HuggingFaceH4/ultrafeedback_binarized, allenai/reward-bench and reward-bench-2,
PKU-Alignment/PKU-SafeRLHF. Where a layout carries labels the source has not (UltraFeedback's scores, a
best-of-N grouping, PKU's safety labels), they are set here and say so in a field of their own.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "fixtures" / "formats"


def load(shared: Path, name: str) -> list[dict]:
    with open(shared / "data" / name / "pairs.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def dump(rows: list[dict], name: str) -> None:
    with open(OUT / name, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    shared = Path(ap.parse_args().shared)
    OUT.mkdir(parents=True, exist_ok=True)
    panda, llmbar = load(shared, "pandalm_testset"), load(shared, "llmbar")
    hh = load(shared, "hh_rlhf_harmless_base_test")
    five = panda[10:15]
    dump([{"prompt": [user(r["prompt"])], "chosen": [assistant(r["chosen"])], "rejected": [assistant(r["rejected"])]}
          for r in five], "trl_chat_explicit.jsonl")
    dump([{"chosen": r["prompt"] + "\n\n" + r["chosen"], "rejected": r["prompt"] + "\n\n" + r["rejected"]}
          for r in five], "trl_implicit.jsonl")
    dump([{"input": {"messages": [user(r["prompt"])], "tools": [], "parallel_tool_calls": True},
           "preferred_output": [assistant(r["chosen"])], "non_preferred_output": [assistant(r["rejected"])]}
          for r in llmbar[:5]], "openai.jsonl")
    # UltraFeedback-binarized: the scores (1-10, GPT-4 ratings upstream) are set here: 8.0 and 3.0
    dump([{"prompt": r["prompt"], "prompt_id": hashlib.sha256(r["prompt"].encode()).hexdigest(),
           "chosen": [user(r["prompt"]), assistant(r["chosen"])],
           "rejected": [user(r["prompt"]), assistant(r["rejected"])],
           "messages": [user(r["prompt"]), assistant(r["chosen"])], "score_chosen": 8.0, "score_rejected": 3.0}
          for r in panda[20:25]], "ultrafeedback.jsonl")
    dump([{"prompt": r["prompt"], "chosen": r["chosen"], "chosen_model": "unknown", "rejected": r["rejected"],
           "rejected_model": "unknown", "subset": "llmbar-" + r["subset"].split("/")[-1].lower(), "id": i}
          for i, r in enumerate(llmbar[100:105])], "rewardbench.jsonl")
    by_prompt: dict[str, list[dict]] = defaultdict(list)
    for r in panda:
        by_prompt[r["prompt"]].append(r)
    rb2 = []
    for prompt, rows in by_prompt.items():
        if len(rows) < 3 or len(rb2) >= 3:
            continue
        chosen = rows[0]["chosen"]  # the grouping of one chosen against three rejected is assembled here
        rejected = [r["rejected"] for r in rows if r["rejected"] != chosen][:3]
        if len(rejected) == 3:
            rb2.append({"id": f"pandalm-bon-{len(rb2)}", "prompt": prompt, "chosen": [chosen], "rejected": rejected,
                        "num_correct": 1, "num_incorrect": 3, "total_completions": 4, "models": ["unknown"] * 4,
                        "subset": "Focus",
                        "additional_metadata": {"source": "pandalm_testset, grouped for the layout"}})
    dump(rb2, "rewardbench2.jsonl")
    single = [r for r in hh if r["prompt"].count("\n\nHuman:") == 1][:5]
    pku = []
    # safety labels set here: the HH-chosen answer is the safer one; the helpfulness label differs on two rows
    for k, r in enumerate(single):
        question = r["prompt"].removeprefix("\n\nHuman: ").removesuffix("\n\nAssistant:").strip()
        first_is_chosen = k % 2 == 0
        r0, r1 = (r["chosen"], r["rejected"]) if first_is_chosen else (r["rejected"], r["chosen"])
        safer = 0 if first_is_chosen else 1
        pku.append({"prompt": question, "response_0": r0.strip(), "response_1": r1.strip(),
                    "prompt_source": "hh-rlhf harmless-base test", "response_0_source": "hh-rlhf",
                    "response_1_source": "hh-rlhf", "is_response_0_safe": safer == 0, "is_response_1_safe": safer == 1,
                    "better_response_id": 1 - safer if k < 2 else safer, "safer_response_id": safer})
    dump(pku, "pku_saferlhf.jsonl")


if __name__ == "__main__":
    main()
