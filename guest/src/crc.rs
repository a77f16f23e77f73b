//! CRC32C (Castagnoli: reflected polynomial `0x82F63B78`, initial value and final XOR
//! `0xFFFF_FFFF`), the checksum that closes every checkpoint frame (`FORMAT.md`).
//!
//! Natively, [`crc32c`] is the `crc32c` crate, which uses the CPU's CRC instructions (SSE4.2,
//! ARMv8): about 25 GB/s, more than any portable code reaches. WebAssembly has neither CRC
//! instructions nor a carry-less multiply, and the crate's table fallback runs at about
//! 1.6 GB/s there, so inside the component [`crc32c`] is [`portable`]:
//!
//! - short inputs go through slicing-by-16 tables (one table load per byte);
//! - long ones are first reduced modulo a sparse multiple of the polynomial,
//!   `Q = x^(8·5275) + x^(8·4508) + x^(8·2751) + 1`. Since `Q ≡ 0 (mod P)`, the byte at stream
//!   position `p` can be replaced by copies of itself at `p + 767`, `p + 2524` and `p + 5275`
//!   without changing the CRC. That is three loads and three XORs per word (8 bytes, or 16 with
//!   `simd128`), no tables, no dependency chain shorter than 767 bytes; only the last
//!   5275..5306 bytes are left for the tables. (The idea is Chorba's, arXiv:2412.16398, with a multiple whose terms are whole
//!   bytes; `sparse_multiple_is_a_multiple_of_the_polynomial` re-checks `Q`.)

/// The reflected Castagnoli polynomial.
const POLY: u32 = 0x82F6_3B78;

/// `TABLES[k][b]`: the CRC register contribution of byte `b` followed by `k` zero bytes.
static TABLES: [[u32; 256]; 16] = make_tables();

const fn make_tables() -> [[u32; 256]; 16] {
    let mut tables = [[0u32; 256]; 16];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = byte as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
            bit += 1;
        }
        tables[0][byte] = crc;
        byte += 1;
    }
    let mut k = 1;
    while k < 16 {
        let mut byte = 0;
        while byte < 256 {
            let previous = tables[k - 1][byte];
            tables[k][byte] = (previous >> 8) ^ tables[0][(previous & 0xff) as usize];
            byte += 1;
        }
        k += 1;
    }
    tables
}

/// The CRC32C of `bytes`: hardware instructions where the CPU has them, [`portable`] elsewhere
/// (notably inside the WebAssembly component).
pub fn crc32c(bytes: &[u8]) -> u32 {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    {
        ::crc32c::crc32c(bytes)
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        portable(bytes)
    }
}

/// The CRC32C of `bytes` in safe, portable Rust: the code the component runs. Natively it is
/// only used by the tests, which compare it with the `crc32c` crate.
pub fn portable(bytes: &[u8]) -> u32 {
    if bytes.len() >= SPARSE_MIN_LEN {
        !sparse_register(bytes)
    } else {
        !tables_update(!0, bytes)
    }
}

/// Advances the CRC register `crc` over `bytes`, sixteen bytes per step.
fn tables_update(mut crc: u32, bytes: &[u8]) -> u32 {
    let t = &TABLES;
    let mut blocks = bytes.chunks_exact(16);
    for b in &mut blocks {
        let w = crc ^ u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        crc = t[15][(w & 0xff) as usize]
            ^ t[14][((w >> 8) & 0xff) as usize]
            ^ t[13][((w >> 16) & 0xff) as usize]
            ^ t[12][(w >> 24) as usize]
            ^ t[11][b[4] as usize]
            ^ t[10][b[5] as usize]
            ^ t[9][b[6] as usize]
            ^ t[8][b[7] as usize]
            ^ t[7][b[8] as usize]
            ^ t[6][b[9] as usize]
            ^ t[5][b[10] as usize]
            ^ t[4][b[11] as usize]
            ^ t[3][b[12] as usize]
            ^ t[2][b[13] as usize]
            ^ t[1][b[14] as usize]
            ^ t[0][b[15] as usize];
    }
    for &b in blocks.remainder() {
        crc = t[0][((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// Degree of the sparse multiple `Q`, in bytes: the reduction leaves this many bytes (plus up
/// to 7) for the tables.
const SPAN: usize = 5275;
/// How far `Q` moves each byte forward: `SPAN` minus the byte degree of each lower term of `Q`
/// (4508, 2751, 0).
const LAGS: [usize; 3] = [SPAN - 4508, SPAN - 2751, SPAN];
/// Bytes reduced per step of the inner loop; every reduced length is a multiple of it.
const STEP: usize = 32;
/// Bytes reduced per inner loop: at most the smallest lag, so a block never reads itself.
const BLOCK: usize = 512;
/// Reduced bytes kept in the scratch buffer before the current chunk (at least `SPAN`).
const HISTORY: usize = 5376;
/// Bytes reduced between two moves of the history; bounds the scratch buffer.
const CHUNK: usize = 32 * 1024;
/// From this length on the reduction is faster than the tables alone: inside the component
/// both cost the same at 8 KiB, and the reduction is ~25% faster at 12 KiB, ~4x at 1 MiB.
const SPARSE_MIN_LEN: usize = 8 * 1024;

// What `sparse_register` relies on: a block never reads bytes of itself or older than the
// history, every reduced length is whole steps, and the dispatch leaves at least one step.
const _: () = assert!(BLOCK <= LAGS[0] && LAGS[0] < LAGS[1] && LAGS[1] < LAGS[2]);
const _: () = assert!(LAGS[2] == SPAN && SPAN <= HISTORY);
const _: () =
    assert!(BLOCK.is_multiple_of(STEP) && CHUNK.is_multiple_of(BLOCK) && STEP.is_multiple_of(8),);
const _: () = assert!(SPARSE_MIN_LEN >= SPAN + STEP);

/// The CRC register after `bytes` (initial value `!0`), via the sparse multiple `Q`.
/// Needs `bytes.len() >= SPAN + STEP`, so that the first 4 bytes are reduced.
fn sparse_register(bytes: &[u8]) -> u32 {
    // Bytes before `reduced_len` are pushed forward by `LAGS`; every push lands before the end.
    let reduced_len = (bytes.len() - SPAN) / STEP * STEP;
    // `scratch[HISTORY + i]` is reduced byte `done + i`; the `HISTORY` bytes before it are the
    // reduced bytes before `done` (zeros before the stream starts).
    let mut scratch = vec![0u8; HISTORY + CHUNK.min(reduced_len)];
    let mut done = 0;
    let mut end = HISTORY;
    while done < reduced_len {
        let chunk = CHUNK.min(reduced_len - done);
        scratch.copy_within(end - HISTORY..end, 0);
        let mut at = 0;
        while at < chunk {
            let len = BLOCK.min(chunk - at);
            let (before, current) = scratch.split_at_mut(HISTORY + at);
            let here = before.len();
            xor_block(
                &mut current[..len],
                &bytes[done + at..done + at + len],
                &before[here - LAGS[0]..here - LAGS[0] + len],
                &before[here - LAGS[1]..here - LAGS[1] + len],
                &before[here - LAGS[2]..here - LAGS[2] + len],
            );
            if done + at == 0 {
                // The initial register value `!0` is the same as inverting the first 4 bytes.
                for b in &mut current[..4] {
                    *b = !*b;
                }
            }
            at += len;
        }
        done += chunk;
        end = HISTORY + chunk;
    }
    // The unreduced tail, plus what the last `SPAN` reduced bytes push into it.
    let mut tail = bytes[reduced_len..].to_vec();
    for lag in LAGS {
        for (t, r) in tail[..lag].iter_mut().zip(&scratch[end - lag..end]) {
            *t ^= r;
        }
    }
    tables_update(0, &tail)
}

/// `out = input ^ a ^ b ^ c`; every slice has `out.len()` bytes, a multiple of [`STEP`]. Four
/// independent 8-byte words per step, which LLVM turns into two 16-byte XORs with `simd128`.
fn xor_block(out: &mut [u8], input: &[u8], a: &[u8], b: &[u8], c: &[u8]) {
    let word = |s: &[u8], at: usize| {
        let w = &s[at..at + 8];
        u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]])
    };
    for ((((o, i), a), b), c) in out
        .chunks_exact_mut(STEP)
        .zip(input.chunks_exact(STEP))
        .zip(a.chunks_exact(STEP))
        .zip(b.chunks_exact(STEP))
        .zip(c.chunks_exact(STEP))
    {
        for at in (0..STEP).step_by(8) {
            let reduced = word(i, at) ^ word(a, at) ^ word(b, at) ^ word(c, at);
            o[at..at + 8].copy_from_slice(&reduced.to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests;
