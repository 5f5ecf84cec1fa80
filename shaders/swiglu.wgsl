// SiLU-gated MLP activation (Llama, Qwen2, Phi-3): act = silu(gate) * up, silu(g) = g * sigmoid(g).
// gate, up and act are [rows, ffn] slices of rows of their own stride, starting at their own
// offset: two buffers (gate_proj, up_proj), or one fused gate_up_proj row [gate | up].
// backward: from d(act), d(gate) = d(act) * up * silu'(g) and d(up) = d(act) * silu(g), written
// to two buffers ('backward') or both into one ('backward_shared', the fused layout): a buffer
// bound read-write may not be bound twice.
struct Params {
  rows: u32, ffn: u32,
  gStride: u32, gOff: u32, uStride: u32, uOff: u32,
  oStride: u32, oOff: u32, dgStride: u32, dgOff: u32, duStride: u32, duOff: u32,
}

// sigmoid without overflow: exp of a non-positive number only.
fn sigmoid(g: f32) -> f32 {
  let t = exp(-abs(g));
  return select(t / (1.0 + t), 1.0 / (1.0 + t), g >= 0.0);
}

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
  return (wid.y * nwg.x + wid.x) * 256u + lid.x;
}

// ---- forward
@group(0) @binding(0) var<storage, read> fgate: array<f32>;
@group(0) @binding(1) var<storage, read> fup: array<f32>;
@group(0) @binding(2) var<storage, read_write> fact: array<f32>;
@group(0) @binding(3) var<uniform> fp: Params;

@compute @workgroup_size(256)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = index(wid, nwg, lid);
  if (i >= fp.rows * fp.ffn) { return; }
  let r = i / fp.ffn;
  let c = i % fp.ffn;
  let g = fgate[r * fp.gStride + fp.gOff + c];
  fact[r * fp.oStride + fp.oOff + c] = g * sigmoid(g) * fup[r * fp.uStride + fp.uOff + c];
}

// ---- backward into two buffers
@group(0) @binding(0) var<storage, read> bgate: array<f32>;
@group(0) @binding(1) var<storage, read> bup: array<f32>;
@group(0) @binding(2) var<storage, read> bdact: array<f32>;
@group(0) @binding(3) var<storage, read_write> bdgate: array<f32>;
@group(0) @binding(4) var<storage, read_write> bdup: array<f32>;
@group(0) @binding(5) var<uniform> bp: Params;

// (d gate, d up) for one element.
fn grads(g: f32, u: f32, d: f32) -> vec2<f32> {
  let s = sigmoid(g);
  return vec2<f32>(d * u * s * (1.0 + g * (1.0 - s)), d * g * s);
}

@compute @workgroup_size(256)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = index(wid, nwg, lid);
  if (i >= bp.rows * bp.ffn) { return; }
  let r = i / bp.ffn;
  let c = i % bp.ffn;
  let d = grads(bgate[r * bp.gStride + bp.gOff + c], bup[r * bp.uStride + bp.uOff + c], bdact[r * bp.oStride + bp.oOff + c]);
  bdgate[r * bp.dgStride + bp.dgOff + c] = d.x;
  bdup[r * bp.duStride + bp.duOff + c] = d.y;
}

// ---- backward with d(gate) and d(up) in one buffer
@group(0) @binding(0) var<storage, read> sgate: array<f32>;
@group(0) @binding(1) var<storage, read> sup: array<f32>;
@group(0) @binding(2) var<storage, read> sdact: array<f32>;
@group(0) @binding(3) var<storage, read_write> sdgu: array<f32>;
@group(0) @binding(4) var<uniform> sp: Params;

@compute @workgroup_size(256)
fn backward_shared(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = index(wid, nwg, lid);
  if (i >= sp.rows * sp.ffn) { return; }
  let r = i / sp.ffn;
  let c = i % sp.ffn;
  let d = grads(sgate[r * sp.gStride + sp.gOff + c], sup[r * sp.uStride + sp.uOff + c], sdact[r * sp.oStride + sp.oOff + c]);
  sdgu[r * sp.dgStride + sp.dgOff + c] = d.x;
  sdgu[r * sp.duStride + sp.duOff + c] = d.y;
}
