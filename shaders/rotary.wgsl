// Rotary position embedding, half-split (GPT-NeoX) layout, applied in place to the first
// `rotDim` features of each head: (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin) for pairs
// (p, p + rotDim/2). sign = -1 applies the transpose (the backward pass). Rows are tokens
// (b * seq + t) with position posOffset + t; heads start at `off` within a row of `stride` floats.
struct Params { rows: u32, seq: u32, heads: u32, headDim: u32, rotDim: u32, stride: u32, off: u32, posOffset: u32, sign: f32, _a: u32, _b: u32, _c: u32 }
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> cosT: array<f32>;
@group(0) @binding(2) var<storage, read> sinT: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let half = p.rotDim / 2u;
  let idx = (wid.y * nwg.x + wid.x) * 256u + lid.x;
  if (idx >= p.rows * p.heads * half) { return; }
  let i = idx % half;
  let h = (idx / half) % p.heads;
  let r = idx / (half * p.heads);
  let pos = p.posOffset + r % p.seq;
  let c = cosT[pos * half + i];
  let s = p.sign * sinT[pos * half + i];
  let base = r * p.stride + p.off + h * p.headDim;
  let x1 = x[base + i];
  let x2 = x[base + i + half];
  x[base + i] = x1 * c - x2 * s;
  x[base + i + half] = x2 * c + x1 * s;
}
