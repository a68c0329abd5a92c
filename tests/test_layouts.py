"""A row keeps its layout through every command (issue #18): conversational rows and their synthetic pairs.

Synthetic pairs made from a conversational row (``trl-chat``, UltraFeedback, OpenAI) are written as ``trl-chat``
with an explicit prompt: the parent's prompt messages exactly (system message and earlier turns included), and
each changed response as one assistant message, with no ``User:`` marker inside any text. ``hh`` rows (a string
layout) give ``trl`` string rows whose dialogue markers are intact. The inputs are real rows from fixtures/,
written into tmp_path with budgets; the real CLI runs in a subprocess.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any, ClassVar

import pytest
from conftest import FIXTURES, read_jsonl, run_cli

from marsctl.plugin import Augmenter
from marsctl.records import dumps, read_pairs

FORMATS = FIXTURES / "formats"
MARKER = re.compile(r"^(User|Assistant|System|Human):|\n\n(User|Assistant|System|Human):")


def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def shared_start(a: list[dict], b: list[dict]) -> list[dict]:
    n = 0
    while n < min(len(a), len(b)) - 1 and a[n] == b[n]:
        n += 1
    return a[:n]


def multi_turn(raw: dict[str, Any]) -> tuple[list[dict], str, str]:
    """A system message and two user turns around a real pair's texts (prompt messages, chosen, rejected)."""
    question = raw["chosen"][0]["content"]
    prompt = [{"role": "system", "content": "You are a careful writing assistant. Answer in plain English."},
              {"role": "user", "content": question},
              {"role": "assistant", "content": raw["chosen"][1]["content"]},
              {"role": "user", "content": "Now make it a little shorter and keep the tone polite, please."}]
    return prompt, raw["rejected"][1]["content"], raw["chosen"][1]["content"]


def inputs(tmp_path: Path) -> dict[str, tuple[Path, dict[str, list[dict]]]]:
    """Each conversational layout as a file with budgets, and each row's prompt messages by id."""
    chat = read_jsonl(FIXTURES / "shape_chat.jsonl")
    out: dict[str, tuple[Path, dict[str, list[dict]]]] = {}

    rows = [{**r, "id": f"x{i}", "budget": 2} for i, r in enumerate(read_jsonl(FORMATS / "trl_chat_explicit.jsonl"))]
    prompt, chosen, rejected = multi_turn(chat[0])
    rows.append({"id": "x-multi", "prompt": prompt, "chosen": [{"role": "assistant", "content": chosen}],
                 "rejected": [{"role": "assistant", "content": rejected}], "budget": 3})
    out["trl-chat"] = (write_jsonl(rows, tmp_path / "explicit.jsonl"), {r["id"]: r["prompt"] for r in rows})

    rows = [{**r, "budget": 2} for r in chat]
    prompt, chosen, rejected = multi_turn(chat[1])
    rows.append({"id": "i-multi", "chosen": [*prompt, {"role": "assistant", "content": chosen}],
                 "rejected": [*prompt, {"role": "assistant", "content": rejected}], "budget": 3})
    out["trl-chat-implicit"] = (write_jsonl(rows, tmp_path / "implicit.jsonl"),
                                {r["id"]: shared_start(r["chosen"], r["rejected"]) for r in rows})

    rows = [{**r, "id": f"u{i}", "budget": 2} for i, r in enumerate(read_jsonl(FORMATS / "ultrafeedback.jsonl"))]
    prompt, chosen, rejected = multi_turn(chat[4])
    rows.append({"id": "u-multi", "prompt": prompt[-1]["content"], "score_chosen": 7.0, "score_rejected": 2.0,
                 "chosen": [*prompt, {"role": "assistant", "content": chosen}],
                 "rejected": [*prompt, {"role": "assistant", "content": rejected}], "budget": 3})
    out["ultrafeedback"] = (write_jsonl(rows, tmp_path / "uf.jsonl"),
                            {r["id"]: shared_start(r["chosen"], r["rejected"]) for r in rows})

    rows = [{**r, "id": f"o{i}", "budget": 2} for i, r in enumerate(read_jsonl(FORMATS / "openai.jsonl"))]
    prompt, chosen, rejected = multi_turn(chat[4])
    rows.append({"id": "o-multi", "input": {"messages": prompt},
                 "preferred_output": [{"role": "assistant", "content": chosen}],
                 "non_preferred_output": [{"role": "assistant", "content": rejected}], "budget": 3})
    out["openai"] = (write_jsonl(rows, tmp_path / "openai.jsonl"), {r["id"]: r["input"]["messages"] for r in rows})
    return out


def check_synthetic_chat(rows: list[dict], prompts: dict[str, list[dict]]) -> None:
    """trl-chat with an explicit prompt: the parent's prompt messages, one assistant message per changed side."""
    assert rows, "augment made no rows"
    for row in rows:
        assert row["source"] == "synthetic"
        assert row["prompt"] == prompts[row["parent_id"]], row["id"]
        for side in ("chosen", "rejected"):
            msgs = row[side]
            assert isinstance(msgs, list) and msgs and all(m["role"] == "assistant" for m in msgs), (row["id"], side)
        for m in row["prompt"] + row["chosen"] + row["rejected"]:
            assert not MARKER.search(m["content"]), (row["id"], m["content"][:80])


@pytest.mark.parametrize("layout", ["trl-chat", "trl-chat-implicit", "ultrafeedback", "openai"])
def test_augment_then_convert_keeps_the_prompt_messages(tmp_path, layout):
    src, prompts = inputs(tmp_path)[layout]
    aug = tmp_path / "aug.jsonl"
    run_cli("augment", str(src), "--backend", "eda", "-o", str(aug), check=True)
    rows = read_jsonl(aug)
    check_synthetic_chat(rows, prompts)
    multi = {i for i, p in prompts.items() if len(p) == 4}
    assert multi and multi <= {r["parent_id"] for r in rows}  # the multi-turn rows with a system message too

    oai = tmp_path / "aug-openai.jsonl"
    proc = run_cli("convert", str(aug), "--to", "openai", "-o", str(oai), check=True)
    assert "(shape: trl-chat)" in proc.stderr
    for row, conv in zip(rows, read_jsonl(oai), strict=True):
        assert conv["input"]["messages"] == prompts[row["parent_id"]]  # user messages exactly the original ones
        assert conv["preferred_output"] == [{"role": "assistant",
                                             "content": "\n\n".join(m["content"] for m in row["chosen"])}]
        assert conv["non_preferred_output"] == [{"role": "assistant",
                                                 "content": "\n\n".join(m["content"] for m in row["rejected"])}]


def test_select_augment_convert_pipeline_keeps_layouts(tmp_path):
    raw = read_jsonl(FIXTURES / "shape_chat.jsonl")
    rng = random.Random(0)
    scored = []
    for r in raw:  # as 'marsctl score' writes them: the row's own layout plus the score fields
        c, j = round(rng.uniform(-1, 1), 4), round(rng.uniform(-1, 1), 4)
        scored.append({**r, "score_chosen": c, "score_rejected": j, "pred_margin": round(c - j, 4), "p_chosen": 0.5})
    src = write_jsonl(scored, tmp_path / "scored.jsonl")
    sel = tmp_path / "selected.jsonl"
    run_cli("select", str(src), "--budget", "6", "-o", str(sel), check=True)
    selected = read_jsonl(sel)
    for got, want in zip(selected, scored, strict=True):
        assert {k: got[k] for k in want} == want  # trl-chat with an implicit prompt, as it came in
    syn = run_cli("augment", str(sel), "--backend", "eda", check=True).stdout
    rows = [json.loads(line) for line in syn.splitlines()]
    check_synthetic_chat(rows, {r["id"]: shared_start(r["chosen"], r["rejected"]) for r in raw})
    conv = run_cli("convert", "-", "--to", "openai", input=syn, check=True).stdout
    for row, c in zip(rows, map(json.loads, conv.splitlines()), strict=True):
        assert c["input"]["messages"] == row["prompt"]


def test_hh_rows_give_trl_string_rows_with_their_dialogue_markers(tmp_path):
    raw = [{**r, "budget": 2} for r in read_jsonl(FIXTURES / "shape_hh_raw.jsonl")]
    src = write_jsonl(raw, tmp_path / "hh.jsonl")
    parents = {p["id"]: p for p in read_pairs(src)}
    aug = tmp_path / "aug.jsonl"
    run_cli("augment", str(src), "--backend", "eda", "-o", str(aug), check=True)
    rows = read_jsonl(aug)
    assert rows
    turns = re.compile(r"\n\n(Human|Assistant):")
    for row in rows:
        parent = parents[row["parent_id"]]
        assert all(isinstance(row[k], str) for k in ("prompt", "chosen", "rejected"))  # trl, explicit prompt
        assert turns.findall(row["prompt"]) == turns.findall(parent["prompt"])
        assert row["prompt"].endswith("\n\nAssistant:")
        assert not turns.search(row["chosen"]) and not turns.search(row["rejected"])
    proc = run_cli("convert", str(aug), "--to", "openai", "-o", str(tmp_path / "oai.jsonl"), check=True)
    assert "(shape: trl)" in proc.stderr
    for row, conv in zip(rows, read_jsonl(tmp_path / "oai.jsonl"), strict=True):
        roles = ["user" if t == "Human" else "assistant" for t in turns.findall(row["prompt"])][:-1]
        assert [m["role"] for m in conv["input"]["messages"]] == roles
        assert all(not MARKER.search(m["content"]) for m in conv["input"]["messages"])
        assert conv["preferred_output"][0]["content"] == row["chosen"].strip()


def test_refine_rounds_write_chat_rows_as_chat(tmp_path):
    src, prompts = inputs(tmp_path)["trl-chat-implicit"]
    out = tmp_path / "run"
    run_cli("refine", str(src), "--rounds", "1", "--budget", "8", "--epochs", "1", "--out", str(out), check=True)
    raw = {r["id"]: r for r in read_jsonl(src)}
    for name in ("selected.jsonl", "train.jsonl", "scored.jsonl"):
        for row in read_jsonl(out / "round-1" / name):
            if row.get("source") != "synthetic":  # a base row: its own layout, messages and all
                assert row["chosen"] == raw[row["id"]]["chosen"] and "prompt" not in row, name
    synthetic = read_jsonl(out / "round-1" / "synthetic.jsonl")
    check_synthetic_chat(synthetic, prompts)
    train = [r for r in read_jsonl(out / "round-1" / "train.jsonl") if r.get("source") == "synthetic"]
    assert train == synthetic


# ---------------------------------------------------------------------------------------------- in-process
class _Marked(Augmenter):
    """Records what it is asked to vary; its prompt variants drop or keep the HH markers."""

    name: ClassVar[str] = "marked"
    seen: ClassVar[list[tuple[str, str]]] = []

    def variants(self, text: str, n: int, rng: random.Random, role: str) -> list[str]:
        self.seen.append((role, text))
        if role == "prompt":
            return [text.replace("Human:", "Person:"), text.replace(" the ", " a ", 1)]
        return [text + " Indeed.", text + " Truly."]


def test_augmenters_vary_only_the_responses_of_a_chat_row_and_keep_markers(tmp_path):
    _Marked.seen.clear()
    pairs = read_pairs(FORMATS / "openai.jsonl")[:1] + read_pairs(FIXTURES / "shape_hh_raw.jsonl")[:1]
    aug = _Marked(seed=0)
    made = aug.augment(pairs, [-1, -1])
    assert [role for role, _ in _Marked.seen] == ["chosen", "rejected", "prompt", "chosen", "rejected"]
    assert all(r["prompt"] == pairs[0]["prompt"] for r in made[0])
    written = [json.loads(dumps(r)) for r in made[0]]
    assert all(w["prompt"] == read_jsonl(FORMATS / "openai.jsonl")[0]["input"]["messages"] for w in written)
    assert {r["prompt"] for r in made[1]} <= {pairs[1]["prompt"], pairs[1]["prompt"].replace(" the ", " a ", 1)}
    assert aug.stats_["filter_markers"] == 1  # the variant that lost '\n\nHuman:' was dropped


def test_a_changed_chat_prompt_is_split_back_at_its_own_role_markers():
    rows = [r for r in read_pairs(FIXTURES / "shape_chat.jsonl")]
    rec = dict(rows[0])
    rec["prompt"] = rec["prompt"].replace("wordy", "verbose")
    rec["chosen"] = "A new answer."
    written = json.loads(dumps(rec))
    raw = read_jsonl(FIXTURES / "shape_chat.jsonl")[0]
    assert written["prompt"] == [{"role": "user", "content": raw["chosen"][0]["content"].replace("wordy", "verbose")}]
    assert written["chosen"] == [{"role": "assistant", "content": "A new answer."}]
    assert written["rejected"] == raw["rejected"][1:]
    assert list(written)[:4] == ["id", "prompt", "chosen", "rejected"]
