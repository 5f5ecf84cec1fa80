"""Makes an hf-golden folder (workers/model/golden.ts reads it) for an adapter on a base, with PEFT's numbers.

usage: adapter_golden.py BASE_DIR ADAPTER_DIR OUT_DIR
BASE_DIR: config.json + model.safetensors; ADAPTER_DIR: adapter_config.json + adapter_model.safetensors
(here: what continue.py wrote). OUT_DIR gets those four files and golden.safetensors: the inputs (2 rows,
the second right-padded), logits and loss without and with the adapter, the adapter's LoRA gradients of
the mean loss (PEFT keys + ".grad"), and 8 greedily decoded tokens with each step's logits — all from
transformers + PEFT on the CPU in float32 with eager attention. Prints {"tensors": [...]} .
"""
import json
import os
import shutil
import sys

import torch
from peft import PeftModel
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

base_dir, adapter_dir, out = sys.argv[1:4]
os.makedirs(out, exist_ok=True)
for src, names in ((base_dir, ("config.json", "model.safetensors")), (adapter_dir, ("adapter_config.json", "adapter_model.safetensors"))):
    for n in names:
        shutil.copyfile(os.path.join(src, n), os.path.join(out, n))

torch.manual_seed(11)
base = AutoModelForCausalLM.from_pretrained(base_dir, torch_dtype=torch.float32, attn_implementation="eager")
model = PeftModel.from_pretrained(base, adapter_dir, is_trainable=True)
model.eval()
vocab = base.config.vocab_size
batch, seq = 2, 16
ids = torch.randint(0, vocab, (batch, seq))
mask = torch.ones(batch, seq, dtype=torch.long)
mask[1, 11:] = 0
labels = ids.clone()
labels[:, :3] = -100
labels[mask == 0] = -100


def loss_of(logits):
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, vocab), labels[:, 1:].reshape(-1), ignore_index=-100)


g = {"input_ids": ids, "attention_mask": mask, "labels": labels}
with torch.no_grad(), model.disable_adapter():
    logits = model(input_ids=ids, attention_mask=mask).logits
    g["logits_no_lora"], g["loss_no_lora"] = logits, loss_of(logits).reshape(1)
logits = model(input_ids=ids, attention_mask=mask).logits
loss = loss_of(logits)
loss.backward()
g["logits"], g["loss"] = logits.detach(), loss.detach().reshape(1)
for name, p in model.named_parameters():
    if p.requires_grad:
        key = name.replace(".default.weight", ".weight")
        g[f"{key}.grad"] = p.grad.detach().clone()
prompt = ids[0, :5].tolist()
tokens, steps = list(prompt), []
with torch.no_grad():
    for _ in range(8):
        last = model(input_ids=torch.tensor([tokens])).logits[0, -1]
        steps.append(last)
        tokens.append(int(last.argmax()))
g["gen_prompt_ids"] = torch.tensor(prompt)
g["gen_new_ids"] = torch.tensor(tokens[len(prompt):])
g["gen_step_logits"] = torch.stack(steps)
save_file({k: v.contiguous() for k, v in g.items()}, os.path.join(out, "golden.safetensors"), metadata={"format": "pt"})
print(json.dumps({"tensors": sorted(g), "tokens": tokens[len(prompt):], "loss": float(loss)}))
