// NF4 (blocksize 64) quantisation and dequantisation, following bitsandbytes (see
// tests/fixtures/bnb-nf4/README.md). Packed codes are bytes in u32 words: flat element 2k is
// the high nibble of byte k. Blocks run over the flattened tensor, ignoring rows.
//
// quantize: one chunk of whole blocks per dispatch (64 threads per block, 4 blocks per
//   workgroup). Input is f32 or 16-bit floats packed two per u32. Writes the chunk's packed
//   words and its plain absmax (as f32 bits, so bitsandbytes' subnormal 1e-38 clamp survives
//   a GPU that flushes subnormals). Double quantisation of absmax happens on the CPU.
// dequantize: one thread per element of a range, absmax restored in the kernel when
//   double-quantised: absmax' = map[q] · nested[b / 256] + offset.
override INPUT_KIND: u32 = 0u;   // quantize: 0 f32, 1 f16, 2 bf16
override DOUBLE_QUANT: bool = true;  // dequantize
override WG: u32 = 256u;

// bitsandbytes' NF4 midpoints f32((code[i] + code[i+1]) / 2); a value on a midpoint takes the lower code.
const NF4_MID = array<f32, 15>(
  -0.8480963706970215, -0.6106328964233398, -0.4599952697753906, -0.33967941999435425,
  -0.23460739850997925, -0.13791173696517944, -0.045525018125772476, 0.03979014977812767,
  0.120255246758461, 0.2035212516784668, 0.2920137643814087, 0.3893125355243683,
  0.5016634464263916, 0.6427869200706482, 0.8614784479141235);
// float32(1e-38) as bits: bitsandbytes clamps a partial block's absmax to it.
const FLOOR_BITS: u32 = 0x006ce3eeu;

struct QuantParams {
  count: u32,   // elements in this chunk
  blocks: u32,  // blocks in this chunk (the last may be partial only for the tensor's last block)
}

@group(0) @binding(0) var<storage, read> qInput: array<u32>;
@group(0) @binding(1) var<storage, read_write> qPacked: array<u32>;
@group(0) @binding(2) var<storage, read_write> qAbsmax: array<u32>;
@group(0) @binding(3) var<uniform> qp: QuantParams;

var<workgroup> red: array<f32, 256>;
var<workgroup> codes: array<u32, 256>;

fn loadInput(i: u32) -> f32 {
  if (INPUT_KIND == 0u) { return bitcast<f32>(qInput[i]); }
  let word = qInput[i >> 1u];
  let half = select(word & 0xffffu, word >> 16u, (i & 1u) == 1u);
  if (INPUT_KIND == 2u) { return bitcast<f32>(half << 16u); }
  return unpack2x16float(half).x;
}

// WGSL's 1/x and x/y may be off by 2.5 ulp; one Newton step makes them (nearly always)
// correctly rounded, which the CPU reference and bitsandbytes are.
fn recip(a: f32) -> f32 {
  let r = 1.0 / a;
  return fma(fma(-a, r, 1.0), r, r);
}

fn divide(x: f32, a: f32, r: f32) -> f32 {
  let q = x * r;
  return fma(fma(-q, a, x), r, q);
}

fn nf4Code(s: f32) -> u32 {
  var c = 0u;
  for (var i = 0u; i < 15u; i++) {
    if (NF4_MID[i] < s) { c++; }
  }
  return c;
}

@compute @workgroup_size(256)
fn quantize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let slot = lid / 64u;
  let lane = lid % 64u;
  let block = (wid.y * nwg.x + wid.x) * 4u + slot;
  let e = block * 64u + lane;
  var x = 0.0;
  if (block < qp.blocks && e < qp.count) { x = loadInput(e); }
  red[lid] = abs(x);
  workgroupBarrier();
  for (var s = 32u; s > 0u; s >>= 1u) {
    if (lane < s) { red[lid] = max(red[lid], red[lid + s]); }
    workgroupBarrier();
  }
  let amax = red[slot * 64u];
  let partial = block * 64u + 64u > qp.count;
  var storedBits = bitcast<u32>(amax);
  if (partial && storedBits < FLOOR_BITS) { storedBits = FLOOR_BITS; }
  var s = 0.0;
  // An all-zero block normalises to 0 (code 7) in bitsandbytes; avoid 0·inf here.
  if (amax > 0.0) {
    let r = recip(amax);
    s = select(x * r, divide(x, amax, r), partial);
    s = clamp(s, -1.0, 1.0);
  }
  codes[lid] = nf4Code(s);
  workgroupBarrier();
  if (block < qp.blocks) {
    if (lane == 0u) { qAbsmax[block] = storedBits; }
    if (lane % 8u == 0u) {
      var word = 0u;
      for (var i = 0u; i < 8u; i++) {
        word |= codes[lid + i] << (8u * (i >> 1u) + select(4u, 0u, (i & 1u) == 1u));
      }
      qPacked[block * 8u + lane / 8u] = word;
    }
  }
}

struct DequantParams {
  count: u32,      // elements to write
  elemStart: u32,  // flat index of the first one
  elemBase: u32,   // flat index of the first element held by `dPacked`
  outOffset: u32,  // element offset in `dOut`
  offset: f32,     // double-quant mean offset
}

@group(0) @binding(0) var<storage, read> dPacked: array<u32>;
@group(0) @binding(1) var<storage, read> dAbsmax: array<u32>;
@group(0) @binding(2) var<storage, read> dNested: array<f32>;
@group(0) @binding(3) var<storage, read> dTables: array<f32>;
@group(0) @binding(4) var<storage, read_write> dOut: array<f32>;
@group(0) @binding(5) var<uniform> dp: DequantParams;

fn blockAbsmax(b: u32) -> f32 {
  if (DOUBLE_QUANT) {
    let q = (dAbsmax[b >> 2u] >> (8u * (b & 3u))) & 255u;
    let scaled = dTables[16u + q] * dNested[b >> 8u];
    return scaled + dp.offset;
  }
  return bitcast<f32>(dAbsmax[b]);
}

@compute @workgroup_size(WG)
fn dequantize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * nwg.x + wid.x) * WG + lid;
  if (i >= dp.count) { return; }
  let e = dp.elemStart + i;
  let local = e - dp.elemBase;
  let byteIndex = local >> 1u;
  let shift = 8u * (byteIndex & 3u) + select(4u, 0u, (local & 1u) == 1u);
  let code = (dPacked[local >> 3u] >> shift) & 15u;
  dOut[dp.outOffset + i] = dTables[code] * blockAbsmax(e >> 6u);
}
