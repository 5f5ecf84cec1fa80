"""Checks the studio's exports with the real Python stack (transformers, PEFT, huggingface_hub).

usage: export-interop.py BASE_DIR ADAPTER_DIR MERGED_DIR PEFT_EXPORT_DIR DTYPE
Prints one JSON object: the largest ulp distance between our merged tensors and PEFT's
merge_and_unload() rounded to DTYPE, the logits error of the merged folder against PEFT on the
base (and that of PEFT's own merge rounded to DTYPE, for scale), and what PEFT and the hub's card reader see in the PEFT export.
"""
import json
import sys
import warnings

import torch
from huggingface_hub import ModelCard
from peft import PeftConfig, PeftModel
from transformers import AutoModelForCausalLM

base_dir, adapter_dir, merged_dir, peft_dir, dtype_name = sys.argv[1:6]
dtype = {"F16": torch.float16, "BF16": torch.bfloat16}[dtype_name]
torch.manual_seed(0)


def ordinal(t):
    bits = t.to(dtype).view(torch.int16).to(torch.int32)
    return torch.where(bits < 0, -(bits & 0x7FFF), bits)


base = AutoModelForCausalLM.from_pretrained(base_dir, torch_dtype=torch.float32)
peft_model = PeftModel.from_pretrained(base, adapter_dir).eval()
ids = torch.randint(0, base.config.vocab_size, (2, 16))
with torch.no_grad():
    ref_logits = peft_model(ids).logits
reference = {k: v.clone() for k, v in peft_model.merge_and_unload().state_dict().items()}

# Our merged folder, as transformers loads it (sharded, with its index), in its own dtype ...
loaded = AutoModelForCausalLM.from_pretrained(merged_dir, torch_dtype="auto")
ours = loaded.state_dict()
max_ulp = 0
compared = 0
for name, value in ours.items():
    if name not in reference:
        continue
    compared += 1
    max_ulp = max(max_ulp, int((ordinal(value) - ordinal(reference[name])).abs().max()))
# ... and its logits, computed in f32 from the stored 16-bit weights.
merged32 = AutoModelForCausalLM.from_pretrained(merged_dir, torch_dtype=torch.float32).eval()
with torch.no_grad():
    logits = merged32(ids).logits
rel = float((logits - ref_logits).abs().max() / ref_logits.abs().max())
# The same for PEFT's own merge rounded to DTYPE: the error the 16-bit storage alone costs.
merged32.load_state_dict({k: v.to(dtype).to(torch.float32) for k, v in reference.items()})
with torch.no_grad():
    rounded_logits = merged32(ids).logits
rel_rounded = float((rounded_logits - ref_logits).abs().max() / ref_logits.abs().max())

# The PEFT export: PEFT's config reader, loading without warnings, and the hub's card reader.
config = PeftConfig.from_pretrained(peft_dir)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir, torch_dtype=torch.float32), peft_dir)
card = ModelCard.load(f"{peft_dir}/README.md")

print(json.dumps({
    "loaded_dtype": str(loaded.dtype),
    "compared": compared,
    "max_ulp": max_ulp,
    "logits_rel": rel,
    "logits_rel_peft_rounded": rel_rounded,
    "peft_base": config.base_model_name_or_path,
    "peft_revision": config.revision,
    "peft_warnings": [str(w.message) for w in caught],
    "card_base_model": card.data.base_model,
    "card_library": card.data.library_name,
}))
