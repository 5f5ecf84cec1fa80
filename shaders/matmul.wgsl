// C = alpha * op(A) · op(B) (+ bias) + beta * C, f32, tiled in workgroup memory (main, main64)
// or one output per invocation straight from storage (direct).
// op(A) is M×K: A stored [M,K] row-major, or [K,M] when TRANS_A.
// op(B) is K×N: B stored [K,N] row-major, or [N,K] when TRANS_B (a Linear weight [out,in]).
// Batched over workgroup z with element strides; offsets let callers address slices.
// B is read as raw 32-bit words: f32 (B_FORMAT 0), or 16-bit values packed two per u32 with
// element 2k in the low half (1 = f16, 2 = bf16), so a frozen 16-bit lm_head is never widened.
override TRANS_A: bool = false;
override TRANS_B: bool = false;
override HAS_BIAS: bool = false;
override B_FORMAT: u32 = 0u;
const TILE: u32 = 16u;

struct Params {
  M: u32, N: u32, K: u32, offA: u32,
  offB: u32, offC: u32, strideA: u32, strideB: u32,
  strideC: u32, alpha: f32, beta: f32, _pad: u32,
}

@group(0) @binding(0) var<storage, read> A: array<f32>;
@group(0) @binding(1) var<storage, read> B: array<u32>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

var<workgroup> tileA: array<array<f32, 16>, 16>;
var<workgroup> tileB: array<array<f32, 16>, 16>;
// main64: 64×64 outputs per workgroup, 4×4 per thread (rows ty + 16i, columns tx + 16j, so
// stores and tile reads stay contiguous across a row of threads).
// Rows padded to 65 floats so stores that walk k do not pile into two banks.
var<workgroup> bigA: array<array<f32, 65>, 16>;
var<workgroup> bigB: array<array<f32, 65>, 16>;

fn loadA(base: u32, row: u32, k: u32) -> f32 {
  if (row >= p.M || k >= p.K) { return 0.0; }
  if (TRANS_A) { return A[base + k * p.M + row]; }
  return A[base + row * p.K + k];
}

fn readB(e: u32) -> f32 {
  if (B_FORMAT == 0u) { return bitcast<f32>(B[e]); }
  let word = B[e >> 1u];
  let half = select(word & 0xffffu, word >> 16u, (e & 1u) == 1u);
  if (B_FORMAT == 1u) { return unpack2x16float(half).x; }
  return bitcast<f32>(half << 16u);
}

fn loadB(base: u32, k: u32, col: u32) -> f32 {
  if (k >= p.K || col >= p.N) { return 0.0; }
  if (TRANS_B) { return readB(base + col * p.K + k); }
  return readB(base + k * p.N + col);
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let row = wid.y * TILE + lid.y;
  let col = wid.x * TILE + lid.x;
  let baseA = p.offA + wid.z * p.strideA;
  let baseB = p.offB + wid.z * p.strideB;
  let baseC = p.offC + wid.z * p.strideC;
  var acc = 0.0;
  let tiles = (p.K + TILE - 1u) / TILE;
  for (var t = 0u; t < tiles; t++) {
    let k0 = t * TILE;
    tileA[lid.y][lid.x] = loadA(baseA, wid.y * TILE + lid.y, k0 + lid.x);
    tileB[lid.y][lid.x] = loadB(baseB, k0 + lid.y, wid.x * TILE + lid.x);
    workgroupBarrier();
    for (var k = 0u; k < TILE; k++) {
      acc += tileA[lid.y][k] * tileB[k][lid.x];
    }
    workgroupBarrier();
  }
  if (row < p.M && col < p.N) {
    var v = p.alpha * acc;
    if (HAS_BIAS) { v += bias[col]; }
    let idx = baseC + row * p.N + col;
    if (p.beta != 0.0) { v += p.beta * C[idx]; }
    C[idx] = v;
  }
}

@compute @workgroup_size(16, 16)
fn main64(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let t = lid.y * 16u + lid.x;
  let m0 = wid.y * 64u;
  let n0 = wid.x * 64u;
  let baseA = p.offA + wid.z * p.strideA;
  let baseB = p.offB + wid.z * p.strideB;
  let baseC = p.offC + wid.z * p.strideC;
  var acc: array<array<f32, 4>, 4>;
  for (var k0 = 0u; k0 < p.K; k0 += TILE) {
    for (var l = 0u; l < 4u; l++) {
      let idx = t + 256u * l;
      // Walk each operand along its contiguous dimension.
      var r = idx / 16u;
      var kk = idx % 16u;
      if (TRANS_A) { r = idx % 64u; kk = idx / 64u; }
      bigA[kk][r] = loadA(baseA, m0 + r, k0 + kk);
      var c = idx % 64u;
      var kb = idx / 64u;
      if (TRANS_B) { c = idx / 16u; kb = idx % 16u; }
      bigB[kb][c] = loadB(baseB, k0 + kb, n0 + c);
    }
    workgroupBarrier();
    for (var k = 0u; k < TILE; k++) {
      var a: array<f32, 4>;
      var b: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) { a[i] = bigA[k][lid.y + 16u * i]; }
      for (var j = 0u; j < 4u; j++) { b[j] = bigB[k][lid.x + 16u * j]; }
      for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) { acc[i][j] += a[i] * b[j]; }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let row = m0 + lid.y + 16u * i;
    for (var j = 0u; j < 4u; j++) {
      let col = n0 + lid.x + 16u * j;
      if (row < p.M && col < p.N) {
        var v = p.alpha * acc[i][j];
        if (HAS_BIAS) { v += bias[col]; }
        let idx = baseC + row * p.N + col;
        if (p.beta != 0.0) { v += p.beta * C[idx]; }
        C[idx] = v;
      }
    }
  }
}

// direct: one output per invocation, no workgroup memory and no barriers; workgroup x covers 64
// columns, y is the row, z the batch. CPU emulation of a GPU (SwiftShader) pays for every barrier
// and idle invocation, and runs skinny products (LoRA's rank-16 sides, one decoded row) faster so.
@compute @workgroup_size(64)
fn direct(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let row = wid.y;
  let col = wid.x * 64u + lid.x;
  if (row >= p.M || col >= p.N) { return; }
  let baseA = p.offA + wid.z * p.strideA;
  let baseB = p.offB + wid.z * p.strideB;
  let baseC = p.offC + wid.z * p.strideC;
  var acc = 0.0;
  for (var k = 0u; k < p.K; k++) { acc += loadA(baseA, row, k) * loadB(baseB, k, col); }
  var v = p.alpha * acc;
  if (HAS_BIAS) { v += bias[col]; }
  let idx = baseC + row * p.N + col;
  if (p.beta != 0.0) { v += p.beta * C[idx]; }
  C[idx] = v;
}
