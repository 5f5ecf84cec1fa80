// Global gradient L2 norm and clip coefficient, as torch.nn.utils.clip_grad_norm_ computes them:
// a norm per tensor, then the norm of those norms; coef = min(1, maxNorm / (total + 1e-6)).
// Summation order (f32 throughout, reproduced by gradNormCpu):
//   sumsq:    workgroup w of a tensor covers elements [w·2048, (w+1)·2048); lane l adds the
//             squares of elements w·2048 + l + 256·k for k = 0..7 in order; the 256 lane sums
//             are combined by a halving tree (lane l += lane l + s, s = 128, 64, …, 1).
//   finalize: tensor t's norm = sqrt(sum of its workgroup partials, in order); lane l adds
//             norm² of tensors l, l + 256, … in order; halving tree; total = sqrt(sum).
const WG: u32 = 256u;
const ITEMS: u32 = 8u;

struct SumSqParams { count: u32, offset: u32, partialOffset: u32, _pad: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> partials: array<f32>;
@group(0) @binding(2) var<uniform> sp: SumSqParams;

var<workgroup> lanes: array<f32, 256>;

@compute @workgroup_size(256)
fn sumsq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
  let w = wid.y * nwg.x + wid.x;
  let base = w * WG * ITEMS;
  var acc = 0.0;
  for (var k = 0u; k < ITEMS; k++) {
    let i = base + lid + WG * k;
    if (i < sp.count) {
      let v = x[sp.offset + i];
      acc += v * v;
    }
  }
  lanes[lid] = acc;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) { lanes[lid] += lanes[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u) { partials[sp.partialOffset + w] = lanes[0]; }
}
