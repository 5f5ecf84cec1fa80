// LayerNorm over the last dimension, one workgroup per row. Weights are frozen, so the backward
// pass gives the input gradient only. Statistics (mean, 1/std) are kept for the backward pass.
// Threads per row: a power of two from 32 to 256, about a quarter of the row (a 128-wide row
// gets 32, not 256 mostly idle ones waiting at every barrier of the reduction).
override WG: u32 = 256u;
struct Params { rows: u32, cols: u32, eps: f32, accumulate: u32 }
var<workgroup> red: array<f32, 256>;
var<workgroup> red2: array<f32, 256>;

fn reduce2(lid: u32, a: f32, b: f32) -> vec2<f32> {
  red[lid] = a;
  red2[lid] = b;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) {
      red[lid] = red[lid] + red[lid + s];
      red2[lid] = red2[lid] + red2[lid + s];
    }
    workgroupBarrier();
  }
  let r = vec2<f32>(red[0], red2[0]);
  workgroupBarrier();
  return r;
}

// ---- forward: y = (x - mean) * rstd * w + b
@group(0) @binding(0) var<storage, read> fx: array<f32>;
@group(0) @binding(1) var<storage, read> fw: array<f32>;
@group(0) @binding(2) var<storage, read> fb: array<f32>;
@group(0) @binding(3) var<storage, read_write> fy: array<f32>;
@group(0) @binding(4) var<storage, read_write> fstats: array<f32>;
@group(0) @binding(5) var<uniform> fp: Params;

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lidv: vec3<u32>) {
  let row = wid.y * nwg.x + wid.x;
  if (row >= fp.rows) { return; }
  let lid = lidv.x;
  let base = row * fp.cols;
  var s = 0.0;
  for (var c = lid; c < fp.cols; c += WG) { s += fx[base + c]; }
  let mean = reduce2(lid, s, 0.0).x / f32(fp.cols);
  var v = 0.0;
  for (var c = lid; c < fp.cols; c += WG) { let d = fx[base + c] - mean; v += d * d; }
  let variance = reduce2(lid, v, 0.0).x / f32(fp.cols);
  let rstd = 1.0 / sqrt(variance + fp.eps);
  for (var c = lid; c < fp.cols; c += WG) {
    fy[base + c] = (fx[base + c] - mean) * rstd * fw[c] + fb[c];
  }
  if (lid == 0u) {
    fstats[2u * row] = mean;
    fstats[2u * row + 1u] = rstd;
  }
}

// ---- backward: dx (+)= rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * w
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
  let mean = bstats[2u * row];
  let rstd = bstats[2u * row + 1u];
  var sg = 0.0;
  var sgx = 0.0;
  for (var c = lid; c < bp.cols; c += WG) {
    let g = bdy[base + c] * bw[c];
    sg += g;
    sgx += g * (bx[base + c] - mean) * rstd;
  }
  let sums = reduce2(lid, sg, sgx) / f32(bp.cols);
  for (var c = lid; c < bp.cols; c += WG) {
    let g = bdy[base + c] * bw[c];
    let xhat = (bx[base + c] - mean) * rstd;
    let d = rstd * (g - sums.x - xhat * sums.y);
    if (bp.accumulate != 0u) { bdx[base + c] = bdx[base + c] + d; } else { bdx[base + c] = d; }
  }
}
