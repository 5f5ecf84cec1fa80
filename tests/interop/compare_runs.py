"""Compares a continued run with what it should equal; prints one JSON object of max relative deviations.

usage:
  compare_runs.py hf-train FIXTURE_DIR RUN_DIR STEPS.jsonl   against an hf-train fixture's expected.safetensors
  compare_runs.py runs RUN_A STEPS_A.jsonl RUN_B STEPS_B.jsonl   two run folders and their step lines (B = reference)
Deviation of a series or a tensor: max |ours - reference| / max |reference|; tensors report the worst one.
STEPS files hold continue.py's stdout (or `cli train`'s step lines): {"step", "loss", "lr", "grad_norm"} and {"step", "eval_loss"}.
"""
import json
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file


def rel(a, b):
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    if a.shape != b.shape:
        raise SystemExit(f"shapes differ: {list(a.shape)} vs {list(b.shape)}")
    scale = float(b.abs().max()) if b.numel() else 0.0
    return float((a - b).abs().max()) / scale if scale > 0 else float((a - b).abs().max())


def lines(path):
    steps, evals = {}, {}
    for line in open(path):
        line = line.strip()
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        if "loss" in r and "grad_norm" in r:
            steps[r["step"]] = r
        elif "eval_loss" in r and "step" in r:
            evals[r["step"]] = r["eval_loss"]
    return steps, evals


def run_state(run_dir):
    adapter = load_file(f"{run_dir}/adapter/adapter_model.safetensors")
    with safe_open(f"{run_dir}/optimizer/optimizer.safetensors", framework="pt") as f:
        moments = {k: f.get_tensor(k) for k in f.keys()}
        step = int(f.metadata()["step"])
    return adapter, moments, step


def tensors(ours, ref, keys):
    missing = [k for k in keys if k not in ours]
    if missing:
        raise SystemExit(f"missing tensors: {missing[:3]}")
    return max(rel(ours[k], ref[k]) for k in keys)


mode = sys.argv[1]
if mode == "hf-train":
    fixture, run_dir, log = sys.argv[2:5]
    exp = load_file(f"{fixture}/expected.safetensors")
    steps, evals = lines(log)
    n = exp["step_losses"].numel()
    order = [steps[s + 1] for s in range(n)]
    adapter, moments, step = run_state(run_dir)
    keys = sorted(load_file(f"{fixture}/adapter_model.safetensors"))
    out = {
        "steps": len(steps), "adamw_step": step, "expected_adamw_step": int(exp["optimizer_step"][0]),
        "loss": rel([r["loss"] for r in order], exp["step_losses"]),
        "lr": rel([r["lr"] for r in order], exp["step_lrs"]),
        "grad_norm": rel([r["grad_norm"] for r in order], exp["step_grad_norms"]),
        "eval_loss": rel([evals[n]], exp["eval_loss"]),
        "weights": tensors(adapter, exp, keys),
        "exp_avg": tensors({k[: -len('.exp_avg')]: v for k, v in moments.items() if k.endswith(".exp_avg")}, {k: exp[f"{k}.exp_avg"] for k in keys}, keys),
        "exp_avg_sq": tensors({k[: -len('.exp_avg_sq')]: v for k, v in moments.items() if k.endswith(".exp_avg_sq")}, {k: exp[f"{k}.exp_avg_sq"] for k in keys}, keys),
        "tensors": len(keys),
    }
else:
    a_dir, a_log, b_dir, b_log = sys.argv[2:6]
    a_steps, a_evals = lines(a_log)
    b_steps, b_evals = lines(b_log)
    common = sorted(set(a_steps) & set(b_steps))
    a, am, astep = run_state(a_dir)
    b, bm, bstep = run_state(b_dir)
    ev = sorted(set(a_evals) & set(b_evals))
    out = {
        "steps": common, "adamw_step": [astep, bstep],
        "loss": rel([a_steps[s]["loss"] for s in common], [b_steps[s]["loss"] for s in common]),
        "lr": rel([a_steps[s]["lr"] for s in common], [b_steps[s]["lr"] for s in common]),
        "grad_norm": rel([a_steps[s]["grad_norm"] for s in common], [b_steps[s]["grad_norm"] for s in common]),
        "eval_steps": ev,
        "eval_loss": rel([a_evals[s] for s in ev], [b_evals[s] for s in ev]) if ev else None,
        "weights": tensors(a, b, sorted(b)),
        "moments": tensors(am, bm, sorted(bm)),
        "tensors": len(b),
    }
print(json.dumps(out))
