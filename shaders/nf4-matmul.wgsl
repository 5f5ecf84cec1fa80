// Fused NF4 dequantise + matrix product, f32 accumulation. W is [N, K] (a Linear weight
// [out, in]) in NF4: packed codes (u32 words, element 2k = high nibble of byte k) over the
// flattened tensor in blocks of 64, absmax as 8-bit codes + per-256 nested absmax + offset
// (double quant) or plain f32. A weight may be split by rows into parts (one dispatch per
// part); `elemBase` is the flat index of the first element the bound part holds.
//
// forward:  Y[M, N] = beta·Y + X[M, K] · Wᵀ (+ bias), columns rowStart..rowEnd of Y (this part's rows).
// backward: dX[M, K] = beta·dX + dY[M, N] · W, summing over this part's rows only.
// Tiled kernels: 16·TM_ROWS × 64 outputs per workgroup, TM_ROWS × 4 per thread at rows ty + 16i
// and columns tx + 16j, so workgroup-memory reads and global stores are contiguous across threads.
// gemv:     forward for small M (decoding), several output columns per workgroup.
override DOUBLE_QUANT: bool = true;
override HAS_BIAS: bool = false;
override GEMV_M: u32 = 1u;   // rows of X the gemv entry point handles (1..4)
// Rows of outputs per thread in the tiled kernels (1, 2, 4 or 8): a workgroup covers 16·TM_ROWS
// rows of X, so small M (prompts, short sequences) does not compute 64-row tiles of padding,
// and large M (training) decodes each W tile once for 128 rows, with 32 products per 12 loads.
override TM_ROWS: u32 = 4u;

const TM: u32 = 8u;   // most outputs per thread along M (the first TM_ROWS are used)
const TN: u32 = 4u;   // outputs per thread along the other dimension
const BN: u32 = 64u;
const BK: u32 = 32u;

struct Params {
  M: u32, N: u32, K: u32, rowStart: u32,
  rowEnd: u32, elemBase: u32, offset: f32, beta: f32,
}

@group(0) @binding(0) var<storage, read> A: array<f32>;          // X (forward) or dY (backward)
@group(0) @binding(1) var<storage, read> packed: array<u32>;
@group(0) @binding(2) var<storage, read> absmax: array<u32>;
@group(0) @binding(3) var<storage, read> nested: array<f32>;
@group(0) @binding(4) var<storage, read> tables: array<f32>;     // 16 NF4 values, then 256 nested-map values
@group(0) @binding(5) var<storage, read_write> C: array<f32>;    // Y or dX
@group(0) @binding(6) var<uniform> p: Params;
@group(0) @binding(7) var<storage, read> bias: array<f32>;
// The gemv entry point reads X as vec4s (binding 0 again; no entry point uses both views).
@group(0) @binding(0) var<storage, read> X4: array<vec4<f32>>;

// One float of padding per row: tile stores walk the k index, and an unpadded 64-float row
// would put all of a warp's stores into the same two banks. The X / dY tile holds 16·TM_ROWS
// rows, k-major with row stride A_STRIDE (sized by the override, so small tiles stay small).
override A_STRIDE: u32 = 16u * TM_ROWS + 1u;
var<workgroup> As: array<f32, BK * A_STRIDE>;
var<workgroup> Ws: array<array<f32, 65>, BK>;
var<workgroup> lut: array<f32, 16>;   // the NF4 table, copied from `tables` by each workgroup

fn blockAbsmax(b: u32) -> f32 {
  if (DOUBLE_QUANT) {
    let q = (absmax[b >> 2u] >> (8u * (b & 3u))) & 255u;
    let scaled = tables[16u + q] * nested[b >> 8u];
    return scaled + p.offset;
  }
  return bitcast<f32>(absmax[b]);
}

// W[row, col] (row < N, col < K), dequantised.
fn weight(row: u32, col: u32) -> f32 {
  let e = row * p.K + col;
  let local = e - p.elemBase;
  let shift = 8u * ((local >> 1u) & 3u) + select(4u, 0u, (local & 1u) == 1u);
  let code = (packed[local >> 3u] >> shift) & 15u;
  return lut[code] * blockAbsmax(e >> 6u);
}

fn dot4x4(k: u32, ty: u32, tx: u32, acc: ptr<function, array<array<f32, TN>, TM>>) {
  var a: array<f32, TM>;
  var b: array<f32, TN>;
  for (var i = 0u; i < TM_ROWS; i++) { a[i] = As[k * A_STRIDE + ty + 16u * i]; }
  for (var j = 0u; j < TN; j++) { b[j] = Ws[k][tx + 16u * j]; }
  for (var i = 0u; i < TM_ROWS; i++) {
    for (var j = 0u; j < TN; j++) { (*acc)[i][j] += a[i] * b[j]; }
  }
}

// Dequantises the 8 codes of the u32 word holding W[row, col .. col+7] into Ws[k + i][c]
// (forward: Ws is k-major) or Ws[k][c + i] (backward); row·K + col must be a multiple of 8,
// so the 8 codes share one word and one 64-block (one absmax' per word).
fn word8(row: u32, col: u32) -> array<f32, 8> {
  let e = row * p.K + col;
  let word = packed[(e - p.elemBase) >> 3u];
  let a = blockAbsmax(e >> 6u);
  var out: array<f32, 8>;
  for (var i = 0u; i < 8u; i++) {
    out[i] = lut[(word >> (8u * (i >> 1u) + select(4u, 0u, (i & 1u) == 1u))) & 15u] * a;
  }
  return out;
}

// The X (forward) or dY (backward) tile: rows m0 .. m0 + 16·TM_ROWS of A (rows of `rowLength`),
// its BK reduction indices j0 .. j0 + BK below jEnd, coalesced along them, k-major into As
// (2·TM_ROWS loads per thread).
fn loadRows(t: u32, m0: u32, j0: u32, jEnd: u32, rowLength: u32) {
  for (var l = 0u; l < 2u * TM_ROWS; l++) {
    let idx = t + 256u * l;
    let r = idx / BK;
    let jj = idx % BK;
    var v = 0.0;
    if (m0 + r < p.M && j0 + jj < jEnd) { v = A[(m0 + r) * rowLength + j0 + jj]; }
    As[jj * A_STRIDE + r] = v;
  }
}

@compute @workgroup_size(16, 16)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let t = lid.y * 16u + lid.x;
  let m0 = wid.y * 16u * TM_ROWS;
  let n0 = p.rowStart + wid.x * BN;
  // K % 8 == 0: every row starts on a word, so a thread can decode whole words.
  let aligned = p.K % 8u == 0u;
  if (t < 16u) { lut[t] = tables[t]; }
  workgroupBarrier();
  var acc: array<array<f32, TN>, TM>;
  for (var k0 = 0u; k0 < p.K; k0 += BK) {
    loadRows(t, m0, k0, p.K, p.K);
    if (!aligned) {
      // W tile: 64 rows × BK, element by element.
      for (var l = 0u; l < 8u; l++) {
        let idx = t + 256u * l;
        let r = idx / BK;
        let kk = idx % BK;
        var wv = 0.0;
        if (n0 + r < p.rowEnd && k0 + kk < p.K) { wv = weight(n0 + r, k0 + kk); }
        Ws[kk][r] = wv;
      }
    } else {
      // 64 rows × 4 words: one word per thread.
      let r = t / 4u;
      let kq = (t % 4u) * 8u;
      var w: array<f32, 8>;
      if (n0 + r < p.rowEnd && k0 + kq < p.K) { w = word8(n0 + r, k0 + kq); }
      for (var i = 0u; i < 8u; i++) { Ws[kq + i][r] = w[i]; }
    }
    workgroupBarrier();
    for (var k = 0u; k < BK; k++) { dot4x4(k, lid.y, lid.x, &acc); }
    workgroupBarrier();
  }
  for (var i = 0u; i < TM_ROWS; i++) {
    let m = m0 + lid.y + 16u * i;
    for (var j = 0u; j < TN; j++) {
      let n = n0 + lid.x + 16u * j;
      if (m < p.M && n < p.rowEnd) {
        var v = acc[i][j];
        if (HAS_BIAS) { v += bias[n]; }
        if (p.beta != 0.0) { v += p.beta * C[m * p.N + n]; }
        C[m * p.N + n] = v;
      }
    }
  }
}

@compute @workgroup_size(16, 16)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let t = lid.y * 16u + lid.x;
  let m0 = wid.y * 16u * TM_ROWS;
  let c0 = wid.x * BN;   // output columns of dX = columns of W
  let aligned = p.K % 8u == 0u;
  if (t < 16u) { lut[t] = tables[t]; }
  workgroupBarrier();
  var acc: array<array<f32, TN>, TM>;
  for (var n0 = p.rowStart; n0 < p.rowEnd; n0 += BK) {
    loadRows(t, m0, n0, p.rowEnd, p.N);
    if (!aligned) {
      // W tile: BK rows × BN columns, coalesced along the columns.
      for (var l = 0u; l < 8u; l++) {
        let idx = t + 256u * l;
        let wr = idx / BN;
        let wc = idx % BN;
        var wv = 0.0;
        if (n0 + wr < p.rowEnd && c0 + wc < p.K) { wv = weight(n0 + wr, c0 + wc); }
        Ws[wr][wc] = wv;
      }
    } else {
      // 32 rows × 8 words: one word per thread.
      let wr = t / 8u;
      let wc = (t % 8u) * 8u;
      var w: array<f32, 8>;
      if (n0 + wr < p.rowEnd && c0 + wc < p.K) { w = word8(n0 + wr, c0 + wc); }
      for (var i = 0u; i < 8u; i++) { Ws[wr][wc + i] = w[i]; }
    }
    workgroupBarrier();
    for (var k = 0u; k < BK; k++) { dot4x4(k, lid.y, lid.x, &acc); }
    workgroupBarrier();
  }
  for (var i = 0u; i < TM_ROWS; i++) {
    let m = m0 + lid.y + 16u * i;
    for (var j = 0u; j < TN; j++) {
      let c = c0 + lid.x + 16u * j;
      if (m < p.M && c < p.K) {
        let idx = m * p.K + c;
        var v = acc[i][j];
        if (p.beta != 0.0) { v += p.beta * C[idx]; }
        C[idx] = v;
      }
    }
  }
}

// gemv: GEMV_ROWS output columns per workgroup of 256, 256 / GEMV_ROWS (4 to 32) threads per column.
// With K % 32 == 0 every thread takes whole 16-byte groups of 32 codes (half a 64-block, so one
// absmax each), coalesced along the row, and decodes them two codes per lookup through a
// 256-entry byte table; the row's partial sums meet in workgroup memory.
override GEMV_ROWS: u32 = 8u;
// The gemv entry point reads the codes as vec4s (binding 1 again; it never uses `packed`).
@group(0) @binding(1) var<storage, read> packed4: array<vec4<u32>>;
var<workgroup> lut2: array<vec2<f32>, 256>;   // byte -> (value of its high nibble, of its low nibble)
var<workgroup> partial: array<array<f32, 256>, 4>;

// The four values of byte k of `word` and the next byte, in element order (high nibble first).
fn bytes4(word: u32, k: u32) -> vec4<f32> {
  return vec4<f32>(lut2[(word >> (8u * k)) & 255u], lut2[(word >> (8u * k + 8u)) & 255u]);
}

@compute @workgroup_size(256)
fn gemv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let perRow = 256u / GEMV_ROWS;
  let r = lid / perRow;
  let lane = lid % perRow;
  let n = p.rowStart + (wid.y * nwg.x + wid.x) * GEMV_ROWS + r;
  let live = n < p.rowEnd;
  lut2[lid] = vec2<f32>(tables[lid >> 4u], tables[lid & 15u]);
  workgroupBarrier();
  var acc: array<f32, 4>;
  if (live && p.K % 32u == 0u) {
    let rowGroup = (n * p.K - p.elemBase) >> 5u;
    let groups = p.K >> 5u;
    for (var g = lane; g < groups; g += perRow) {
      let w = packed4[rowGroup + g];
      let a = blockAbsmax((n * p.K + 32u * g) >> 6u);
      let v0 = bytes4(w.x, 0u);
      let v1 = bytes4(w.x, 2u);
      let v2 = bytes4(w.y, 0u);
      let v3 = bytes4(w.y, 2u);
      let v4 = bytes4(w.z, 0u);
      let v5 = bytes4(w.z, 2u);
      let v6 = bytes4(w.w, 0u);
      let v7 = bytes4(w.w, 2u);
      for (var m = 0u; m < GEMV_M; m++) {
        let x = ((m * p.K) >> 2u) + 8u * g;
        let s = dot(X4[x], v0) + dot(X4[x + 1u], v1) + dot(X4[x + 2u], v2) + dot(X4[x + 3u], v3)
              + dot(X4[x + 4u], v4) + dot(X4[x + 5u], v5) + dot(X4[x + 6u], v6) + dot(X4[x + 7u], v7);
        acc[m] += s * a;
      }
    }
  } else if (live) {
    for (var k = lane; k < p.K; k += perRow) {
      let e = n * p.K + k;
      let local = e - p.elemBase;
      let shift = 8u * ((local >> 1u) & 3u) + select(4u, 0u, (local & 1u) == 1u);
      let word = packed4[local >> 5u][(local >> 3u) & 3u];
      let w = lut2[(word >> shift) & 15u].y * blockAbsmax(e >> 6u);
      for (var m = 0u; m < GEMV_M; m++) {
        let i = m * p.K + k;
        acc[m] += X4[i >> 2u][i & 3u] * w;
      }
    }
  }
  for (var m = 0u; m < GEMV_M; m++) { partial[m][lid] = acc[m]; }
  workgroupBarrier();
  // The first GEMV_M lanes of a row each add up one row of X's partial sums (perRow ≥ 4).
  if (live && lane < GEMV_M) {
    let m = lane;
    var v = 0.0;
    for (var i = 0u; i < perRow; i++) { v += partial[m][r * perRow + i]; }
    if (HAS_BIAS) { v += bias[n]; }
    if (p.beta != 0.0) { v += p.beta * C[m * p.N + n]; }
    C[m * p.N + n] = v;
  }
}
