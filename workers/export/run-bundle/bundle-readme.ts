/**
 * The README.md of a run bundle: what each file is, the commands (one process, DDP, FSDP, several
 * machines, the recipes), the versions continue.py was written for, and the difference between
 * continuing exactly (continue.py) and warm-starting another tool from the adapter (recipes/).
 */
import { RECIPE_VERSIONS } from './recipes';
import type { RunJson } from './run-json';

/** What continue.py was written and checked against (docs/RUN-BUNDLE.md, tests/interop/continue.test.ts). */
export const CONTINUE_PY_VERSIONS = {
  current: 'torch 2.x, transformers 4.4x–5.x, PEFT 0.11+, accelerate 0.30+, bitsandbytes 0.43+ (4-bit needs CUDA)',
  checked: 'torch 1.13.1, transformers 4.40.2 and 4.44.0, PEFT 0.11.1, accelerate 0.30.1 (CPU)',
} as const;

export function bundleReadme(run: RunJson): string {
  const nf4 = run.quantization.type === 'nf4';
  const base = run.base.id;
  const revision = run.base.commit ?? run.base.revision;
  const remaining = run.schedule.total_steps - run.step;
  return `# ${base} — a QLoRA Studio run at step ${run.step} of ${run.schedule.total_steps}

Exported by QLoRA Studio ${run.studio_version} on ${run.exported_at}. Base \`${base}\`${revision ? ` (revision \`${revision}\`)` : ''},
${nf4 ? '4-bit NF4 with double quantization' : 'unquantized'}, LoRA r ${run.lora.r} / alpha ${run.lora.lora_alpha} on ${run.lora.target_modules.join(', ')},
${run.schedule.name} schedule, lr ${run.schedule.learning_rate}, ${run.schedule.warmup_steps} warmup steps, ${remaining} step${remaining === 1 ? '' : 's'} left.

## Continue exactly: \`continue.py\`

Run from this folder. It loads the base (\`--base PATH\` for a local copy), the adapter, the AdamW
moments and the schedule at step ${run.step}, and continues with the studio's numbers: the same
micro-batches in the same order, the token-weighted loss over each step, clipping, AdamW and the
learning rate of each step. One JSON line per step on stdout (\`step\`, \`loss\`, \`lr\`, \`grad_norm\`)
and per evaluation (\`step\`, \`eval_loss\`); checkpoints and the end go to \`--out\` (default
\`continued/\`) as a run folder like this one, which the studio imports and \`continue.py\` continues.

    pip install torch transformers peft accelerate safetensors${nf4 ? ' bitsandbytes' : ''}
    python3 continue.py                                  # one process (GPU if there is one)
    python3 continue.py --max-steps ${Math.min(run.schedule.total_steps, run.step + 10)} --out part1   # stop early; continue part1/ later
    python3 continue.py --no-quantize                    # a 16/32-bit base instead of 4-bit
    accelerate launch --config_file accelerate/ddp.yaml --num_processes 4 continue.py
    accelerate launch --config_file accelerate/fsdp.yaml --num_processes 4 continue.py
    # several machines (run on each, R = 0 … N−1):
    accelerate launch --config_file accelerate/ddp.yaml --num_machines N --machine_rank R \\
        --main_process_ip HOST --main_process_port 29500 --num_processes <GPUs in all> continue.py

With several processes each step's examples are spread over them and their token losses summed,
so the gradient of every step is the one a single process computes (up to float rounding).
${nf4 ? 'The 4-bit base needs CUDA (bitsandbytes); on a machine without it the base loads unquantized.\n' : ''}${run.lora.lora_dropout > 0 ? `LoRA dropout ${run.lora.lora_dropout}: the dropout masks come from PyTorch's generator, not the studio's, so the steps from here are equal in distribution, not number for number.\n` : ''}
Written for current releases (${CONTINUE_PY_VERSIONS.current}); checked on ${CONTINUE_PY_VERSIONS.checked}.

## Warm start in another tool: \`recipes/\`

The same base, data, template, LoRA settings, schedule and seed for other trainers, starting from
the adapter this run reached. A warm start is not a continuation: the tool starts a fresh optimizer
and its schedule from step 0, and batches and weighs the loss its own way.

| file | tool | command (from this folder) |
| --- | --- | --- |
| \`recipes/trl-sft.yaml\` | TRL ${RECIPE_VERSIONS.trl} | \`trl sft --config recipes/trl-sft.yaml\` |
| \`recipes/llamafactory.yaml\`, \`recipes/dataset_info.json\` | LLaMA-Factory ${RECIPE_VERSIONS.llamafactory} | \`llamafactory-cli train recipes/llamafactory.yaml\` |
| \`recipes/axolotl.yaml\` | axolotl ${RECIPE_VERSIONS.axolotl} | \`axolotl train recipes/axolotl.yaml\` |

\`trl sft\` makes its own LoRA from the settings; to start it from \`adapter/\` instead, hand SFTTrainer the adapter:

    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    from trl import ModelConfig, ScriptArguments, SFTConfig, SFTTrainer, TrlParser
    from datasets import load_dataset
    script, config, model_args = TrlParser((ScriptArguments, SFTConfig, ModelConfig)).parse_args_and_config()
    base = AutoModelForCausalLM.from_pretrained(model_args.model_name_or_path, revision=model_args.model_revision)
    model = PeftModel.from_pretrained(base, "adapter", is_trainable=True)
    data = load_dataset("json", data_files={"train": "data/train.jsonl", "validation": "data/validation.jsonl"})
    SFTTrainer(model=model, args=config, train_dataset=data["train"], eval_dataset=data["validation"]).train()

(run as \`python3 that.py --config recipes/trl-sft.yaml\`).

## Files

| path | what |
| --- | --- |
| \`run.json\` | every setting and the position reached: step ${run.step}, the schedule, AdamW's constants and step count, the logs |
| \`adapter/\` | the LoRA adapter (PEFT: adapter_config.json, adapter_model.safetensors) |
| \`optimizer/optimizer.safetensors\` | AdamW's moments, \`<adapter key>.exp_avg\` / \`.exp_avg_sq\` (float32) |
| \`data/train.safetensors\`, \`data/validation.safetensors\` | the examples as trained: input_ids, labels (−100 = not learned), offsets |
| \`data/order.safetensors\` | the micro-batches of every remaining step (example indices, −1 = none) |
| \`data/train.jsonl\`, \`data/validation.jsonl\` | the same rows as text, for the recipes |
| \`continue.py\` | the exact continuation |
| \`accelerate/ddp.yaml\`, \`accelerate/fsdp.yaml\` | accelerate configurations: data parallel, and FSDP with a 4-bit base |
| \`recipes/\` | warm starts for TRL, LLaMA-Factory and axolotl |

The format is \`${run.format}\` version ${run.version} (QLoRA Studio's docs/RUN-BUNDLE.md).
`;
}
