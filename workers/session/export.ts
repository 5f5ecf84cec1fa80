/** An exported adapter: PEFT's two files and a README model card, zipped. */
import { strToU8, zipSync } from 'fflate';
import type { PeftExport } from '../model/lora-adapter';
import type { ModelCardFacts } from '../protocol';
import type { RunSettings } from '../run/settings';

/** The README of an exported adapter: what it was trained from and how. */
export function modelCard(baseModel: string, s: RunSettings, card: ModelCardFacts): string {
  const fmt = (v: number | null) => (v === null ? 'n/a' : v.toFixed(4));
  return `---
library_name: peft
base_model: ${baseModel}
tags: [lora, qlora]
---

# LoRA adapter for ${baseModel}

Trained with QLoRA Studio in the browser (WebGPU): NF4 base weights (blocksize 64, double quantization), LoRA in f32.

Load it with PEFT:

\`\`\`python
from peft import PeftModel
model = PeftModel.from_pretrained(base_model, "path/to/this/folder")
\`\`\`

## Training

| setting | value |
| --- | --- |
| dataset | ${card.dataset} |
| optimizer steps | ${card.steps} |
| LoRA rank / alpha / dropout | ${s.rank} / ${s.alpha} / ${s.dropout} |
| target modules | ${s.targetModules.join(', ')} |
| learning rate, schedule | ${s.learningRate}, ${s.schedule} (warmup ${s.warmupSteps > 0 ? `${s.warmupSteps} steps` : `ratio ${s.warmupRatio}`}) |
| epochs / max steps | ${s.epochs} / ${s.maxSteps || 'none'} |
| batch × accumulation | ${s.batchSize} × ${s.gradAccum} (token-weighted loss over the accumulated micro-batches) |
| sequence length | ${s.seqLength} |
| seed | ${s.seed} |

## Results

- final training loss: ${fmt(card.finalTrainLoss)}
- final validation loss: ${fmt(card.finalValidationLoss)}
`;
}

export function adapterZip(peft: PeftExport, readme: string): Uint8Array {
  return zipSync({
    'adapter_model.safetensors': peft.adapterModel,
    'adapter_config.json': strToU8(peft.adapterConfig),
    'README.md': strToU8(readme),
  });
}
