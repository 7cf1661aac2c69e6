// Decoding one value of a frozen base weight from its storage format, so matmuls read the weight in place and the
// dequantized matrix never exists in memory. The weight is the Linear [out, in] matrix flattened (bitsandbytes'
// layout); `weight_at(flat)` returns element `flat`.
//
// Formats (the pipeline constant FORMAT: a pipeline decodes one format, without a branch on it per value): 0 fp32
// (one u32 per value), 1 fp16 and 2 bf16 (two per u32, low half first), 3 int8 (four per u32, little-endian bytes,
// value q/127·absmax), 4 int4, 5 fp4, 6 nf4 (eight per u32; byte j holds values 2j (high nibble) and 2j+1 (low
// nibble), as bitsandbytes packs them; value codebook[nibble]·absmax). Blocks of 64 values share an absmax; with double quantization (DOUBLE_QUANT) absmax = dynamic_map[qabs[block]] · nested[block / 256] +
// offset. The 16-entry 4-bit codebook and the 256-entry dynamic map travel in the uniform (parameters, not data).

override FORMAT: u32;
override DOUBLE_QUANT: bool;

struct Quant {
    offset: f32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
    codebook: array<vec4<f32>, 4>,
    dynamic_map: array<vec4<f32>, 64>,
}

@group(1) @binding(0) var<uniform> q: Quant;
@group(1) @binding(1) var<storage, read> wq: array<u32>;
@group(1) @binding(2) var<storage, read> scales: array<f32>;
@group(1) @binding(3) var<storage, read> qabs: array<u32>;

fn code4(i: u32) -> f32 { return q.codebook[i / 4u][i % 4u]; }
fn dynamic_code(i: u32) -> f32 { return q.dynamic_map[i / 4u][i % 4u]; }

fn byte_at(words_index: u32) -> u32 {
    return (qabs[words_index / 4u] >> ((words_index % 4u) * 8u)) & 0xffu;
}

// Branch-free where the choice is per value: CPU emulators of a GPU (SwiftShader, lavapipe) run an invocation's
// branches as masked code, every branch paid for. The format and double quantization are pipeline constants, so
// the compiler keeps one branch of each choice over them.
fn absmax_of(block: u32) -> f32 {
    if (DOUBLE_QUANT) {
        return dynamic_code(byte_at(block)) * scales[block / 256u] + q.offset;
    }
    return scales[block];
}

fn weight_at(flat: u32) -> f32 {
    var v: f32;
    switch FORMAT {
        case 0u: { v = bitcast<f32>(wq[flat]); }
        case 1u: {
            let pair = unpack2x16float(wq[flat / 2u]);
            v = select(pair.y, pair.x, (flat & 1u) == 0u);
        }
        case 2u: {
            let word = wq[flat / 2u];
            v = bitcast<f32>(select(word & 0xffff0000u, word << 16u, (flat & 1u) == 0u));
        }
        case 3u: {
            let byte = (wq[flat / 4u] >> ((flat % 4u) * 8u)) & 0xffu;
            let signed = select(i32(byte), i32(byte) - 256, byte >= 128u);
            v = (f32(signed) / 127.0) * absmax_of(flat / 64u);
        }
        default: {
            let byte = (wq[flat / 8u] >> (((flat % 8u) / 2u) * 8u)) & 0xffu;
            let nibble = select(byte & 0xfu, byte >> 4u, (flat & 1u) == 0u);
            v = code4(nibble) * absmax_of(flat / 64u);
        }
    }
    return v;
}
