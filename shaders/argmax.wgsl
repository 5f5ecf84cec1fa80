// Argmax over each row of logits, one workgroup per row: out[outOffset + r] = the index of the
// largest of logits[logitsOffset + r * vocab ..][0 .. vocab). Ties go to the first index, like
// torch.argmax; NaN counts as larger than every number (so the first NaN wins, as in
// torch.argmax); -0 equals +0. The logits are read as raw bits and compared through an
// order-preserving u32 key, which stays exact even where a compiler assumes floats are never NaN.
const WG: u32 = 256u;
struct Params { rows: u32, vocab: u32, logitsOffset: u32, outOffset: u32 }
@group(0) @binding(0) var<storage, read> logits: array<u32>;
@group(0) @binding(1) var<storage, read_write> outp: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;
var<workgroup> bestKey: array<u32, 256>;
var<workgroup> bestIdx: array<u32, 256>;

// Larger key = larger value. Every real key is > 0 (the smallest, -Infinity, maps to 0x007fffff),
// so key 0 with index 0xffffffff marks "nothing seen" and loses to any element.
fn sortKey(bits: u32) -> u32 {
  let mag = bits & 0x7fffffffu;
  if (mag > 0x7f800000u) { return 0xffffffffu; }
  if (mag == 0u) { return 0x80000000u; }
  return select(bits | 0x80000000u, ~bits, (bits & 0x80000000u) != 0u);
}

fn better(k: u32, i: u32, bk: u32, bi: u32) -> bool {
  return k > bk || (k == bk && i < bi);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lidv: vec3<u32>) {
  let r = wid.y * nwg.x + wid.x;
  // r is the same for the whole workgroup, so this return keeps the barriers below uniform.
  if (r >= p.rows) { return; }
  let lid = lidv.x;
  let base = p.logitsOffset + r * p.vocab;
  var k = 0u;
  var idx = 0xffffffffu;
  // Ascending indices per invocation: a strict > keeps the first of equal values.
  for (var c = lid; c < p.vocab; c += WG) {
    let kc = sortKey(logits[base + c]);
    if (kc > k) { k = kc; idx = c; }
  }
  bestKey[lid] = k;
  bestIdx[lid] = idx;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s && better(bestKey[lid + s], bestIdx[lid + s], bestKey[lid], bestIdx[lid])) {
      bestKey[lid] = bestKey[lid + s];
      bestIdx[lid] = bestIdx[lid + s];
    }
    workgroupBarrier();
  }
  if (lid == 0u) { outp[p.outOffset + r] = bestIdx[0]; }
}
