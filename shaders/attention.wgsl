// Causal scaled-dot-product attention with a key padding mask, multi-head / grouped / multi-query
// (query head h reads K/V head h / (H / KVH)), tiled like flash attention: no T x T score matrix
// exists; the backward pass recomputes probabilities from the saved log-sum-exp.
//
// Rows are tokens: query row b*Tq + i at absolute position posOffset + i; key row b*Tk + j at
// position j. Key j is visible to query i when j <= posOffset + i and mask[b*Tk + j] != 0.
// Heads live at `off + head * D` inside rows of `stride` floats, so fused QKV layouts work as they are.
// stats[2n] = log-sum-exp of row n = (b*H + h)*Tq + i; stats[2n + 1] = sum_d dO*O (backward).
//
// Work is split by K/V head: the query heads sharing K/V head g, times Tq, form g's "row space"
// (row hh*Tq + i is query i of head g*group + hh). A forward or dQ workgroup owns ROWS
// consecutive rows of one row space and stages TILE keys at a time in workgroup memory, read
// once for all its rows (and for all query heads of a group, which is what multi-query decoding
// needs). Each row is held by PARTS threads; thread `part` keeps head elements part, part +
// PARTS, ... in registers, so a thread holds HEAD_DIM / PARTS floats per vector, and dot products
// are summed across the PARTS threads in workgroup memory. dK/dV workgroups own ROWS keys and
// stage TILE query rows at a time the same way. forward_few serves blocks of a few rows
// (decoding) with a thread per key instead. For a long cache with few queries the forward
// also splits the keys into chunks (forward*_chunks, then forward_combine), and dK/dV of a K/V
// head shared by many query heads are summed per slice of heads (backward_dkv_reduce).
const NO_KEY: f32 = 3.0e38;
// HEAD_DIM / PARTS at most (128 / 4).
const MAX_DP: u32 = 32u;
// TILE at most.
const MAX_TILE: u32 = 16u;

// Set per pipeline by workers/kernels/attention.ts.
override HEAD_DIM: u32 = 64u;
override ROWS: u32 = 16u;
override PARTS: u32 = 4u;
override TILE: u32 = 16u;
override WG: u32 = ROWS * PARTS;
override DP: u32 = (HEAD_DIM + PARTS - 1u) / PARTS;
override TILE_LEN: u32 = TILE * HEAD_DIM;
override SUM_LEN: u32 = TILE * ROWS * PARTS;

struct Params {
  B: u32, Tq: u32, Tk: u32, H: u32,
  KVH: u32, D: u32, qStride: u32, qOff: u32,
  kStride: u32, kOff: u32, vStride: u32, vOff: u32,
  oStride: u32, oOff: u32, posOffset: u32, hasMask: u32,
  scale: f32, dkStride: u32, dkOff: u32, dvStride: u32,
  // Forward split over key chunks (chunks = 1: no split); dK/dV split over query-head slices.
  dvOff: u32, chunks: u32, chunkKeys: u32, sliceHeads: u32,
}

// Staged tiles (K and V, or Q and dO), per-part dot products (summed in place), the tile's
// visible keys, and the staged query rows' log-sum-exp and dO·O.
var<workgroup> tileA: array<f32, TILE_LEN>;
var<workgroup> tileB: array<f32, TILE_LEN>;
var<workgroup> sumA: array<f32, SUM_LEN>;
var<workgroup> sumB: array<f32, SUM_LEN>;
var<workgroup> tileOk: array<u32, MAX_TILE>;
var<workgroup> rowStat: array<f32, 32>;

fn linear_id(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
  return (wid.y * nwg.x + wid.x) * 64u + lid.x;
}

fn query_blocks_per_group(p: Params) -> u32 {
  return ((p.H / p.KVH) * p.Tq + ROWS - 1u) / ROWS;
}

struct QueryBlock {
  b: u32,
  g: u32,
  // First row of the block in the row space of K/V head g.
  first: u32,
  // One past the last key any row of the block sees.
  keyEnd: u32,
}

fn query_block(blk: u32, p: Params) -> QueryBlock {
  let groupRows = (p.H / p.KVH) * p.Tq;
  let perGroup = query_blocks_per_group(p);
  let bg = blk / perGroup;
  let first = (blk % perGroup) * ROWS;
  let last = min(first + ROWS, groupRows) - 1u;
  // A block spanning two query heads holds the last query of the first one.
  let iMax = select(last % p.Tq, p.Tq - 1u, first / p.Tq != last / p.Tq);
  return QueryBlock(bg / p.KVH, bg % p.KVH, first, min(p.Tk, p.posOffset + iMax + 1u));
}

struct QueryRow {
  valid: bool,
  h: u32,
  i: u32,
  // Row index n of stats.
  n: u32,
  // One past the last key this row sees (0 for a row past the end of the row space).
  keyEnd: u32,
}

fn query_row(qb: QueryBlock, r: u32, p: Params) -> QueryRow {
  let group = p.H / p.KVH;
  let rho = qb.first + r;
  let valid = rho < group * p.Tq;
  let i = rho % p.Tq;
  let h = qb.g * group + rho / p.Tq;
  return QueryRow(valid, h, i, (qb.b * p.H + h) * p.Tq + i, select(0u, min(p.Tk, p.posOffset + i + 1u), valid));
}

// Index of the (tile entry c, row r, part) dot-product slot; after the in-place sum, part 0
// holds the whole dot product.
fn sum_slot(c: u32, r: u32, part: u32) -> u32 {
  return (c * ROWS + r) * PARTS + part;
}

// Backward: the two dot products of every tile entry c with this thread's slice of the head
// dimension (a with tileA's row c, b with tileB's), into slot `part` of sumA and sumB.
fn partial_dots(a: ptr<function, array<f32, MAX_DP>>, b: ptr<function, array<f32, MAX_DP>>, r: u32, part: u32) {
  for (var c = 0u; c < TILE; c++) {
    var s = 0.0;
    var dp = 0.0;
    for (var k = 0u; k < DP; k++) {
      let d = part + k * PARTS;
      if (d < HEAD_DIM) {
        s += (*a)[k] * tileA[c * HEAD_DIM + d];
        dp += (*b)[k] * tileB[c * HEAD_DIM + d];
      }
    }
    sumA[sum_slot(c, r, part)] = s;
    sumB[sum_slot(c, r, part)] = dp;
  }
}

// After a barrier: row r's partial products of each tile entry summed into slot 0, the entries
// shared out among the row's PARTS threads.
fn sum_parts(r: u32, part: u32) {
  for (var c = part; c < TILE; c += PARTS) {
    var s = 0.0;
    var dp = 0.0;
    for (var x = 0u; x < PARTS; x++) {
      s += sumA[sum_slot(c, r, x)];
      dp += sumB[sum_slot(c, r, x)];
    }
    sumA[sum_slot(c, r, 0u)] = s;
    sumB[sum_slot(c, r, 0u)] = dp;
  }
}

// ---------------- forward
@group(0) @binding(0) var<storage, read> fq: array<f32>;
@group(0) @binding(1) var<storage, read> fk: array<f32>;
@group(0) @binding(2) var<storage, read> fv: array<f32>;
@group(0) @binding(3) var<storage, read> fmask: array<i32>;
@group(0) @binding(4) var<uniform> fp: Params;
@group(0) @binding(5) var<storage, read_write> fo: array<f32>;
@group(0) @binding(6) var<storage, read_write> fstats: array<f32>;
// forward_chunks: per (chunk, row n) the unnormalised output [chunks][N][D], then the running
// (max, sum) pairs [chunks][N][2]; forward_combine merges them.
@group(0) @binding(5) var<storage, read_write> fpart: array<f32>;

// One thread's share of a query row after the keys [chunk * chunkKeys, +chunkKeys): the
// unnormalised output elements part, part + PARTS, ..., the running max and sum.
struct Attended {
  acc: array<f32, MAX_DP>,
  m: f32,
  l: f32,
  row: QueryRow,
  b: u32,
}

fn attend(blk: u32, chunk: u32, t: u32) -> Attended {
  let qb = query_block(blk, fp);
  let r = t / PARTS;
  let part = t % PARTS;
  let row = query_row(qb, r, fp);
  let D = HEAD_DIM;
  let kStart = chunk * fp.chunkKeys;
  let kEnd = min(qb.keyEnd, kStart + fp.chunkKeys);
  let kvRow0 = qb.b * fp.Tk;
  let kBase = fp.kOff + qb.g * D;
  let vBase = fp.vOff + qb.g * D;

  var q: array<f32, MAX_DP>;
  var acc: array<f32, MAX_DP>;
  let qBase = (qb.b * fp.Tq + row.i) * fp.qStride + fp.qOff + row.h * D;
  for (var k = 0u; k < DP; k++) {
    let d = part + k * PARTS;
    q[k] = 0.0;
    if (row.valid && d < D) { q[k] = fq[qBase + d]; }
    acc[k] = 0.0;
  }
  var m = -NO_KEY;
  var l = 0.0;
  let nTiles = select(0u, (kEnd - kStart + TILE - 1u) / TILE, kEnd > kStart);
  for (var tile = 0u; tile < nTiles; tile++) {
    let j0 = kStart + tile * TILE;
    // Rows that see no key of this tile (or do not exist) only help stage it.
    let live = j0 < row.keyEnd;
    workgroupBarrier();
    for (var e = t; e < TILE * D; e += WG) {
      let j = j0 + e / D;
      var x = 0.0;
      if (j < kEnd) { x = fk[(kvRow0 + j) * fp.kStride + kBase + e % D]; }
      tileA[e] = x;
    }
    if (t < TILE) {
      let j = j0 + t;
      tileOk[t] = u32(j < kEnd && (fp.hasMask == 0u || fmask[kvRow0 + j] != 0));
    }
    workgroupBarrier();
    if (live) {
      for (var c = 0u; c < TILE; c++) {
        var s = 0.0;
        for (var k = 0u; k < DP; k++) {
          let d = part + k * PARTS;
          if (d < D) { s += q[k] * tileA[c * D + d]; }
        }
        sumA[sum_slot(c, r, part)] = s;
      }
    }
    workgroupBarrier();
    if (live) {
      for (var c = part; c < TILE; c += PARTS) {
        var s = 0.0;
        for (var x = 0u; x < PARTS; x++) { s += sumA[sum_slot(c, r, x)]; }
        sumA[sum_slot(c, r, 0u)] = s;
      }
    }
    // Every read of the keys happened before the last barrier: the values take their place.
    for (var e = t; e < TILE * D; e += WG) {
      let j = j0 + e / D;
      var x = 0.0;
      if (j < kEnd) { x = fv[(kvRow0 + j) * fp.vStride + vBase + e % D]; }
      tileA[e] = x;
    }
    workgroupBarrier();
    if (live) {
      var pr: array<f32, MAX_TILE>;
      var mNew = m;
      for (var c = 0u; c < TILE; c++) {
        pr[c] = sumA[sum_slot(c, r, 0u)] * fp.scale;
        if (tileOk[c] != 0u && j0 + c < row.keyEnd) { mNew = max(mNew, pr[c]); }
      }
      let corr = exp(m - mNew);
      var tileSum = 0.0;
      for (var c = 0u; c < TILE; c++) {
        pr[c] = select(0.0, exp(pr[c] - mNew), tileOk[c] != 0u && j0 + c < row.keyEnd);
        tileSum += pr[c];
      }
      l = l * corr + tileSum;
      for (var k = 0u; k < DP; k++) {
        let d = part + k * PARTS;
        var a = acc[k] * corr;
        if (d < D) {
          for (var c = 0u; c < TILE; c++) { a += pr[c] * tileA[c * D + d]; }
        }
        acc[k] = a;
      }
      m = mNew;
    }
  }
  return Attended(acc, m, l, row, qb.b);
}

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let blk = wid.y * nwg.x + wid.x;
  if (blk >= fp.B * fp.KVH * query_blocks_per_group(fp)) { return; }
  let a = attend(blk, 0u, t);
  if (!a.row.valid) { return; }
  let part = t % PARTS;
  let inv = select(0.0, 1.0 / a.l, a.l > 0.0);
  let oBase = (a.b * fp.Tq + a.row.i) * fp.oStride + fp.oOff + a.row.h * HEAD_DIM;
  for (var k = 0u; k < DP; k++) {
    let d = part + k * PARTS;
    if (d < HEAD_DIM) { fo[oBase + d] = a.acc[k] * inv; }
  }
  if (part == 0u) { fstats[2u * a.row.n] = select(NO_KEY, a.m + log(a.l), a.l > 0.0); }
}

@compute @workgroup_size(WG)
fn forward_chunks(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let w = wid.y * nwg.x + wid.x;
  let blk = w / fp.chunks;
  let chunk = w % fp.chunks;
  if (blk >= fp.B * fp.KVH * query_blocks_per_group(fp)) { return; }
  let a = attend(blk, chunk, t);
  if (!a.row.valid) { return; }
  let part = t % PARTS;
  let N = fp.B * fp.H * fp.Tq;
  let base = (chunk * N + a.row.n) * HEAD_DIM;
  for (var k = 0u; k < DP; k++) {
    let d = part + k * PARTS;
    if (d < HEAD_DIM) { fpart[base + d] = a.acc[k]; }
  }
  if (part == 0u) {
    let ml = fp.chunks * N * HEAD_DIM + 2u * (chunk * N + a.row.n);
    fpart[ml] = a.m;
    fpart[ml + 1u] = a.l;
  }
}

// ---------------- forward for a few query rows per K/V head (decoding): a thread per key.
// With one or a few rows per K/V head a staged K/V tile would serve only those rows, so here a
// workgroup of FEW_KEYS threads holds the block's ROWS (at most MAX_FEW_ROWS) query rows in
// workgroup memory and takes FEW_KEYS keys at a time, each thread scoring its own key against
// every row; the output elements (row, d) are spread over the threads for the P·V product.
// Same bindings, block and chunk layout, outputs and partials as forward / forward_chunks.
const FEW_KEYS: u32 = 64u;
const MAX_FEW_ROWS: u32 = 8u;
// MAX_FEW_ROWS * 128 / FEW_KEYS: output elements per thread at most.
const MAX_FEW_OUT: u32 = 16u;
override FEW_Q_LEN: u32 = ROWS * HEAD_DIM;
override FEW_P_LEN: u32 = ROWS * FEW_KEYS;
override FEW_OUT: u32 = (ROWS * HEAD_DIM + FEW_KEYS - 1u) / FEW_KEYS;

var<workgroup> fewQ: array<f32, FEW_Q_LEN>;
// Scores of the tile, then their probabilities: [row][key].
var<workgroup> fewP: array<f32, FEW_P_LEN>;
// Per row: the running max, the factor rescaling what came before, and (at the end) the sum.
var<workgroup> fewRow: array<f32, 24>;

struct FewAttended {
  // Unnormalised output elements t, t + FEW_KEYS, ... of the block's [ROWS][HEAD_DIM].
  acc: array<f32, MAX_FEW_OUT>,
  qb: QueryBlock,
}

fn attend_few(blk: u32, chunk: u32, t: u32) -> FewAttended {
  let qb = query_block(blk, fp);
  let D = HEAD_DIM;
  let kStart = chunk * fp.chunkKeys;
  let kEnd = min(qb.keyEnd, kStart + fp.chunkKeys);
  let kvRow0 = qb.b * fp.Tk;
  let kBase = fp.kOff + qb.g * D;
  let vBase = fp.vOff + qb.g * D;
  for (var e = t; e < ROWS * D; e += FEW_KEYS) {
    let row = query_row(qb, e / D, fp);
    var x = 0.0;
    if (row.valid) { x = fq[(qb.b * fp.Tq + row.i) * fp.qStride + fp.qOff + row.h * D + e % D]; }
    fewQ[e] = x;
  }
  var acc: array<f32, MAX_FEW_OUT>;
  for (var u = 0u; u < FEW_OUT; u++) { acc[u] = 0.0; }
  // Thread r < ROWS keeps row r's running max and sum.
  var m = -NO_KEY;
  var l = 0.0;
  let nTiles = select(0u, (kEnd - kStart + FEW_KEYS - 1u) / FEW_KEYS, kEnd > kStart);
  for (var tile = 0u; tile < nTiles; tile++) {
    let j0 = kStart + tile * FEW_KEYS;
    let j = j0 + t;
    workgroupBarrier();
    let keyOk = j < kEnd && (fp.hasMask == 0u || fmask[kvRow0 + j] != 0);
    var s: array<f32, MAX_FEW_ROWS>;
    for (var r = 0u; r < ROWS; r++) { s[r] = 0.0; }
    if (keyOk) {
      let kRow = (kvRow0 + j) * fp.kStride + kBase;
      for (var d = 0u; d < D; d++) {
        let kd = fk[kRow + d];
        for (var r = 0u; r < ROWS; r++) { s[r] += fewQ[r * D + d] * kd; }
      }
    }
    var visible = 0u;
    for (var r = 0u; r < ROWS; r++) {
      let vis = keyOk && j < query_row(qb, r, fp).keyEnd;
      visible |= u32(vis) << r;
      fewP[r * FEW_KEYS + t] = select(-NO_KEY, s[r] * fp.scale, vis);
    }
    workgroupBarrier();
    if (t < ROWS) {
      var mNew = m;
      for (var c = 0u; c < FEW_KEYS; c++) { mNew = max(mNew, fewP[t * FEW_KEYS + c]); }
      fewRow[t] = mNew;
      fewRow[MAX_FEW_ROWS + t] = exp(m - mNew);
      m = mNew;
    }
    workgroupBarrier();
    for (var r = 0u; r < ROWS; r++) {
      let slot = r * FEW_KEYS + t;
      fewP[slot] = select(0.0, exp(fewP[slot] - fewRow[r]), ((visible >> r) & 1u) != 0u);
    }
    workgroupBarrier();
    if (t < ROWS) {
      var tileSum = 0.0;
      for (var c = 0u; c < FEW_KEYS; c++) { tileSum += fewP[t * FEW_KEYS + c]; }
      l = l * fewRow[MAX_FEW_ROWS + t] + tileSum;
    }
    let keys = min(FEW_KEYS, kEnd - j0);
    for (var u = 0u; u < FEW_OUT; u++) {
      let e = t + u * FEW_KEYS;
      if (e < ROWS * D) {
        let r = e / D;
        var a = acc[u] * fewRow[MAX_FEW_ROWS + r];
        for (var c = 0u; c < keys; c++) { a += fewP[r * FEW_KEYS + c] * fv[(kvRow0 + j0 + c) * fp.vStride + vBase + e % D]; }
        acc[u] = a;
      }
    }
  }
  workgroupBarrier();
  if (t < ROWS) {
    fewRow[t] = m;
    fewRow[2u * MAX_FEW_ROWS + t] = l;
  }
  workgroupBarrier();
  return FewAttended(acc, qb);
}

@compute @workgroup_size(64)
fn forward_few(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let blk = wid.y * nwg.x + wid.x;
  if (blk >= fp.B * fp.KVH * query_blocks_per_group(fp)) { return; }
  let a = attend_few(blk, 0u, t);
  let D = HEAD_DIM;
  for (var u = 0u; u < FEW_OUT; u++) {
    let e = t + u * FEW_KEYS;
    let row = query_row(a.qb, e / D, fp);
    if (e < ROWS * D && row.valid) {
      let l = fewRow[2u * MAX_FEW_ROWS + e / D];
      fo[(a.qb.b * fp.Tq + row.i) * fp.oStride + fp.oOff + row.h * D + e % D] = select(0.0, a.acc[u] / l, l > 0.0);
    }
  }
  let row = query_row(a.qb, t, fp);
  if (t < ROWS && row.valid) {
    let l = fewRow[2u * MAX_FEW_ROWS + t];
    fstats[2u * row.n] = select(NO_KEY, fewRow[t] + log(l), l > 0.0);
  }
}

@compute @workgroup_size(64)
fn forward_few_chunks(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let w = wid.y * nwg.x + wid.x;
  let blk = w / fp.chunks;
  let chunk = w % fp.chunks;
  if (blk >= fp.B * fp.KVH * query_blocks_per_group(fp)) { return; }
  let a = attend_few(blk, chunk, t);
  let D = HEAD_DIM;
  let N = fp.B * fp.H * fp.Tq;
  for (var u = 0u; u < FEW_OUT; u++) {
    let e = t + u * FEW_KEYS;
    let row = query_row(a.qb, e / D, fp);
    if (e < ROWS * D && row.valid) { fpart[(chunk * N + row.n) * D + e % D] = a.acc[u]; }
  }
  let row = query_row(a.qb, t, fp);
  if (t < ROWS && row.valid) {
    let ml = fp.chunks * N * D + 2u * (chunk * N + row.n);
    fpart[ml] = fewRow[t];
    fpart[ml + 1u] = fewRow[2u * MAX_FEW_ROWS + t];
  }
}

// ---------------- forward over key chunks, second pass: one invocation per (row n, element d)
@group(0) @binding(0) var<storage, read> cpart: array<f32>;
@group(0) @binding(1) var<storage, read_write> co: array<f32>;
@group(0) @binding(2) var<storage, read_write> cstats: array<f32>;
@group(0) @binding(3) var<uniform> cp: Params;

@compute @workgroup_size(64)
fn forward_combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let idx = linear_id(wid, nwg, lid);
  let D = cp.D;
  let N = cp.B * cp.H * cp.Tq;
  if (idx >= N * D) { return; }
  let n = idx / D;
  let d = idx % D;
  let ml0 = cp.chunks * N * D;
  var mMax = -NO_KEY;
  for (var c = 0u; c < cp.chunks; c++) { mMax = max(mMax, cpart[ml0 + 2u * (c * N + n)]); }
  var l = 0.0;
  var o = 0.0;
  for (var c = 0u; c < cp.chunks; c++) {
    let ml = ml0 + 2u * (c * N + n);
    // A chunk with no visible key has sum 0 and output 0: its weight does not matter.
    let wgt = exp(cpart[ml] - mMax);
    l += wgt * cpart[ml + 1u];
    o += wgt * cpart[(c * N + n) * D + d];
  }
  let i = n % cp.Tq;
  let h = (n / cp.Tq) % cp.H;
  let b = n / (cp.Tq * cp.H);
  co[(b * cp.Tq + i) * cp.oStride + cp.oOff + h * D + d] = select(0.0, o / l, l > 0.0);
  if (d == 0u) { cstats[2u * n] = select(NO_KEY, mMax + log(l), l > 0.0); }
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

// ---------------- backward, step 2: dQ (written in Q's layout), query blocks as in the forward
@group(0) @binding(0) var<storage, read> qq: array<f32>;
@group(0) @binding(1) var<storage, read> qk: array<f32>;
@group(0) @binding(2) var<storage, read> qvv: array<f32>;
@group(0) @binding(3) var<storage, read> qdo: array<f32>;
@group(0) @binding(4) var<storage, read> qstats: array<f32>;
@group(0) @binding(5) var<storage, read> qmask: array<i32>;
@group(0) @binding(6) var<storage, read_write> qdq: array<f32>;
@group(0) @binding(7) var<uniform> qp: Params;

@compute @workgroup_size(WG)
fn backward_dq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let blk = wid.y * nwg.x + wid.x;
  if (blk >= qp.B * qp.KVH * query_blocks_per_group(qp)) { return; }
  let qb = query_block(blk, qp);
  let r = t / PARTS;
  let part = t % PARTS;
  let row = query_row(qb, r, qp);
  let D = HEAD_DIM;
  let kvRow0 = qb.b * qp.Tk;
  let kBase = qp.kOff + qb.g * D;
  let vBase = qp.vOff + qb.g * D;

  var q: array<f32, MAX_DP>;
  var dov: array<f32, MAX_DP>;
  var dq: array<f32, MAX_DP>;
  let qBase = (qb.b * qp.Tq + row.i) * qp.qStride + qp.qOff + row.h * D;
  let oBase = (qb.b * qp.Tq + row.i) * qp.oStride + qp.oOff + row.h * D;
  for (var k = 0u; k < DP; k++) {
    let d = part + k * PARTS;
    q[k] = 0.0;
    dov[k] = 0.0;
    if (row.valid && d < D) {
      q[k] = qq[qBase + d];
      dov[k] = qdo[oBase + d];
    }
    dq[k] = 0.0;
  }
  var lse = NO_KEY;
  var di = 0.0;
  if (row.valid) {
    lse = qstats[2u * row.n];
    di = qstats[2u * row.n + 1u];
  }
  let nTiles = (qb.keyEnd + TILE - 1u) / TILE;
  for (var tile = 0u; tile < nTiles; tile++) {
    let j0 = tile * TILE;
    let live = j0 < row.keyEnd;
    workgroupBarrier();
    for (var e = t; e < TILE * D; e += WG) {
      let j = j0 + e / D;
      var x = 0.0;
      var y = 0.0;
      if (j < qb.keyEnd) {
        x = qk[(kvRow0 + j) * qp.kStride + kBase + e % D];
        y = qvv[(kvRow0 + j) * qp.vStride + vBase + e % D];
      }
      tileA[e] = x;
      tileB[e] = y;
    }
    if (t < TILE) {
      let j = j0 + t;
      tileOk[t] = u32(j < qb.keyEnd && (qp.hasMask == 0u || qmask[kvRow0 + j] != 0));
    }
    workgroupBarrier();
    if (live) { partial_dots(&q, &dov, r, part); }
    workgroupBarrier();
    if (live) { sum_parts(r, part); }
    workgroupBarrier();
    if (live) {
      var ds: array<f32, MAX_TILE>;
      for (var c = 0u; c < TILE; c++) {
        let slot = sum_slot(c, r, 0u);
        let pr = select(0.0, exp(sumA[slot] * qp.scale - lse), tileOk[c] != 0u && j0 + c < row.keyEnd);
        ds[c] = pr * (sumB[slot] - di);
      }
      for (var k = 0u; k < DP; k++) {
        let d = part + k * PARTS;
        if (d < D) {
          var a = dq[k];
          for (var c = 0u; c < TILE; c++) { a += ds[c] * tileA[c * D + d]; }
          dq[k] = a;
        }
      }
    }
  }
  if (!row.valid) { return; }
  for (var k = 0u; k < DP; k++) {
    let d = part + k * PARTS;
    if (d < D) { qdq[qBase + d] = dq[k] * qp.scale; }
  }
}

// ---------------- backward, step 3: dK and dV. A workgroup owns ROWS keys of one (batch, K/V
// head) and sums over the query heads sharing it, so no two workgroups add into one element.
// When a K/V head has many query heads (multi-query), the heads are cut into slices of
// sliceHeads, one workgroup per slice, each writing its partial sums [slices][B*Tk][KVH][D]
// (dK, then dV) for backward_dkv_reduce. Both gradients go into one buffer (layouts
// dkStride/dkOff and dvStride/dvOff), so fused QKV gradients need no copies.
@group(0) @binding(0) var<storage, read> kq: array<f32>;
@group(0) @binding(1) var<storage, read> kk: array<f32>;
@group(0) @binding(2) var<storage, read> kvv: array<f32>;
@group(0) @binding(3) var<storage, read> kdo: array<f32>;
@group(0) @binding(4) var<storage, read> kstats: array<f32>;
@group(0) @binding(5) var<storage, read> kmask: array<i32>;
@group(0) @binding(6) var<storage, read_write> kdkv: array<f32>;
@group(0) @binding(7) var<uniform> kp: Params;

@compute @workgroup_size(WG)
fn backward_dkv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let group = kp.H / kp.KVH;
  let slices = (group + kp.sliceHeads - 1u) / kp.sliceHeads;
  let keyBlocks = (kp.Tk + ROWS - 1u) / ROWS;
  let w = wid.y * nwg.x + wid.x;
  if (w >= kp.B * kp.KVH * keyBlocks * slices) { return; }
  let slice = w % slices;
  let kb = (w / slices) % keyBlocks;
  let bg = w / (slices * keyBlocks);
  let g = bg % kp.KVH;
  let b = bg / kp.KVH;
  let r = t / PARTS;
  let part = t % PARTS;
  let D = HEAD_DIM;
  let j0 = kb * ROWS;
  let j = j0 + r;
  let row = b * kp.Tk + j;
  let keyOk = j < kp.Tk && (kp.hasMask == 0u || kmask[row] != 0);

  var kr: array<f32, MAX_DP>;
  var vr: array<f32, MAX_DP>;
  var dk: array<f32, MAX_DP>;
  var dv: array<f32, MAX_DP>;
  for (var k = 0u; k < DP; k++) {
    let d = part + k * PARTS;
    kr[k] = 0.0;
    vr[k] = 0.0;
    if (keyOk && d < D) {
      kr[k] = kk[row * kp.kStride + kp.kOff + g * D + d];
      vr[k] = kvv[row * kp.vStride + kp.vOff + g * D + d];
    }
    dk[k] = 0.0;
    dv[k] = 0.0;
  }
  // Query i sees key j0 (the block's first) when j0 <= posOffset + i.
  let iStart = select(0u, j0 - kp.posOffset, j0 > kp.posOffset);
  let hEnd = min(group, (slice + 1u) * kp.sliceHeads);
  for (var hh = slice * kp.sliceHeads; hh < hEnd; hh++) {
    let h = g * group + hh;
    for (var i0 = iStart; i0 < kp.Tq; i0 += TILE) {
      // A key no query of this tile sees (or padding) only helps stage it.
      let live = keyOk && j <= kp.posOffset + min(i0 + TILE, kp.Tq) - 1u;
      workgroupBarrier();
      for (var e = t; e < TILE * D; e += WG) {
        let i = i0 + e / D;
        var x = 0.0;
        var y = 0.0;
        if (i < kp.Tq) {
          x = kq[(b * kp.Tq + i) * kp.qStride + kp.qOff + h * D + e % D];
          y = kdo[(b * kp.Tq + i) * kp.oStride + kp.oOff + h * D + e % D];
        }
        tileA[e] = x;
        tileB[e] = y;
      }
      if (t < TILE) {
        let i = i0 + t;
        let n = (b * kp.H + h) * kp.Tq + i;
        var lse = NO_KEY;
        var di = 0.0;
        if (i < kp.Tq) {
          lse = kstats[2u * n];
          di = kstats[2u * n + 1u];
        }
        rowStat[t] = lse;
        rowStat[MAX_TILE + t] = di;
      }
      workgroupBarrier();
      if (live) { partial_dots(&kr, &vr, r, part); }
      workgroupBarrier();
      if (live) { sum_parts(r, part); }
      workgroupBarrier();
      if (live) {
        var pr: array<f32, MAX_TILE>;
        var ds: array<f32, MAX_TILE>;
        for (var c = 0u; c < TILE; c++) {
          let slot = sum_slot(c, r, 0u);
          let i = i0 + c;
          let p = select(0.0, exp(sumA[slot] * kp.scale - rowStat[c]), keyOk && i < kp.Tq && j <= kp.posOffset + i);
          pr[c] = p;
          ds[c] = p * (sumB[slot] - rowStat[MAX_TILE + c]);
        }
        for (var k = 0u; k < DP; k++) {
          let d = part + k * PARTS;
          if (d < D) {
            var a = dv[k];
            var bsum = dk[k];
            for (var c = 0u; c < TILE; c++) {
              a += pr[c] * tileB[c * D + d];
              bsum += ds[c] * tileA[c * D + d];
            }
            dv[k] = a;
            dk[k] = bsum;
          }
        }
      }
    }
  }
  if (j >= kp.Tk) { return; }
  if (slices == 1u) {
    for (var k = 0u; k < DP; k++) {
      let d = part + k * PARTS;
      if (d < D) {
        kdkv[row * kp.dkStride + kp.dkOff + g * D + d] = dk[k] * kp.scale;
        kdkv[row * kp.dvStride + kp.dvOff + g * D + d] = dv[k];
      }
    }
  } else {
    let E = kp.B * kp.Tk * kp.KVH * D;
    let base = slice * E + (row * kp.KVH + g) * D;
    for (var k = 0u; k < DP; k++) {
      let d = part + k * PARTS;
      if (d < D) {
        kdkv[base + d] = dk[k];
        kdkv[slices * E + base + d] = dv[k];
      }
    }
  }
}

// ---------------- backward, step 3b (sliced heads only): sum the slices in a fixed order
@group(0) @binding(0) var<storage, read> rpart: array<f32>;
@group(0) @binding(1) var<storage, read_write> rdkv: array<f32>;
@group(0) @binding(2) var<uniform> rp: Params;

@compute @workgroup_size(64)
fn backward_dkv_reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let idx = linear_id(wid, nwg, lid);
  let D = rp.D;
  let E = rp.B * rp.Tk * rp.KVH * D;
  if (idx >= E) { return; }
  let slices = (rp.H / rp.KVH + rp.sliceHeads - 1u) / rp.sliceHeads;
  var dk = 0.0;
  var dv = 0.0;
  for (var s = 0u; s < slices; s++) {
    dk += rpart[s * E + idx];
    dv += rpart[(slices + s) * E + idx];
  }
  let d = idx % D;
  let g = (idx / D) % rp.KVH;
  let row = idx / (D * rp.KVH);
  rdkv[row * rp.dkStride + rp.dkOff + g * D + d] = dk * rp.scale;
  rdkv[row * rp.dvStride + rp.dvOff + g * D + d] = dv;
}
