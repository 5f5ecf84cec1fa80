// RMSNorm over the last dimension (Llama, Qwen2, Phi-3), one workgroup per row:
// y = w * (x * rstd), rstd = 1 / sqrt(mean(x²) + eps), in that order (transformers' LlamaRMSNorm
// normalises first and multiplies by the weight after). Weights are frozen, so the backward pass
// gives the input gradient only; rstd is kept per row for it.
// Threads per row: a power of two from 32 to 256, about a quarter of the row (a 128-wide row
// gets 32, not 256 mostly idle ones waiting at every barrier of the reduction).
override WG: u32 = 256u;
struct Params { rows: u32, cols: u32, eps: f32, accumulate: u32 }
var<workgroup> red: array<f32, 256>;

fn reduce(lid: u32, a: f32) -> f32 {
  red[lid] = a;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) { red[lid] = red[lid] + red[lid + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

// ---- forward
@group(0) @binding(0) var<storage, read> fx: array<f32>;
@group(0) @binding(1) var<storage, read> fw: array<f32>;
@group(0) @binding(2) var<storage, read_write> fy: array<f32>;
@group(0) @binding(3) var<storage, read_write> fstats: array<f32>;
@group(0) @binding(4) var<uniform> fp: Params;

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lidv: vec3<u32>) {
  let row = wid.y * nwg.x + wid.x;
  if (row >= fp.rows) { return; }
  let lid = lidv.x;
  let base = row * fp.cols;
  var s = 0.0;
  for (var c = lid; c < fp.cols; c += WG) { let v = fx[base + c]; s += v * v; }
  let rstd = 1.0 / sqrt(reduce(lid, s) / f32(fp.cols) + fp.eps);
  for (var c = lid; c < fp.cols; c += WG) { fy[base + c] = fw[c] * (fx[base + c] * rstd); }
  if (lid == 0u) { fstats[row] = rstd; }
}

// ---- backward: with g = dy * w and xhat = x * rstd, dx (+)= rstd * (g - xhat * mean(g * xhat))
@group(0) @binding(0) var<storage, read> bx: array<f32>;
@group(0) @binding(1) var<storage, read> bw: array<f32>;
@group(0) @binding(2) var<storage, read> bstats: array<f32>;
@group(0) @binding(3) var<storage, read> bdy: array<f32>;
@group(0) @binding(4) var<storage, read_write> bdx: array<f32>;
@group(0) @binding(5) var<uniform> bp: Params;

@compute @workgroup_size(WG)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lidv: vec3<u32>) {
  let row = wid.y * nwg.x + wid.x;
  if (row >= bp.rows) { return; }
  let lid = lidv.x;
  let base = row * bp.cols;
  let rstd = bstats[row];
  var sgx = 0.0;
  for (var c = lid; c < bp.cols; c += WG) { sgx += bdy[base + c] * bw[c] * bx[base + c] * rstd; }
  let mgx = reduce(lid, sgx) / f32(bp.cols);
  for (var c = lid; c < bp.cols; c += WG) {
    let xhat = bx[base + c] * rstd;
    let d = rstd * (bdy[base + c] * bw[c] - xhat * mgx);
    if (bp.accumulate != 0u) { bdx[base + c] = bdx[base + c] + d; } else { bdx[base + c] = d; }
  }
}
