#!/usr/bin/env python3
"""Continue a QLoRA Studio run (a `qlora-studio-run` folder, version 1) with PyTorch, transformers,
PEFT and accelerate, with the studio's numbers.

    python3 continue.py [--max-steps TOTAL] [--out DIR] [--no-quantize] [--bundle DIR] [--base PATH]
    accelerate launch --config_file accelerate/ddp.yaml continue.py ...

What it reproduces (the studio's trainer, workers/train/README.md of the studio):
- the base as the run had it: 4-bit NF4 with double quantization (bitsandbytes, CUDA) for an `nf4`
  run, else (CPU, --no-quantize, a `none` run) the unquantized weights in float32;
- the LoRA adapter of adapter/ (trainable, float32) and the AdamW moments of optimizer/;
- the micro-batches of data/order.safetensors, right-padded; token-weighted accumulation: a step's
  loss is the sum of the token cross-entropies of all its micro-batches (on every process) divided
  by the label tokens of the whole step, and so is its gradient;
- clip_grad_norm_ (the pre-clip norm is reported), torch.optim.AdamW, the lr schedule at its
  position (transformers' get_*_schedule_with_warmup, the run's total and warmup steps).
stdout: one JSON object per optimizer step {"step" (1-based), "loss", "lr", "grad_norm"} and one per
evaluation {"step", "eval_loss"}; everything else goes to stderr. --out gets a run folder of the same
format (checkpoints at the run's interval and at the end) that the studio imports and that this
script continues again.

Written for current releases; runs on torch 1.13.1, transformers 4.40.2 / 4.44.0, PEFT 0.11.1,
accelerate 0.30.1 (calls that changed between versions are guarded).
"""
import argparse
import contextlib
import datetime
import json
import math
import os
import re
import shutil
import sys
import warnings

import torch
import torch.nn.functional as F

FORMAT, VERSION = "qlora-studio-run", 1
OPTIMIZER_FORMAT = "qlora-studio-optimizer"
# What a continued run folder takes over unchanged from the bundle, besides data/ (adapter/, optimizer/,
# data/order.safetensors and run.json are written).
BUNDLE_COPIED = ("README.md", "continue.py", "accelerate", "recipes")
SCHEDULES = ("constant", "constant_with_warmup", "linear", "cosine")


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def fail(message):
    log(f"continue.py: {message}")
    sys.exit(2)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Continue a QLoRA Studio run with the studio's numbers.")
    p.add_argument("--bundle", default=None, help="the run folder (default: the current folder if it holds run.json, else this script's folder)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps in total (default: the run's schedule.total_steps)")
    p.add_argument("--out", default=None, help="where the continued run folder goes (default: <bundle>/continued)")
    p.add_argument("--no-quantize", action="store_true", help="load the base unquantized even for an nf4 run")
    p.add_argument("--base", default=None, help="a local copy of the base model (folder with config.json and weights) instead of run.json base.id")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="weights of an unquantized base and compute dtype of a 4-bit one (float32 = the studio's numbers)")
    p.add_argument("--attn-implementation", default="eager", help="transformers' attn_implementation (eager = the studio's numbers; sdpa is faster)")
    p.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations in backward (less memory, same numbers)")
    return p.parse_args(argv)


# ---------------------------------------------------------------- the bundle

def read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        fail(f"{path}: not found (is this a run folder exported by the studio?)")
    except json.JSONDecodeError as e:
        fail(f"{path}: line {e.lineno}: {e.msg}")


def check_run(run, path):
    if run.get("format") != FORMAT:
        fail(f"{path}: field 'format' is {run.get('format')!r}, this script reads {FORMAT!r}")
    if run.get("version") != VERSION:
        fail(f"{path}: field 'version' is {run.get('version')!r}, this script reads version {VERSION}")
    if run.get("accumulation") != "token-weighted":
        fail(f"{path}: field 'accumulation' is {run.get('accumulation')!r}, this script continues 'token-weighted' runs")
    if run["schedule"]["name"] not in SCHEDULES:
        fail(f"{path}: field 'schedule.name' is {run['schedule']['name']!r}, known: {', '.join(SCHEDULES)}")
    if run["optimizer"].get("name") != "adamw_torch":
        fail(f"{path}: field 'optimizer.name' is {run['optimizer'].get('name')!r}, this script continues 'adamw_torch'")
    q = run["quantization"]["type"]
    if q not in ("nf4", "none"):
        fail(f"{path}: field 'quantization.type' is {q!r}, known: nf4, none")
    for k in ("step", "seed"):
        if not isinstance(run.get(k), int) or run[k] < 0:
            fail(f"{path}: field {k!r} must be a whole number >= 0, not {run.get(k)!r}")


def load_tensors(path):
    from safetensors import safe_open
    if not os.path.exists(path):
        fail(f"{path}: not found")
    with safe_open(path, framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, (f.metadata() or {})


class Split:
    """Examples of data/<split>.safetensors: example i is input_ids/labels[offsets[i]:offsets[i+1]]."""

    def __init__(self, path):
        t, _ = load_tensors(path)
        for k in ("input_ids", "labels", "offsets"):
            if k not in t:
                fail(f"{path}: no tensor {k!r}")
        self.path = path
        self.ids = t["input_ids"].long()
        self.labels = t["labels"].long()
        self.offsets = t["offsets"].long().tolist()
        if self.ids.shape != self.labels.shape or self.offsets[0] != 0 or self.offsets[-1] != self.ids.numel():
            fail(f"{path}: offsets/input_ids/labels disagree ({len(self.offsets)} offsets ending at {self.offsets[-1]}, {self.ids.numel()} tokens)")

    def __len__(self):
        return len(self.offsets) - 1

    def example(self, i):
        if not 0 <= i < len(self):
            fail(f"{self.path}: example {i} asked for, the split has {len(self)}")
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.ids[a:b], self.labels[a:b]

    def label_tokens(self, i):
        """Tokens that count in the loss: labels != -100 after the shift by one."""
        _, labels = self.example(i)
        return int((labels[1:] != -100).sum())


def collate(split, indices, pad_id):
    """Right padding to the longest example, as the studio collates (labels -100 on padding)."""
    rows = [split.example(i) for i in indices]
    width = max(len(r[0]) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for j, (x, y) in enumerate(rows):
        ids[j, : len(x)] = x
        labels[j, : len(y)] = y
        mask[j, : len(x)] = 1
    return ids, mask, labels


# ---------------------------------------------------------------- model

def peft_key(name):
    """Parameter name -> the key of adapter_model.safetensors (PEFT drops the adapter name)."""
    name = name.replace("_fsdp_wrapped_module.", "")
    if name.startswith("module."):
        name = name[len("module."):]
    return re.sub(r"\.(lora_[AB])\.[^.]+\.weight$", r".\1.weight", name)


def load_model(run, bundle, args, accelerator):
    import transformers
    from peft import PeftModel

    base = args.base or run["base"]["id"]
    local = os.path.isdir(base) or os.path.isdir(os.path.join(bundle, base))
    if not os.path.isdir(base) and os.path.isdir(os.path.join(bundle, base)):
        base = os.path.join(bundle, base)
    dtype = getattr(torch, args.dtype)
    quantize = run["quantization"]["type"] == "nf4" and not args.no_quantize
    if quantize and not torch.cuda.is_available():
        log("continue.py: this is a 4-bit (nf4) run but there is no CUDA device: bitsandbytes' 4-bit needs one; loading the base unquantized (as --no-quantize)")
        quantize = False
    version = _version(transformers.__version__)
    kw = {"dtype" if version >= (4, 56) else "torch_dtype": dtype}  # `torch_dtype` was renamed in 4.56
    if not local:
        kw["revision"] = run["base"].get("commit") or run["base"].get("revision") or "main"
    if version >= (4, 36):
        kw["attn_implementation"] = args.attn_implementation
    fsdp = accelerator.distributed_type.name == "FSDP"
    if quantize:
        from transformers import BitsAndBytesConfig
        q = run["quantization"]
        if q.get("blocksize", 64) != 64 or q.get("nested_blocksize", 256) != 256:
            log(f"continue.py: the run quantized with blocks of {q.get('blocksize')} / {q.get('nested_blocksize')}; bitsandbytes uses 64 / 256")
        bnb = {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": bool(q.get("double_quant", True)),
               "bnb_4bit_compute_dtype": dtype}
        if fsdp:
            # FSDP shards float tensors only: the packed 4-bit weights are stored in the compute dtype
            # (bitsandbytes docs, fsdp_qlora.md; transformers >= 4.39).
            bnb["bnb_4bit_quant_storage"] = dtype
        kw["quantization_config"] = BitsAndBytesConfig(**bnb)
        if not fsdp:
            kw["device_map"] = {"": accelerator.local_process_index}
    if version < (5, 0):
        kw["low_cpu_mem_usage"] = True  # always on from transformers 5
    log(f"continue.py: base {base} ({'4-bit NF4, compute ' + args.dtype if quantize else args.dtype}) on {accelerator.device}")
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(base, **kw)
    except OSError as e:
        fail(f"run.json base.id {run['base']['id']!r}: the base model could not be loaded ({e}); "
             "give a local copy (a folder with config.json and the weights) with --base PATH")
    model.config.use_cache = False
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    model = PeftModel.from_pretrained(model, os.path.join(bundle, "adapter"), is_trainable=True)
    for _, p in model.named_parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()  # LoRA weights and AdamW stay float32 as in the studio
    if not quantize and not fsdp:  # FSDP places the shards itself
        model.to(accelerator.device)
    return model, quantize


def _version(v):
    return tuple(int(x) for x in re.findall(r"\d+", v)[:2])


# ---------------------------------------------------------------- optimizer and schedule

def make_optimizer(run, params):
    o = run["optimizer"]
    return torch.optim.AdamW([p for _, p in params], lr=run["schedule"]["learning_rate"], betas=(o["beta1"], o["beta2"]),
                             eps=o["eps"], weight_decay=o["weight_decay"])


def full_optimizer_state(run, bundle, params, shapes=None):
    """The optimizer/ moments as torch's state per trainable parameter (in `params` order).

    `shapes` {PEFT key: shape} stands in for the parameters' own where those are shards (FSDP)."""
    step = run["optimizer"]["step"]
    if step == 0:
        return None
    path = os.path.join(bundle, "optimizer", "optimizer.safetensors")
    t, meta = load_tensors(path)
    if meta.get("format") != OPTIMIZER_FORMAT:
        fail(f"{path}: __metadata__ format is {meta.get('format')!r}, expected {OPTIMIZER_FORMAT!r}")
    if int(meta.get("step", -1)) != step:
        fail(f"{path}: __metadata__ step is {meta.get('step')!r}, run.json optimizer.step is {step}")
    state = []
    for name, p in params:
        k = peft_key(name)
        for m in ("exp_avg", "exp_avg_sq"):
            if f"{k}.{m}" not in t:
                fail(f"{path}: no tensor {k}.{m} for the trainable parameter {name}")
            shape = tuple(shapes[k]) if shapes is not None else tuple(p.shape)
            if tuple(t[f"{k}.{m}"].shape) != shape:
                fail(f"{path}: {k}.{m} has shape {list(t[f'{k}.{m}'].shape)}, the parameter {list(shape)}")
        state.append({"step": torch.tensor(float(step)), "exp_avg": t[f"{k}.exp_avg"].float(), "exp_avg_sq": t[f"{k}.exp_avg_sq"].float()})
    extra = {k.rsplit(".", 1)[0] for k in t} - {peft_key(n) for n, _ in params}
    if extra:
        fail(f"{path}: moments for {sorted(extra)[0]} (and {len(extra) - 1} more), which the adapter does not train")
    return state


def load_optimizer_state(optimizer, state):
    if state is None:
        return
    sd = optimizer.state_dict()
    sd["state"] = {i: s for i, s in enumerate(state)}
    optimizer.load_state_dict(sd)  # casts the moments to each parameter's device and dtype


def make_scheduler(run, optimizer):
    from transformers import get_scheduler
    s = run["schedule"]
    name = s["name"]
    sched = get_scheduler(name, optimizer, num_warmup_steps=s["warmup_steps"], num_training_steps=s["total_steps"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()": this is a fast-forward
        for _ in range(s["position"]):
            sched.step()
    return sched


# ---------------------------------------------------------------- distribution

class Ranks:
    def __init__(self, accelerator):
        self.acc = accelerator
        self.world = accelerator.num_processes
        self.rank = accelerator.process_index

    def sum(self, values):
        """All-reduce (sum) of a few float64 numbers."""
        t = torch.tensor(values, dtype=torch.float64, device=self.acc.device)
        if self.world > 1:
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
        return t.tolist()


def step_passes(micro_batches, batch_size, ranks):
    """This process's micro-batches of one optimizer step, and how many passes every process makes.

    One process: the exported micro-batches as they are. N processes: the step's examples in order,
    example k to process k mod N, in micro-batches of at most batch_size; every process makes the
    same number of passes (DDP/FSDP reduce gradients once per pass), padding with empty ones.
    """
    if ranks.world == 1:
        passes = [[i for i in mb if i >= 0] for mb in micro_batches]
        passes = [p for p in passes if p]
        return passes, len(passes)
    flat = [i for mb in micro_batches for i in mb if i >= 0]
    mine = flat[ranks.rank::ranks.world]
    most = math.ceil(len(flat) / ranks.world)
    count = math.ceil(most / batch_size)
    passes = [mine[k:k + batch_size] for k in range(0, len(mine), batch_size)]
    return passes + [[]] * (count - len(passes)), count


def token_loss_sum(model, split, indices, pad_id, device):
    ids, mask, labels = collate(split, indices, pad_id)
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:].to(device)
    return F.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1), ignore_index=-100, reduction="sum")


# ---------------------------------------------------------------- checkpoints

def lora_tensors(model, accelerator):
    """{PEFT key: float32 CPU tensor} of every trainable tensor, gathered whole under FSDP."""
    ctx = contextlib.nullcontext()
    if accelerator.distributed_type.name == "FSDP":
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        ctx = FSDP.summon_full_params(model, writeback=False)
    with ctx:
        return {peft_key(n): p.detach().float().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def optimizer_moments(model, optimizer, params, accelerator):
    """{PEFT key + .exp_avg / .exp_avg_sq: tensor}, and AdamW's step count."""
    if accelerator.distributed_type.name == "FSDP":
        full = _fsdp_full_optim_state(model, optimizer)
        by_name = full["state"]
        out, step = {}, 0
        for name, _ in params:
            fqn = name.replace("_fsdp_wrapped_module.", "")
            s = by_name.get(fqn, {})
            if not s:
                continue
            step = int(float(s["step"]))
            out[f"{peft_key(name)}.exp_avg"] = s["exp_avg"].float().cpu()
            out[f"{peft_key(name)}.exp_avg_sq"] = s["exp_avg_sq"].float().cpu()
        return out, step
    out, step = {}, 0
    for name, p in params:
        s = optimizer.state.get(p, {})
        if not s:
            out[f"{peft_key(name)}.exp_avg"] = torch.zeros(p.shape)
            out[f"{peft_key(name)}.exp_avg_sq"] = torch.zeros(p.shape)
            continue
        step = int(float(s["step"]))
        out[f"{peft_key(name)}.exp_avg"] = s["exp_avg"].detach().float().cpu()
        out[f"{peft_key(name)}.exp_avg_sq"] = s["exp_avg_sq"].detach().float().cpu()
    return out, step


def _fsdp_full_optim_state(model, optimizer):
    try:  # torch >= 2.2
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict
        sd = get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        names = [n for group in sd["param_groups"] for n in group["params"]]
        return {"state": {n: sd["state"].get(n, {}) for n in names}}
    except ImportError:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        return FSDP.full_optim_state_dict(model, optimizer, rank0_only=False)


def _fsdp_load_optim_state(model, optimizer, params, state):
    if state is None:
        return
    named = {name.replace("_fsdp_wrapped_module.", ""): s for (name, _), s in zip(params, state)}
    try:  # torch >= 2.2
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict
        groups = [dict(g, params=list(named)) for g in optimizer.state_dict()["param_groups"]][:1]
        set_optimizer_state_dict(model, optimizer, {"state": named, "param_groups": groups}, options=StateDictOptions(full_state_dict=True))
    except ImportError:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        groups = [dict(g, params=list(named)) for g in optimizer.state_dict()["param_groups"]][:1]
        optimizer.load_state_dict(FSDP.shard_full_optim_state_dict({"state": named, "param_groups": groups}, model))


def _atomic_write(path, data):
    tmp = f"{path}.partial"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def write_run_folder(out, bundle, run, lora, moments, adamw_step, order):
    """A run folder of the bundle's own format: adapter/, optimizer/, data/ (the order from the step
    reached on), the scripts, and run.json last."""
    from safetensors.torch import save
    for sub in ("adapter", "optimizer", "data"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    if os.path.abspath(out) != os.path.abspath(bundle):
        for entry in BUNDLE_COPIED:
            src, dst = os.path.join(bundle, entry), os.path.join(out, entry)
            if not os.path.exists(src):
                continue
            if os.path.isdir(src):
                if not os.path.exists(dst):  # the scripts never change during a run
                    shutil.copytree(src, dst)
            elif not (os.path.exists(dst) and os.path.getsize(dst) == os.path.getsize(src)):
                shutil.copyfile(src, dst)
        for name in sorted(os.listdir(os.path.join(bundle, "data"))):
            src, dst = os.path.join(bundle, "data", name), os.path.join(out, "data", name)
            if name != "order.safetensors" and not (os.path.exists(dst) and os.path.getsize(dst) == os.path.getsize(src)):
                shutil.copyfile(src, dst)
        shutil.copyfile(os.path.join(bundle, "adapter", "adapter_config.json"), os.path.join(out, "adapter", "adapter_config.json"))
    rows, meta = order
    _atomic_write(os.path.join(out, "data", "order.safetensors"), save({"micro_batches": rows}, metadata=meta))
    _atomic_write(os.path.join(out, "adapter", "adapter_model.safetensors"), save(lora, metadata={"format": "pt"}))
    _atomic_write(os.path.join(out, "optimizer", "optimizer.safetensors"),
                  save(moments, metadata={"format": OPTIMIZER_FORMAT, "step": str(adamw_step)}))
    _atomic_write(os.path.join(out, "run.json"), (json.dumps(run, indent=2) + "\n").encode("utf-8"))


# ---------------------------------------------------------------- the run

def default_bundle():
    if os.path.exists("run.json"):
        return "."
    return os.path.dirname(os.path.abspath(__file__))


def main(argv=None):
    args = parse_args(argv)
    bundle = args.bundle or default_bundle()
    run = read_json(os.path.join(bundle, "run.json"))
    check_run(run, os.path.join(bundle, "run.json"))
    out = args.out or os.path.join(bundle, "continued")

    from accelerate import Accelerator
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    ranks = Ranks(accelerator)
    main_process = accelerator.is_main_process
    settings = run["settings"]
    if run["lora"].get("lora_dropout", 0) > 0 and main_process:
        log(f"continue.py: LoRA dropout {run['lora']['lora_dropout']}: the studio's masks come from its own generator, so the steps from here are equal in distribution, not number for number")
    torch.manual_seed(run["seed"])

    train = Split(os.path.join(bundle, "data", "train.safetensors"))
    validation_path = os.path.join(bundle, "data", "validation.safetensors")
    validation = Split(validation_path) if os.path.exists(validation_path) else None
    order_t, order_meta = load_tensors(os.path.join(bundle, "data", "order.safetensors"))
    order = order_t["micro_batches"].long().tolist()
    first_step = int(order_meta.get("first_step", 0))
    grad_accum = int(order_meta.get("grad_accum", settings["gradAccum"]))
    batch_size = int(order_meta.get("batch_size", settings["batchSize"]))
    pad_id = run["data"]["pad_token_id"]
    step = run["step"]
    total = run["schedule"]["total_steps"]
    end = total if args.max_steps is None else args.max_steps
    covered = first_step + len(order) // grad_accum
    if step < first_step:
        fail(f"data/order.safetensors starts at step {first_step}, the run is at step {step}")
    if end > covered:
        fail(f"--max-steps {end}: data/order.safetensors covers steps up to {covered} (the run's total is {total})")
    if run["schedule"]["position"] != step or run["optimizer"]["step"] != step:
        log(f"continue.py: run.json step {step}, schedule.position {run['schedule']['position']}, optimizer.step {run['optimizer']['step']}")

    model, quantized = load_model(run, bundle, args, accelerator)
    fsdp = accelerator.distributed_type.name == "FSDP"
    if fsdp:
        model = accelerator.prepare(model)
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        adapter_shapes = {k: v.shape for k, v in load_tensors(os.path.join(bundle, "adapter", "adapter_model.safetensors"))[0].items()}
        state = full_optimizer_state(run, bundle, [(n.replace("_fsdp_wrapped_module.", ""), p) for n, p in params], adapter_shapes)
        optimizer = make_optimizer(run, params)
        _fsdp_load_optim_state(model, optimizer, params, state)
    else:
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        optimizer = make_optimizer(run, params)
        load_optimizer_state(optimizer, full_optimizer_state(run, bundle, params))
        if ranks.world > 1:
            model = accelerator.prepare(model)
    unwrapped_names = [n for n, _ in params]
    missing = {peft_key(n) for n in unwrapped_names} ^ set(load_tensors(os.path.join(bundle, "adapter", "adapter_model.safetensors"))[0])
    if missing:
        fail(f"adapter/adapter_model.safetensors and the trainable parameters differ on {sorted(missing)[:3]}")
    scheduler = make_scheduler(run, optimizer)
    max_norm = settings["maxGradNorm"] if settings["maxGradNorm"] > 0 else float("inf")
    device = accelerator.device
    log(f"continue.py: steps {step} -> {end} of {total}, {ranks.world} process(es), {train.__len__()} training examples")

    log_train = list(run["log"].get("train", []))
    log_eval = list(run["log"].get("eval", []))
    eval_every = run["intervals"]["eval_every"]
    ckpt_every = run["intervals"]["checkpoint_every"]
    # Optimizer steps per epoch, as the studio counts them (run.json epoch = step / this).
    steps_per_epoch = max(1, math.ceil(math.ceil(run["data"]["train_examples"] / batch_size) / grad_accum))

    def evaluate():
        if validation is None or len(validation) == 0:
            return
        model.eval()
        mine = list(range(ranks.rank, len(validation), ranks.world))
        loss_sum, tokens = 0.0, 0
        with torch.no_grad():
            count = math.ceil(math.ceil(len(validation) / ranks.world) / batch_size)
            for k in range(count):
                idx = mine[k * batch_size:(k + 1) * batch_size] or [0]
                s = token_loss_sum(model, validation, idx, pad_id, device)
                if k * batch_size < len(mine):
                    loss_sum += float(s)
                    tokens += sum(validation.label_tokens(i) for i in idx)
        loss_sum, tokens = ranks.sum([loss_sum, tokens])
        model.train()
        rec = {"step": step, "eval_loss": loss_sum / tokens}
        log_eval.append(rec)
        if main_process:
            print(json.dumps(rec), flush=True)

    def checkpoint():
        lora = lora_tensors(model, accelerator)
        moments, adamw_step = optimizer_moments(model, optimizer, params, accelerator)
        if main_process:
            r = json.loads(json.dumps(run))
            r["exported_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")
            r["step"] = step
            if not quantized:  # the steps from here were taken on the unquantized base
                r["quantization"] = {"type": "none"}
            r["epoch"] = step / steps_per_epoch
            r["schedule"]["position"] = step
            r["optimizer"]["step"] = adamw_step
            r["log"] = {"train": log_train, "eval": log_eval}
            at = (step - first_step) * grad_accum  # the order from the step reached on, as the studio reads it
            rows = order_t["micro_batches"][at:].to(torch.int32).contiguous()
            meta = {"first_step": str(step), "grad_accum": str(grad_accum), "batch_size": str(batch_size)}
            write_run_folder(out, bundle, r, lora, moments, adamw_step, (rows, meta))
            log(f"continue.py: step {step}: run folder written to {out}")
        accelerator.wait_for_everyone()

    model.train()
    if step == 0 and not log_eval and eval_every > 0:
        evaluate()
    while step < end:
        row = (step - first_step) * grad_accum
        passes, count = step_passes(order[row:row + grad_accum], batch_size, ranks)
        mine = sum(train.label_tokens(i) for p in passes for i in p)
        (tokens,) = ranks.sum([mine])
        if tokens == 0:
            fail(f"optimizer step {step} has no label tokens (every label is -100)")
        scale = ranks.world / tokens  # DDP/FSDP average over processes; the step's sum is wanted
        loss_sum = 0.0
        for k in range(count):
            real = k < len(passes) and passes[k]
            sync = k == count - 1 or ranks.world == 1
            ctx = contextlib.nullcontext() if sync else accelerator.no_sync(model)
            with ctx:
                idx = passes[k] if real else [next(i for mb in order[row:row + grad_accum] for i in mb if i >= 0)]
                s = token_loss_sum(model, train, idx, pad_id, device)
                (s * (scale if real else 0.0)).backward()
            if real:
                loss_sum += float(s.detach())
        (loss_sum,) = ranks.sum([loss_sum])
        if fsdp or ranks.world > 1:
            grad_norm = accelerator.clip_grad_norm_([p for _, p in params], max_norm)
        else:
            grad_norm = torch.nn.utils.clip_grad_norm_([p for _, p in params], max_norm)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        rec = {"step": step, "loss": loss_sum / tokens, "lr": lr, "grad_norm": float(grad_norm)}
        log_train.append(rec)
        if main_process:
            print(json.dumps(rec), flush=True)
        if not (math.isfinite(rec["loss"]) and math.isfinite(rec["grad_norm"])):
            checkpoint()
            fail(f"training diverged at step {step}: loss {rec['loss']}, gradient norm {rec['grad_norm']} (try a lower learning rate)")
        if eval_every > 0 and step % eval_every == 0 and step < total:
            evaluate()
        if ckpt_every > 0 and step % ckpt_every == 0 and step < end:
            checkpoint()
    if step == total:
        evaluate()
    checkpoint()
    accelerator.end_training() if hasattr(accelerator, "end_training") else None


if __name__ == "__main__":
    main()
