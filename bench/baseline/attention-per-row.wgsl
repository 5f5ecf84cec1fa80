// The per-row attention kernel the tiled one in shaders/attention.wgsl replaced, kept unchanged
// as the `bench attention` baseline only (bench/suites/attention.ts); nothing else uses it.
//
// Causal scaled-dot-product attention with a key padding mask, multi-head / grouped / multi-query
// (query head h reads K/V head h / (H / KVH)). Memory-efficient: each invocation streams over the
// keys with an online softmax and keeps only its row's running max and sum, so no T x T score
// matrix exists; the backward pass recomputes probabilities from the saved log-sum-exp.
//
// Rows are tokens: query row b*Tq + i at absolute position posOffset + i; key row b*Tk + j at
// position j. Key j is visible to query i when j <= posOffset + i and mask[b*Tk + j] != 0.
// Heads live at `off + head * D` inside rows of `stride` floats, so fused QKV layouts work as they are.
// stats[2n] = log-sum-exp of row n = (b*H + h)*Tq + i; stats[2n + 1] = sum_d dO*O (backward).
const MAXD: u32 = 128u;
const NO_KEY: f32 = 3.0e38;

struct Params {
  B: u32, Tq: u32, Tk: u32, H: u32,
  KVH: u32, D: u32, qStride: u32, qOff: u32,
  kStride: u32, kOff: u32, vStride: u32, vOff: u32,
  oStride: u32, oOff: u32, posOffset: u32, hasMask: u32,
  scale: f32, dkStride: u32, dkOff: u32, dvStride: u32,
  dvOff: u32, _a: u32, _b: u32, _c: u32,
}

fn linear_id(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
  return (wid.y * nwg.x + wid.x) * 64u + lid.x;
}

// ---------------- forward
@group(0) @binding(0) var<storage, read> fq: array<f32>;
@group(0) @binding(1) var<storage, read> fk: array<f32>;
@group(0) @binding(2) var<storage, read> fv: array<f32>;
@group(0) @binding(3) var<storage, read> fmask: array<i32>;
@group(0) @binding(4) var<storage, read_write> fo: array<f32>;
@group(0) @binding(5) var<storage, read_write> fstats: array<f32>;
@group(0) @binding(6) var<uniform> fp: Params;

@compute @workgroup_size(64)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let idx = linear_id(wid, nwg, lid);
  if (idx >= fp.B * fp.H * fp.Tq) { return; }
  let i = idx % fp.Tq;
  let h = (idx / fp.Tq) % fp.H;
  let b = idx / (fp.Tq * fp.H);
  let g = h / (fp.H / fp.KVH);
  let D = fp.D;
  let qBase = (b * fp.Tq + i) * fp.qStride + fp.qOff + h * D;
  var qv: array<f32, MAXD>;
  var acc: array<f32, MAXD>;
  for (var d = 0u; d < D; d++) { qv[d] = fq[qBase + d]; acc[d] = 0.0; }
  var m = -NO_KEY;
  var l = 0.0;
  let last = min(fp.Tk, fp.posOffset + i + 1u);
  for (var j = 0u; j < last; j++) {
    if (fp.hasMask != 0u && fmask[b * fp.Tk + j] == 0) { continue; }
    let kBase = (b * fp.Tk + j) * fp.kStride + fp.kOff + g * D;
    var s = 0.0;
    for (var d = 0u; d < D; d++) { s += qv[d] * fk[kBase + d]; }
    s *= fp.scale;
    let mNew = max(m, s);
    let corr = exp(m - mNew);
    let pj = exp(s - mNew);
    l = l * corr + pj;
    let vBase = (b * fp.Tk + j) * fp.vStride + fp.vOff + g * D;
    for (var d = 0u; d < D; d++) { acc[d] = acc[d] * corr + pj * fv[vBase + d]; }
    m = mNew;
  }
  let inv = select(0.0, 1.0 / l, l > 0.0);
  let oBase = (b * fp.Tq + i) * fp.oStride + fp.oOff + h * D;
  for (var d = 0u; d < D; d++) { fo[oBase + d] = acc[d] * inv; }
  fstats[2u * idx] = select(NO_KEY, m + log(l), l > 0.0);
}

// ---------------- backward, step 1: stats[2n + 1] = dO_n · O_n
@group(0) @binding(0) var<storage, read> po: array<f32>;
@group(0) @binding(1) var<storage, read> pdo: array<f32>;
@group(0) @binding(2) var<storage, read_write> pstats: array<f32>;
@group(0) @binding(3) var<uniform> pp: Params;

@compute @workgroup_size(64)
fn backward_prep(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let idx = linear_id(wid, nwg, lid);
  if (idx >= pp.B * pp.H * pp.Tq) { return; }
  let i = idx % pp.Tq;
  let h = (idx / pp.Tq) % pp.H;
  let b = idx / (pp.Tq * pp.H);
  let oBase = (b * pp.Tq + i) * pp.oStride + pp.oOff + h * pp.D;
  var s = 0.0;
  for (var d = 0u; d < pp.D; d++) { s += pdo[oBase + d] * po[oBase + d]; }
  pstats[2u * idx + 1u] = s;
}

// ---------------- backward, step 2: dQ (written in Q's layout)
@group(0) @binding(0) var<storage, read> qq: array<f32>;
@group(0) @binding(1) var<storage, read> qk: array<f32>;
@group(0) @binding(2) var<storage, read> qvv: array<f32>;
@group(0) @binding(3) var<storage, read> qdo: array<f32>;
@group(0) @binding(4) var<storage, read> qstats: array<f32>;
@group(0) @binding(5) var<storage, read> qmask: array<i32>;
@group(0) @binding(6) var<storage, read_write> qdq: array<f32>;
@group(0) @binding(7) var<uniform> qp: Params;

@compute @workgroup_size(64)
fn backward_dq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let idx = linear_id(wid, nwg, lid);
  if (idx >= qp.B * qp.H * qp.Tq) { return; }
  let i = idx % qp.Tq;
  let h = (idx / qp.Tq) % qp.H;
  let b = idx / (qp.Tq * qp.H);
  let g = h / (qp.H / qp.KVH);
  let D = qp.D;
  let qBase = (b * qp.Tq + i) * qp.qStride + qp.qOff + h * D;
  let oBase = (b * qp.Tq + i) * qp.oStride + qp.oOff + h * D;
  var qv: array<f32, MAXD>;
  var dov: array<f32, MAXD>;
  var dq: array<f32, MAXD>;
  for (var d = 0u; d < D; d++) { qv[d] = qq[qBase + d]; dov[d] = qdo[oBase + d]; dq[d] = 0.0; }
  let lse = qstats[2u * idx];
  let Di = qstats[2u * idx + 1u];
  let last = min(qp.Tk, qp.posOffset + i + 1u);
  for (var j = 0u; j < last; j++) {
    if (qp.hasMask != 0u && qmask[b * qp.Tk + j] == 0) { continue; }
    let kBase = (b * qp.Tk + j) * qp.kStride + qp.kOff + g * D;
    let vBase = (b * qp.Tk + j) * qp.vStride + qp.vOff + g * D;
    var s = 0.0;
    var dp = 0.0;
    for (var d = 0u; d < D; d++) { s += qv[d] * qk[kBase + d]; dp += dov[d] * qvv[vBase + d]; }
    let pr = exp(s * qp.scale - lse);
    let ds = pr * (dp - Di);
    for (var d = 0u; d < D; d++) { dq[d] += ds * qk[kBase + d]; }
  }
  for (var d = 0u; d < D; d++) { qdq[qBase + d] = dq[d] * qp.scale; }
}

// ---------------- backward, step 3: dK and dV, one invocation per (batch, K/V head, key),
// summing over the query heads that share the K/V head. Both go into one buffer (dk and dv
// layouts given by dkStride/dkOff and dvStride/dvOff), so fused QKV gradients need no copies.
@group(0) @binding(0) var<storage, read> kq: array<f32>;
@group(0) @binding(1) var<storage, read> kk: array<f32>;
@group(0) @binding(2) var<storage, read> kvv: array<f32>;
@group(0) @binding(3) var<storage, read> kdo: array<f32>;
@group(0) @binding(4) var<storage, read> kstats: array<f32>;
@group(0) @binding(5) var<storage, read> kmask: array<i32>;
@group(0) @binding(6) var<storage, read_write> kdkv: array<f32>;
@group(0) @binding(7) var<uniform> kp: Params;

@compute @workgroup_size(64)
fn backward_dkv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let idx = linear_id(wid, nwg, lid);
  if (idx >= kp.B * kp.KVH * kp.Tk) { return; }
  let j = idx % kp.Tk;
  let g = (idx / kp.Tk) % kp.KVH;
  let b = idx / (kp.Tk * kp.KVH);
  let D = kp.D;
  let row = b * kp.Tk + j;
  let kBase = row * kp.kStride + kp.kOff + g * D;
  let vBase = row * kp.vStride + kp.vOff + g * D;
  var kv: array<f32, MAXD>;
  var vv: array<f32, MAXD>;
  var dk: array<f32, MAXD>;
  var dv: array<f32, MAXD>;
  for (var d = 0u; d < D; d++) { kv[d] = kk[kBase + d]; vv[d] = kvv[vBase + d]; dk[d] = 0.0; dv[d] = 0.0; }
  let visible = kp.hasMask == 0u || kmask[row] != 0;
  let group = kp.H / kp.KVH;
  // Query i sees key j when j <= posOffset + i.
  let first = select(0u, j - kp.posOffset, j > kp.posOffset);
  if (visible) {
    for (var hh = 0u; hh < group; hh++) {
      let h = g * group + hh;
      for (var i = first; i < kp.Tq; i++) {
        let n = (b * kp.H + h) * kp.Tq + i;
        let qBase = (b * kp.Tq + i) * kp.qStride + kp.qOff + h * D;
        let oBase = (b * kp.Tq + i) * kp.oStride + kp.oOff + h * D;
        var s = 0.0;
        var dp = 0.0;
        for (var d = 0u; d < D; d++) { s += kq[qBase + d] * kv[d]; dp += kdo[oBase + d] * vv[d]; }
        let pr = exp(s * kp.scale - kstats[2u * n]);
        let ds = pr * (dp - kstats[2u * n + 1u]);
        for (var d = 0u; d < D; d++) {
          dv[d] += pr * kdo[oBase + d];
          dk[d] += ds * kq[qBase + d];
        }
      }
    }
  }
  let dkBase = row * kp.dkStride + kp.dkOff + g * D;
  let dvBase = row * kp.dvStride + kp.dvOff + g * D;
  for (var d = 0u; d < D; d++) {
    kdkv[dkBase + d] = dk[d] * kp.scale;
    kdkv[dvBase + d] = dv[d];
  }
}
