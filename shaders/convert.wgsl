// Widen 16-bit floats packed two per u32 (element 2k in the low half, as little-endian
// storage lays them out) to f32. MODE 0 = IEEE half, 1 = bfloat16.
override MODE: u32 = 0u;
override WG: u32 = 256u;

struct Params { count: u32 }

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

fn widen(bits: u32) -> f32 {
  if (MODE == 1u) {
    return bitcast<f32>(bits << 16u);
  }
  return unpack2x16float(bits).x;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * nwg.x + wid.x) * WG + lid;
  if (i >= params.count) { return; }
  let word = src[i >> 1u];
  let half = select(word & 0xffffu, word >> 16u, (i & 1u) == 1u);
  dst[i] = widen(half);
}
