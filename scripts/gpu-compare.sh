#!/usr/bin/env bash
# One `marsctl compare` run with the full-transformer reward head on a lent GPU: does margin-aware
# selection help when the representation learns? (On CPU with frozen embeddings it does not.)
#
#   scripts/gpu-check.sh --prepare          # here, once: .gpu-carry/ = MiniLM in fp16 + the shared pairs
#   scripts/gpu-compare.sh                  # there; carry .gpu-carry/minilm-fp16 and
#                                           # .gpu-carry/data/hh_rlhf_harmless_base_test
#   GPU_COMPARE_TINY=1 PYTHON=/work/venv/bin/python scripts/gpu-compare.sh   # CPU smoke run (60 pairs)
#
# The run is `marsctl compare PAIRS --head transformer -p model_path=.gpu-carry/minilm-fp16
# -p max_length=256 -p batch_size=32 -p lr=2e-5 -p precision=bf16 -p eval_batch_size=128 --epochs 1
# --rounds 1 --strategies none,uniform,won,mars,mars-abs --protocols epochs --seeds N`, executed in
# stages so that it fits one device call (10 minutes at most) and leaves results whenever it stops:
#
#   per seed s: A. compare --strategies none --seeds s+1          (round 0 + the no-augmentation round 1)
#               the finished round-0 of none/seed-s is hard-linked into every other strategy's run
#               folder (round 0 depends on the seed alone, not on the strategy), so each strategy
#               resumes at round 1 instead of retraining the same round-0 model;
#               B. compare --strategies none,uniform,mars,mars-abs --seeds s+1
#               C. compare --strategies none,uniform,won,mars,mars-abs --seeds s+1  (won scores whole pools)
#
# A stage starts only when its latest duration (×1.1) still fits $GPU_COMPARE_BUDGET_S seconds from
# the start of the script, so the number of seeds adapts to the machine's speed. compare resumes
# finished runs, so every stage only adds runs. Results land in $OUT as the stages finish:
# table.md, report.json, runs.csv, accuracy.png (the latest all-strategy compare), table-4strategies.md
# and report-4strategies.json (when a later four-strategy stage has more seeds), timing.json, log.txt.
#
# marsctl's plugins are found through entry points, so marsctl is pip-installed (editable, offline,
# no dependencies) unless GPU_COMPARE_INSTALL=0. The eda augmenter uses its built-in synonym table
# when there is no WordNet database (the GPU image has none).
#
# Environment: OUT (default out/gpu-compare), PYTHON (python3), GPU_COMPARE_WORK (compare's --out,
# default /tmp/gpu-compare; resumable), GPU_COMPARE_SEEDS (3), GPU_COMPARE_PAIRS (0 = every pair, else
# the first N), GPU_COMPARE_MAX_LENGTH (256), GPU_COMPARE_PRECISION (bf16), GPU_COMPARE_BUDGET_S (530),
# GPU_COMPARE_MODEL (.gpu-carry/minilm-fp16), GPU_COMPARE_DATA (the pairs), GPU_COMPARE_INSTALL (1),
# GPU_COMPARE_EXTRA (more compare options: issue 13's runs are GPU_COMPARE_EXTRA="-b 400" and
# GPU_COMPARE_EXTRA="-b 400 --backend contrast"; use a fresh GPU_COMPARE_WORK for each).
set -uo pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s.%N)
PY=${PYTHON:-python3}
if [[ -n "${GPU_COMPARE_TINY:-}" ]]; then
    : "${GPU_COMPARE_PAIRS:=60}" "${GPU_COMPARE_SEEDS:=2}" "${GPU_COMPARE_MAX_LENGTH:=64}"
    : "${GPU_COMPARE_PRECISION:=fp32}" "${GPU_COMPARE_INSTALL:=0}" "${GPU_COMPARE_WORK:=/tmp/gpu-compare-tiny}"
    export GPU_COMPARE_PAIRS GPU_COMPARE_SEEDS GPU_COMPARE_MAX_LENGTH GPU_COMPARE_PRECISION GPU_COMPARE_INSTALL
fi
export OUT=${OUT:-out/gpu-compare}
export GPU_COMPARE_T0=$T0
export GPU_COMPARE_WORK=${GPU_COMPARE_WORK:-/tmp/gpu-compare}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MARSCTL_NO_PROGRESS=1 PYTHONUNBUFFERED=1
export TOKENIZERS_PARALLELISM=true
mkdir -p "$OUT"
LOG="$OUT/log.txt"
exec > >(tee -a "$LOG") 2>&1

echo "== gpu-compare $(date -u +%FT%TZ) on $(hostname)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
if [[ "${GPU_COMPARE_INSTALL:-1}" == 1 ]]; then
    if ! "$PY" -m pip install -q --no-deps --no-build-isolation --no-index -e .; then
        # Fallback: the checkout on PYTHONPATH plus a hand-made dist-info holding pyproject's entry points.
        echo "pip install -e . failed; using PYTHONPATH and a generated dist-info for the entry points"
        "$PY" - <<'PYEOF' || exit 3
import pathlib, tomllib
proj = tomllib.loads(pathlib.Path("pyproject.toml").read_text())["project"]
d = pathlib.Path("/tmp/gpu-compare-site") / f"marsctl-{proj['version']}.dist-info"
d.mkdir(parents=True, exist_ok=True)
(d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: marsctl\nVersion: {proj['version']}\n")
eps = "".join(f"[{g}]\n" + "".join(f"{k} = {v}\n" for k, v in items.items()) + "\n"
              for g, items in proj["entry-points"].items())
(d / "entry_points.txt").write_text(eps)
PYEOF
        export PYTHONPATH="/tmp/gpu-compare-site:$PWD:$PWD/plugins${PYTHONPATH:+:$PYTHONPATH}"
    fi
else
    # Not installing here (the venv already holds marsctl); still check that the editable build works offline.
    "$PY" -m pip install -q --no-deps --no-build-isolation --no-index --dry-run -e . \
        || { echo "pip install --dry-run -e . failed"; exit 3; }
fi
"$PY" - <<'PYEOF' || exit 4
import importlib.metadata as md
for n in ("marsctl", "torch", "transformers", "accelerate", "tokenizers", "typer", "rich", "matplotlib", "numpy"):
    try:
        print(n, md.version(n), end="; ")
    except md.PackageNotFoundError:
        print(n, "MISSING", end="; ")
import torch
print("\ncuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
from marsctl import registry
for kind, name in (("head", "transformer"), ("augmenter", "eda"), ("selector", "mars"), ("selector", "won")):
    registry.load(kind, name)
print("plugins: entry points resolve")
from marsctl_plugins.augmenters import wordnet
print("eda synonyms:", "WordNet" if wordnet.load(wordnet.default_dir()) is not None else
      f"built-in table (no WordNet database in {wordnet.default_dir()})")
PYEOF
echo "== setup done after $(awk "BEGIN{print $(date +%s.%N) - $T0}") s"

"$PY" - <<'PYEOF'
import json
import os
import shutil
import shlex
import sys
import time
from pathlib import Path

T0 = float(os.environ["GPU_COMPARE_T0"])
OUT = Path(os.environ["OUT"])
WORK = Path(os.environ["GPU_COMPARE_WORK"])
SEEDS = int(os.environ.get("GPU_COMPARE_SEEDS", "3"))
N_PAIRS = int(os.environ.get("GPU_COMPARE_PAIRS", "0"))
MAX_LENGTH = int(os.environ.get("GPU_COMPARE_MAX_LENGTH", "256"))
PRECISION = os.environ.get("GPU_COMPARE_PRECISION", "bf16")
BUDGET_S = float(os.environ.get("GPU_COMPARE_BUDGET_S", "530"))
MODEL = os.environ.get("GPU_COMPARE_MODEL", ".gpu-carry/minilm-fp16")
DATA = os.environ.get("GPU_COMPARE_DATA")
EXTRA = shlex.split(os.environ.get("GPU_COMPARE_EXTRA", ""))  # more compare options, e.g. "-b 400 --backend contrast"
if not DATA:
    for cand in (".gpu-carry/data", "../shared/data", "shared/data"):
        if Path(cand, "hh_rlhf_harmless_base_test", "pairs.jsonl").exists():
            DATA = f"{cand}/hh_rlhf_harmless_base_test/pairs.jsonl"
            break
    else:
        sys.exit("no hh_rlhf_harmless_base_test/pairs.jsonl (set GPU_COMPARE_DATA)")
ALL = ["none", "uniform", "won", "mars", "mars-abs"]
STAGES = {"A": ["none"], "B": ["none", "uniform", "mars", "mars-abs"], "C": ALL}
PROTOCOL = "epochs"


def elapsed() -> float:
    return time.time() - T0


def log(msg: str) -> None:
    print(f"[{elapsed():6.1f}s] {msg}", flush=True)


WORK.mkdir(parents=True, exist_ok=True)
pairs = DATA
if N_PAIRS:
    lines = [x for x in Path(DATA).read_text(encoding="utf-8").splitlines() if x.strip()][:N_PAIRS]
    pairs = str(WORK.parent / f"{WORK.name}-pairs-first{N_PAIRS}.jsonl")  # beside --out: compare refuses inputs in it
    Path(pairs).write_text("\n".join(lines) + "\n", encoding="utf-8")
n_total = sum(1 for x in Path(pairs).read_text(encoding="utf-8").splitlines() if x.strip())
log(f"pairs {pairs} ({n_total}); model {MODEL}; max_length {MAX_LENGTH}; {PRECISION}; "
    f"up to {SEEDS} seeds; budget {BUDGET_S:.0f}s")

HEAD_PARAMS = [f"model_path={MODEL}", f"max_length={MAX_LENGTH}", "batch_size=32", "lr=2e-5",
               f"precision={PRECISION}", "eval_batch_size=128"]

from marsctl.cli.app import app  # noqa: E402


def compare(strategies: list[str], seeds: int) -> None:
    args = ["compare", pairs, "--head", "transformer"]
    for p in HEAD_PARAMS:
        args += ["-p", p]
    args += ["--epochs", "1", "--rounds", "1", "--strategies", ",".join(strategies), "--protocols", PROTOCOL,
             "--seeds", str(seeds), *EXTRA, "--out", str(WORK)]
    sys.argv = ["marsctl", *args]  # compare records its command line in table.md
    log("marsctl " + " ".join(args))
    rc = app(args, prog_name="marsctl", standalone_mode=False)
    if rc not in (None, 0):
        raise SystemExit(f"marsctl compare exited with {rc}")


def share_round0(seed: int) -> None:
    """Hard-link none/seed-S/round-0 into the other strategies' run folders (same seed → same round 0)."""
    src = WORK / "runs" / PROTOCOL / "none" / f"seed-{seed}"
    man = json.loads((src / "manifest.json").read_text())
    for st in ALL[1:]:
        dst = WORK / "runs" / PROTOCOL / st / f"seed-{seed}"
        if dst.exists():
            continue
        dst.mkdir(parents=True)
        shutil.copytree(src / "round-0", dst / "round-0", copy_function=os.link)
        m = json.loads(json.dumps(man))
        m["config"]["strategy"] = st
        m["rounds_finished"] = [0]
        m["timing"] = {"round-0": man["timing"]["round-0"]}
        m["round0_shared_from"] = str(src)
        (dst / "manifest.json").write_text(json.dumps(m, indent=1))


TIMING = {"stages": [], "seeds_done": 0}


def collect(stage: str, seeds: int) -> None:
    """Copy compare's small result files into $OUT."""
    if stage == "C":
        for f in ("table.md", "report.json", "runs.csv", "accuracy.png"):
            if (WORK / f).exists():
                shutil.copy(WORK / f, OUT / f)
        for f in ("table-4strategies.md", "report-4strategies.json"):
            (OUT / f).unlink(missing_ok=True)
        TIMING["seeds_done"] = seeds
    elif stage == "B" and seeds > TIMING["seeds_done"]:
        shutil.copy(WORK / "table.md", OUT / "table-4strategies.md")
        shutil.copy(WORK / "report.json", OUT / "report-4strategies.json")
    rounds = {}
    for man in sorted((WORK / "runs" / PROTOCOL).glob("*/seed-*/manifest.json")):
        m = json.loads(man.read_text())
        rounds[f"{man.parent.parent.name}/{man.parent.name}"] = m.get("timing")
    TIMING["round_seconds"] = rounds
    (OUT / "timing.json").write_text(json.dumps(TIMING, indent=1))


first: dict[str, float] = {}
stop = None
for s in range(SEEDS):
    for stage in ("A", "B", "C"):
        est = first.get(stage)
        if est is not None and elapsed() + 1.1 * est > BUDGET_S:
            stop = f"seed {s} stage {stage}: ~{est:.0f}s would end past the {BUDGET_S:.0f}s budget"
            break
        t = time.time()
        compare(STAGES[stage], s + 1)
        dt = time.time() - t
        first[stage] = dt  # the latest duration: seed 0's includes CUDA and first-load warm-up
        TIMING["stages"].append({"seed": s, "stage": stage, "strategies": STAGES[stage], "seconds": round(dt, 1)})
        log(f"stage {stage} seed {s} done in {dt:.1f}s")
        if stage == "A":
            share_round0(s)
        collect(stage, s + 1)
    if stop:
        break
TIMING["stopped"] = stop
TIMING["total_seconds"] = round(elapsed(), 1)
(OUT / "timing.json").write_text(json.dumps(TIMING, indent=1))
log(f"done: {TIMING['seeds_done']} seeds with every strategy" + (f"; stopped at {stop}" if stop else ""))
PYEOF
rc=$?
sleep 1  # let tee finish log.txt
exit $rc
