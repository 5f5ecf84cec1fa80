// Small elementwise and copy kernels. 1-D launches use gpu.grid: index = (wid.y * nwg.x + wid.x) * 256 + lid.x.
// Each entry point declares its own bindings (numbered from 0), so one module serves all of them.

// ---- copy_rows: dst[dOff + r*dStride + c] = src[sOff + r*sStride + c], r < rows, c < cols.
struct CopyParams { rows: u32, cols: u32, sStride: u32, sOff: u32, dStride: u32, dOff: u32, accumulate: u32, _p: u32 }
@group(0) @binding(0) var<storage, read> cpSrc: array<f32>;
@group(0) @binding(1) var<storage, read_write> cpDst: array<f32>;
@group(0) @binding(2) var<uniform> cp: CopyParams;

@compute @workgroup_size(256)
fn copy_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let idx = (wid.y * nwg.x + wid.x) * 256u + lid.x;
  if (idx >= cp.rows * cp.cols) { return; }
  let r = idx / cp.cols;
  let c = idx % cp.cols;
  let d = cp.dOff + r * cp.dStride + c;
  let v = cpSrc[cp.sOff + r * cp.sStride + c];
  if (cp.accumulate != 0u) { cpDst[d] = cpDst[d] + v; } else { cpDst[d] = v; }
}

// ---- axpy: y[i] = y[i] + alpha * x[i]
struct AxpyParams { n: u32, alpha: f32, _a: u32, _b: u32 }
@group(0) @binding(0) var<storage, read> axX: array<f32>;
@group(0) @binding(1) var<storage, read_write> axY: array<f32>;
@group(0) @binding(2) var<uniform> ax: AxpyParams;

@compute @workgroup_size(256)
fn axpy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = (wid.y * nwg.x + wid.x) * 256u + lid.x;
  if (i >= ax.n) { return; }
  axY[i] = axY[i] + ax.alpha * axX[i];
}
