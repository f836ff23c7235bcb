//! Benchmark client for `scripts/bench-serve.sh`: random 4 KiB reads, one at a time, from an NBD
//! server on a Unix socket; prints the latency percentiles in microseconds.
//!
//! `nbd_randread SOCKET COUNT [SEED]`

use salvor::serve::proto::*;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Instant;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let sock = args.get(1).map(String::as_str).unwrap_or("nbd.sock");
    let count: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10000);
    let mut seed: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1) | 1;
    let mut s = UnixStream::connect(sock)?;
    let mut g = [0u8; 18];
    s.read_exact(&mut g)?;
    s.write_all(&3u32.to_be_bytes())?;
    let opt = |s: &mut UnixStream, o: u32, d: &[u8]| -> std::io::Result<()> {
        let mut b = IHAVEOPT.to_be_bytes().to_vec();
        b.extend_from_slice(&o.to_be_bytes());
        b.extend_from_slice(&(d.len() as u32).to_be_bytes());
        b.extend_from_slice(d);
        s.write_all(&b)
    };
    let reply = |s: &mut UnixStream| -> std::io::Result<(u32, Vec<u8>)> {
        let mut h = [0u8; 20];
        s.read_exact(&mut h)?;
        let t = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
        let n = u32::from_be_bytes([h[16], h[17], h[18], h[19]]) as usize;
        let mut d = vec![0u8; n];
        s.read_exact(&mut d)?;
        Ok((t, d))
    };
    opt(&mut s, OPT_STRUCTURED_REPLY, &[])?;
    let (t, _) = reply(&mut s)?;
    let structured = t == REP_ACK;
    opt(&mut s, OPT_GO, &[0, 0, 0, 0, 0, 0])?;
    let mut size = 0u64;
    loop {
        let (t, d) = reply(&mut s)?;
        if t == REP_INFO && d.len() >= 12 && d[..2] == [0, 0] {
            size = u64::from_be_bytes(d[2..10].try_into().unwrap_or([0; 8]));
        }
        if t == REP_ACK {
            break;
        }
        if t & 0x8000_0000 != 0 {
            return Err(std::io::Error::other("NBD_OPT_GO refused"));
        }
    }
    let blocks = size / 4096;
    let mut lat = Vec::with_capacity(count);
    let mut buf = vec![0u8; 4096 + 64];
    for i in 0..count {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        let blk = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) % blocks.max(1);
        let req = Request {
            flags: CMD_FLAG_DF,
            kind: CMD_READ,
            cookie: i as u64,
            offset: blk * 4096,
            length: 4096,
        };
        let t0 = Instant::now();
        s.write_all(&encode_request(&req))?;
        if structured {
            loop {
                let mut h = [0u8; 20];
                s.read_exact(&mut h)?;
                let flags = u16::from_be_bytes([h[4], h[5]]);
                let n = u32::from_be_bytes([h[16], h[17], h[18], h[19]]) as usize;
                buf.resize(n, 0);
                s.read_exact(&mut buf[..n])?;
                if flags & REPLY_FLAG_DONE != 0 {
                    break;
                }
            }
        } else {
            let mut h = [0u8; 16];
            s.read_exact(&mut h)?;
            s.read_exact(&mut buf[..4096])?;
        }
        lat.push(t0.elapsed().as_nanos() as u64);
    }
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] as f64 / 1000.0;
    println!(
        "p50_us={:.1} p99_us={:.1} n={}",
        pct(0.50),
        pct(0.99),
        lat.len()
    );
    Ok(())
}
