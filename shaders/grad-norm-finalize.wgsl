// Second pass of the gradient norm (see grad-norm-sumsq.wgsl for the summation order).
const WG: u32 = 256u;

struct FinalParams { tensors: u32, maxNorm: f32, _pad0: u32, _pad1: u32 }

var<workgroup> lanes: array<f32, 256>;

// partialStart[t] .. partialStart[t + 1] are tensor t's partials.
@group(0) @binding(0) var<storage, read> allPartials: array<f32>;
@group(0) @binding(1) var<storage, read> partialStart: array<u32>;
@group(0) @binding(2) var<storage, read_write> clipOut: array<f32>;
@group(0) @binding(3) var<uniform> fp: FinalParams;

@compute @workgroup_size(256)
fn finalize(@builtin(local_invocation_index) lid: u32) {
  var acc = 0.0;
  for (var t = lid; t < fp.tensors; t += WG) {
    var s = 0.0;
    for (var j = partialStart[t]; j < partialStart[t + 1u]; j++) { s += allPartials[j]; }
    let n = sqrt(s);
    acc += n * n;
  }
  lanes[lid] = acc;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) { lanes[lid] += lanes[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let total = sqrt(lanes[0]);
    var coef = 1.0;
    if (fp.maxNorm > 0.0) { coef = min(fp.maxNorm / (total + 1e-6), 1.0); }
    clipOut[0] = total;
    clipOut[1] = coef;
  }
}
