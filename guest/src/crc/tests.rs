use super::*;

/// Deterministic pseudo-random bytes (splitmix64), so a failure names a reproducible input.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

#[test]
fn known_answers_from_rfc_3720() {
    assert_eq!(portable(b"123456789"), 0xE306_9283);
    assert_eq!(portable(&[0u8; 32]), 0x8A91_36AA);
    assert_eq!(portable(&[0xFFu8; 32]), 0x62A8_AB43);
    let ascending: Vec<u8> = (0..32).collect();
    assert_eq!(portable(&ascending), 0x46DD_794E);
    assert_eq!(portable(&[]), 0);
}

#[test]
fn portable_matches_the_crate_at_every_length_up_to_4096() {
    let data = random_bytes(4096 + 16, 1);
    for len in 0..=4096 {
        // Alternate the start so lengths are also checked off 8-byte alignment.
        let start = len % 16;
        let bytes = &data[start..start + len];
        assert_eq!(portable(bytes), ::crc32c::crc32c(bytes), "length {len}");
    }
}

#[test]
fn sparse_reduction_matches_the_crate_at_every_length_from_its_minimum() {
    let data = random_bytes(SPAN + STEP + 4096 + 8, 2);
    for len in SPAN + STEP..SPAN + STEP + 4096 {
        let start = len % 8;
        let bytes = &data[start..start + len];
        assert_eq!(
            !sparse_register(bytes),
            ::crc32c::crc32c(bytes),
            "length {len}"
        );
    }
}

#[test]
fn portable_matches_the_crate_on_large_and_unaligned_inputs() {
    let data = random_bytes(3 * 1024 * 1024 + 64, 3);
    let mut lengths = vec![
        SPARSE_MIN_LEN - 1,
        SPARSE_MIN_LEN,
        1024 * 1024,
        1024 * 1024 + 1,
        1024 * 1024 + 7,
        1024 * 1024 + 12 + 4,
        3 * 1024 * 1024 + 5,
    ];
    // Reduced lengths on either side of every chunk boundary up to four chunks.
    for chunks in 1..=4 {
        for delta in 0..24 {
            lengths.push(SPAN + chunks * CHUNK + delta - 12);
        }
    }
    for len in lengths {
        for start in [0, 1, 3, 8, 13] {
            let bytes = &data[start..start + len];
            assert_eq!(
                portable(bytes),
                ::crc32c::crc32c(bytes),
                "length {len} at offset {start}"
            );
        }
    }
}

#[test]
fn a_flipped_bit_anywhere_in_a_large_input_changes_the_crc() {
    let mut data = random_bytes(200 * 1024 + 3, 4);
    let clean = portable(&data);
    for at in [
        0,
        3,
        4,
        767,
        5274,
        100_000,
        data.len() - SPAN,
        data.len() - 1,
    ] {
        data[at] ^= 0x10;
        assert_ne!(portable(&data), clean, "bit flipped at {at}");
        assert_eq!(
            portable(&data),
            ::crc32c::crc32c(&data),
            "bit flipped at {at}"
        );
        data[at] ^= 0x10;
    }
}

/// `a * b mod P` over GF(2), in the non-reflected form (`P` with its `x^32` term).
fn mul_mod(mut a: u64, mut b: u64) -> u64 {
    const P: u64 = 0x1_1EDC_6F41;
    let mut product = 0;
    while b != 0 {
        if b & 1 == 1 {
            product ^= a;
        }
        b >>= 1;
        a <<= 1;
        if a & (1 << 32) != 0 {
            a ^= P;
        }
    }
    product
}

fn x_pow_mod(mut exponent: u64) -> u64 {
    let (mut result, mut base) = (1, 2);
    while exponent != 0 {
        if exponent & 1 == 1 {
            result = mul_mod(result, base);
        }
        base = mul_mod(base, base);
        exponent >>= 1;
    }
    result
}

#[test]
fn sparse_multiple_is_a_multiple_of_the_polynomial() {
    // Q = x^(8·SPAN) + sum over lags of x^(8·(SPAN - lag)).
    let q = LAGS.iter().fold(x_pow_mod(8 * SPAN as u64), |acc, lag| {
        acc ^ x_pow_mod(8 * (SPAN - lag) as u64)
    });
    assert_eq!(q, 0);
}

#[test]
fn tables_start_from_the_bitwise_definition() {
    let bitwise = |byte: u8| {
        let mut crc = u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
        }
        crc
    };
    for byte in 0..=255u8 {
        assert_eq!(TABLES[0][byte as usize], bitwise(byte));
    }
}

/// Prints GB/s of each way to compute the CRC of 1 MiB natively (`--ignored --nocapture`);
/// asserts only that they agree.
#[test]
#[ignore = "measurement; run with --ignored --nocapture"]
fn native_throughput_of_each_variant() {
    use std::time::Instant;
    let data = random_bytes(1024 * 1024, 5);
    type Crc = fn(&[u8]) -> u32;
    let variants: [(&str, Crc); 4] = [
        ("crc32c crate (hardware)", ::crc32c::crc32c),
        ("slicing-by-16 tables", |b| !tables_update(!0, b)),
        ("sparse multiple + tables", |b| !sparse_register(b)),
        ("crc::crc32c (dispatch)", crc32c),
    ];
    let expected = ::crc32c::crc32c(&data);
    for (name, f) in variants {
        assert_eq!(f(&data), expected, "{name}");
        // Best of five runs: the machine is shared, the fastest run is the stable figure.
        let rounds = 50;
        let seconds = (0..5)
            .map(|_| {
                let start = Instant::now();
                for _ in 0..rounds {
                    std::hint::black_box(f(std::hint::black_box(&data)));
                }
                start.elapsed().as_secs_f64()
            })
            .fold(f64::MAX, f64::min);
        println!(
            "{name:28} {:6.2} GB/s",
            (rounds * data.len()) as f64 / seconds / 1e9
        );
    }
}

#[test]
fn portable_agrees_with_the_crc_stored_in_every_golden_file() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "bin") {
            let bytes = std::fs::read(&path).unwrap();
            let (framed, stored) = bytes.split_at(bytes.len() - 4);
            let stored = u32::from_le_bytes(stored.try_into().unwrap());
            assert_eq!(portable(framed), stored, "{}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 2, "golden files missing from {}", dir.display());
}
