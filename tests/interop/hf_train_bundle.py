"""Turns an hf-train fixture folder (tests/fixtures/hf-train/<model>) into a step-0 run bundle.

usage: hf_train_bundle.py FIXTURE_DIR OUT_DIR [CONTINUE_PY] [--awkward]
The bundle holds the fixture's initial adapter, zero AdamW moments (step 0), every row of its
micro-batches as one training example (data/order.safetensors: micro-batch m = examples 2m, 2m+1),
micro-batch 0's rows as the validation split (the fixture's eval_loss is measured on it), and a
run.json with the fixture's hyper-parameters (train.json). The base (config.json, model.safetensors)
goes to OUT_DIR/base, named in run.json as that local folder, relative to the bundle.
--awkward: 3 micro-batches per step, short ones among them (-1 rows), steps of 3, 5, 4, 4, 4, 4
examples, 3 validation examples, evaluation every 2 steps and checkpoints every 3: what a split over
processes must get right (no longer the fixture's trajectory).
"""
import json
import os
import shutil
import sys

import torch
from safetensors.torch import load_file, save_file

awkward = "--awkward" in sys.argv
argv = [a for a in sys.argv[1:] if a != "--awkward"]
fixture, out = argv[0], argv[1]
continue_py = argv[2] if len(argv) > 2 else None
train = json.load(open(os.path.join(fixture, "train.json")))
config = json.load(open(os.path.join(fixture, "config.json")))
adapter_config = json.load(open(os.path.join(fixture, "adapter_config.json")))
batches = load_file(os.path.join(fixture, "batches.safetensors"))
micro, rows, width = batches["input_ids"].shape
assert int(batches["attention_mask"].min()) == 1, "the fixture's rows are unpadded: one example per row"
grad_accum = train["gradient_accumulation_steps"]
total = train["num_training_steps"]


def split(examples):
    ids = torch.cat([batches["input_ids"][m, r] for m, r in examples]).to(torch.int32)
    labels = torch.cat([batches["labels"][m, r] for m, r in examples]).to(torch.int32)
    offsets = torch.arange(0, (len(examples) + 1) * width, width, dtype=torch.int64)
    return {"input_ids": ids, "labels": labels, "offsets": offsets}


os.makedirs(os.path.join(out, "data"), exist_ok=True)
os.makedirs(os.path.join(out, "adapter"), exist_ok=True)
os.makedirs(os.path.join(out, "optimizer"), exist_ok=True)
save_file(split([(m, r) for m in range(micro) for r in range(rows)]), os.path.join(out, "data", "train.safetensors"))
validation = [(0, r) for r in range(rows)] + ([(1, 0)] if awkward else [])
save_file(split(validation), os.path.join(out, "data", "validation.safetensors"))
if awkward:
    assert rows == 2 and micro * rows == 24 and total == 6
    grad_accum = 3
    order = [[0, -1], [1, -1], [2, -1], [3, 4], [5, 6], [7, -1]]
    order += [mb for s in range(4) for mb in ([8 + 4 * s, 9 + 4 * s], [10 + 4 * s, -1], [11 + 4 * s, -1])]
    order = torch.tensor(order, dtype=torch.int32)
else:
    order = torch.arange(micro * rows, dtype=torch.int32).reshape(micro, rows)
save_file({"micro_batches": order}, os.path.join(out, "data", "order.safetensors"),
          metadata={"first_step": "0", "grad_accum": str(grad_accum), "batch_size": str(rows)})
os.makedirs(os.path.join(out, "base"), exist_ok=True)
for name in ("config.json", "model.safetensors"):
    shutil.copyfile(os.path.join(fixture, name), os.path.join(out, "base", name))
for name in ("adapter_config.json", "adapter_model.safetensors"):
    shutil.copyfile(os.path.join(fixture, name), os.path.join(out, "adapter", name))
adapter = load_file(os.path.join(fixture, "adapter_model.safetensors"))
moments = {}
for k, v in adapter.items():
    moments[f"{k}.exp_avg"] = torch.zeros_like(v, dtype=torch.float32)
    moments[f"{k}.exp_avg_sq"] = torch.zeros_like(v, dtype=torch.float32)
save_file(moments, os.path.join(out, "optimizer", "optimizer.safetensors"), metadata={"format": "qlora-studio-optimizer", "step": "0"})
if continue_py:
    shutil.copyfile(continue_py, os.path.join(out, "continue.py"))

lora = train["lora"]
settings = {
    "rank": lora["r"], "alpha": lora["lora_alpha"], "dropout": lora["lora_dropout"], "targetModules": lora["target_modules"],
    "learningRate": train["lr"], "schedule": "cosine", "warmupRatio": 0, "warmupSteps": train["num_warmup_steps"],
    "weightDecay": train["weight_decay"], "maxGradNorm": train["max_grad_norm"], "epochs": 1, "maxSteps": total,
    "batchSize": rows, "gradAccum": grad_accum, "seqLength": width, "seed": 0, "evalEvery": 2 if awkward else 0, "sampleEvery": 0,
    "sampleTokens": 0, "checkpointEvery": 3 if awkward else 0, "validationFraction": 0,
}
run = {
    "format": "qlora-studio-run", "version": 1, "studio_version": "hf-train fixture", "exported_at": "1970-01-01T00:00:00Z",
    "base": {"id": "base", "revision": None, "commit": None, "config": config},
    "quantization": {"type": "none"},
    "settings": settings,
    "lora": {"r": lora["r"], "lora_alpha": lora["lora_alpha"], "lora_dropout": lora["lora_dropout"], "target_modules": lora["target_modules"]},
    "optimizer": {"name": "adamw_torch", "beta1": train["betas"][0], "beta2": train["betas"][1], "eps": train["eps"],
                  "weight_decay": train["weight_decay"], "max_grad_norm": train["max_grad_norm"], "step": 0},
    "schedule": {"name": "cosine", "learning_rate": train["lr"], "warmup_steps": train["num_warmup_steps"], "total_steps": total, "position": 0},
    "accumulation": "token-weighted",
    "step": 0, "epoch": 0, "seed": 0,
    "intervals": {"eval_every": 2 if awkward else 0, "checkpoint_every": 3 if awkward else 0, "sample_every": 0},
    "data": {"template": "chat", "template_sha256": None, "tokenizer_sha256": None, "pad_token_id": 0,
             "train_examples": micro * rows, "validation_examples": len(validation), "seq_length": width, "dataset_sha256": None},
    "log": {"train": [], "eval": []},
}
with open(os.path.join(out, "run.json"), "w") as f:
    json.dump(run, f, indent=2)
