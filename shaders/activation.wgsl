// GELU activations. mode 0 = gelu_new (tanh approximation), 1 = exact erf GELU.
// forward: y = f(x); backward (in place on dy): dy = dy * f'(x).
struct Params { n: u32, mode: u32, _a: u32, _b: u32 }
const SQRT_2_OVER_PI: f32 = 0.7978845608028654;
const INV_SQRT_2: f32 = 0.7071067811865476;
const INV_SQRT_2PI: f32 = 0.3989422804014327;

// tanh without overflow for large |u| (exp(2u) would be inf).
fn safe_tanh(u: f32) -> f32 {
  let t = exp(-2.0 * abs(u));
  return sign(u) * (1.0 - t) / (1.0 + t);
}

// erf from the Chebyshev fit erfc(z) = t * exp(-z^2 + P(t)), t = 1 / (1 + z/2) (Numerical Recipes'
// erfcc): fractional error below 1.2e-7 for all z >= 0, so 1 + erf is good to ~1e-7 absolute.
fn erf_approx(x: f32) -> f32 {
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.5 * z);
  let poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  let erfc = t * exp(poly);
  return select(erfc - 1.0, 1.0 - erfc, x >= 0.0);
}

fn gelu(x: f32, mode: u32) -> f32 {
  if (mode == 0u) { return 0.5 * x * (1.0 + safe_tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))); }
  return 0.5 * x * (1.0 + erf_approx(x * INV_SQRT_2));
}

fn gelu_grad(x: f32, mode: u32) -> f32 {
  if (mode == 0u) {
    let u = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
    let t = safe_tanh(u);
    let du = SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x);
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du;
  }
  return 0.5 * (1.0 + erf_approx(x * INV_SQRT_2)) + x * INV_SQRT_2PI * exp(-0.5 * x * x);
}

@group(0) @binding(0) var<storage, read> fx: array<f32>;
@group(0) @binding(1) var<storage, read_write> fy: array<f32>;
@group(0) @binding(2) var<uniform> fp: Params;

@compute @workgroup_size(256)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = (wid.y * nwg.x + wid.x) * 256u + lid.x;
  if (i >= fp.n) { return; }
  fy[i] = gelu(fx[i], fp.mode);
}

@group(0) @binding(0) var<storage, read> bx: array<f32>;
@group(0) @binding(1) var<storage, read_write> bdy: array<f32>;
@group(0) @binding(2) var<uniform> bp: Params;

@compute @workgroup_size(256)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = (wid.y * nwg.x + wid.x) * 256u + lid.x;
  if (i >= bp.n) { return; }
  bdy[i] = bdy[i] * gelu_grad(bx[i], bp.mode);
}
