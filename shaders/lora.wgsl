// LoRA dropout: dst = (ACCUMULATE ? dst : 0) + mask(i) · src · keepScale, with the keep mask
// drawn from a counter-based hash of (seed, step, layer, element index) so the backward pass
// regenerates the forward mask without storing it. The CPU twin is in workers/kernels/lora.ts.
override ACCUMULATE: bool = false;
override WG: u32 = 256u;

struct Params {
  count: u32,
  // pcg(layer ^ pcg(step ^ pcg(seed))), folded on the CPU: constant for one dispatch.
  key: u32,
  // Drop when the hash's top 24 bits are below this (round(p · 2^24)).
  threshold: u32,
  // 1 / (1 - p) rounded to float32: inverted dropout as torch.nn.Dropout scales.
  keepScale: f32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

fn pcg(v: u32) -> u32 {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

fn keep(i: u32) -> bool {
  let h = pcg(pcg(i ^ p.key) + p.key);
  return (h >> 8u) >= p.threshold;
}

@compute @workgroup_size(WG)
fn dropout(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * nwg.x + wid.x) * WG + lid;
  if (i >= p.count) { return; }
  var v = 0.0;
  if (keep(i)) { v = src[i] * p.keepScale; }
  if (ACCUMULATE) { v += dst[i]; }
  dst[i] = v;
}
