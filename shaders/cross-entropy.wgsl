// Cross-entropy over the vocabulary for a chunk of rows, one workgroup per row.
// targets[rowStart + r] is the (already shifted) label of row r, or < 0 to ignore the row.
// loss[rowStart + r] = logsumexp(logits_r) - logits_r[target] (0 for ignored rows).
// With backward != 0 the logits are overwritten in place by gradScale * (softmax - onehot)
// (zeros for ignored rows), so the chunk's logits buffer doubles as its gradient buffer.
const WG: u32 = 256u;
struct Params { rows: u32, vocab: u32, rowStart: u32, backward: u32, gradScale: f32, _a: u32, _b: u32, _c: u32 }
@group(0) @binding(0) var<storage, read_write> logits: array<f32>;
@group(0) @binding(1) var<storage, read> targets: array<i32>;
@group(0) @binding(2) var<storage, read_write> loss: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
var<workgroup> red: array<f32, 256>;
var<workgroup> rowTarget: i32;

fn reduce_max(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) { red[lid] = max(red[lid], red[lid + s]); }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

fn reduce_sum(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) { red[lid] = red[lid] + red[lid + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lidv: vec3<u32>) {
  let r = wid.y * nwg.x + wid.x;
  if (r >= p.rows) { return; }
  let lid = lidv.x;
  let base = r * p.vocab;
  if (lid == 0u) { rowTarget = targets[p.rowStart + r]; }
  // Loaded once and broadcast, so the branch below is uniform across the workgroup.
  let tgt = workgroupUniformLoad(&rowTarget);
  if (tgt < 0) {
    if (p.backward != 0u) {
      for (var c = lid; c < p.vocab; c += WG) { logits[base + c] = 0.0; }
    }
    if (lid == 0u) { loss[p.rowStart + r] = 0.0; }
    return;
  }
  var m = -3.0e38;
  for (var c = lid; c < p.vocab; c += WG) { m = max(m, logits[base + c]); }
  m = reduce_max(lid, m);
  var s = 0.0;
  for (var c = lid; c < p.vocab; c += WG) { s += exp(logits[base + c] - m); }
  s = reduce_sum(lid, s);
  let lse = m + log(s);
  let t = u32(tgt);
  if (lid == 0u) { loss[p.rowStart + r] = lse - logits[base + t]; }
  // Every invocation has read what it needs (the target logit above) before anyone writes.
  workgroupBarrier();
  if (p.backward != 0u) {
    for (var c = lid; c < p.vocab; c += WG) {
      let g = exp(logits[base + c] - lse) - select(0.0, 1.0, c == t);
      logits[base + c] = p.gradScale * g;
    }
  }
}
