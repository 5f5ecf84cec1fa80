// One AdamW step over `count` elements, torch.optim.AdamW's single-tensor path (torch 1.13),
// in f32 with every scalar rounded to f32 once on the CPU (they are Python floats in torch):
//   g  = grad · clipCoef                      (clip_grad_norm_ scaled the gradient in place)
//   p  = p · decay                            decay = 1 − lr·wd (decoupled, applied first)
//   m  = m · β1 + (1 − β1) · g                exp_avg.mul_(β1).add_(g, alpha=1−β1)
//   v  = v · β2 + ((1 − β2) · g) · g          exp_avg_sq.mul_(β2).addcmul_(g, g, value=1−β2)
//   d  = sqrt(v) / sqrt(1 − β2^t) + eps       (exp_avg_sq.sqrt() / bc2_sqrt).add_(eps)
//   p  = p + (negStepSize · m) / d            p.addcdiv_(m, d, value=−lr/(1 − β1^t))
// The parameter and gradient are addressed from `paramOffset`, the moments from `stateOffset`
// (a page of the optimizer state may hold a slice of a tensor). The gradient is zeroed after it
// is read when ZERO_GRAD is set (the next accumulation window starts from zero).
override ZERO_GRAD: bool = false;
const WG: u32 = 256u;

struct Params {
  count: u32, paramOffset: u32, stateOffset: u32, _pad0: u32,
  decay: f32, beta1: f32, oneMinusBeta1: f32, beta2: f32,
  oneMinusBeta2: f32, bc2Sqrt: f32, eps: f32, negStepSize: f32,
}

@group(0) @binding(0) var<storage, read_write> param: array<f32>;
@group(0) @binding(1) var<storage, read_write> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> expAvg: array<f32>;
@group(0) @binding(3) var<storage, read_write> expAvgSq: array<f32>;
// [0] = pre-clip total norm, [1] = clip coefficient (1 when no clipping happened).
@group(0) @binding(4) var<storage, read> clip: array<f32>;
@group(0) @binding(5) var<uniform> u: Params;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * nwg.x + wid.x) * WG + lid;
  if (i >= u.count) { return; }
  let pi = u.paramOffset + i;
  let si = u.stateOffset + i;
  let g = grad[pi] * clip[1];
  var p = param[pi] * u.decay;
  let m = expAvg[si] * u.beta1 + u.oneMinusBeta1 * g;
  let v = expAvgSq[si] * u.beta2 + (u.oneMinusBeta2 * g) * g;
  let d = sqrt(v) / u.bc2Sqrt + u.eps;
  p = p + (u.negStepSize * m) / d;
  param[pi] = p;
  expAvg[si] = m;
  expAvgSq[si] = v;
  if (ZERO_GRAD) { grad[pi] = 0.0; }
}
