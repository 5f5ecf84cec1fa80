// Token embedding gather: out[r, c] = table[ids[r], c]. The table is read as raw 32-bit words:
// f32 (mode 0) or 16-bit values packed two per u32, element 2k in the low half (1 = f16, 2 = bf16).
struct Params { rows: u32, hidden: u32, vocab: u32, mode: u32 }
@group(0) @binding(0) var<storage, read> ids: array<i32>;
@group(0) @binding(1) var<storage, read> table: array<u32>;
@group(0) @binding(2) var<storage, read_write> outp: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

fn load(e: u32) -> f32 {
  if (p.mode == 0u) { return bitcast<f32>(table[e]); }
  let word = table[e >> 1u];
  let half = select(word & 0xffffu, word >> 16u, (e & 1u) == 1u);
  if (p.mode == 1u) { return unpack2x16float(half).x; }
  return bitcast<f32>(half << 16u);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let idx = (wid.y * nwg.x + wid.x) * 256u + lid.x;
  if (idx >= p.rows * p.hidden) { return; }
  let r = idx / p.hidden;
  let c = idx % p.hidden;
  let id = u32(clamp(ids[r], 0, i32(p.vocab) - 1));
  outp[idx] = load(id * p.hidden + c);
}
