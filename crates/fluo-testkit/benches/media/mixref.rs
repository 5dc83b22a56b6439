//! The Composite bench's peer: gst-launch-1.0 running the pipeline Fluo's Composite runs for
//! N ports (crates/fluo-gst/src/composite/mod.rs and codecs.rs: the same decoders, compositor
//! grid, jitterbuffer, mixers' latency, VP8 and Opus encoder settings), fed RTP over plain
//! UDP (udpsrc) and sending RTP over UDP back to this process, with the plain RTP
//! (de)packetising the bench does for it.

use fluo_testkit::gst_launch::GstLaunch;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

/// The mixers' latency (how long they wait for late inputs, in ns) and the inputs'
/// jitterbuffer latency (ms).
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub mix_ns: u64,
    pub jitter_ms: u32,
}

/// Fluo's Composite's.
pub const FLUO: Latency = Latency {
    mix_ns: fluo_gst::COMPOSITE_MIX_LATENCY_NS,
    jitter_ms: fluo_gst::COMPOSITE_JITTER_MS,
};

/// An even UDP port on 127.0.0.1 that was free (with the next one) a moment ago.
pub fn free_port() -> u16 {
    loop {
        let s = UdpSocket::bind("127.0.0.1:0").expect("udp");
        let p = s.local_addr().expect("addr").port();
        if p.is_multiple_of(2) && UdpSocket::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

/// The gst-launch-1.0 description: `ins` are the (video, audio) ports it listens on, one
/// pair per participant; `outs` where each participant's grid and mix go; the grid is
/// `w`x`h` at `fps`, VP8 at `bps`; `lat` the mixers' and jitterbuffers' latency.
pub fn description(
    ins: &[(u16, u16)],
    outs: &[(u16, u16)],
    (w, h, fps, bps): (u32, u32, u32, u32),
    lat: Latency,
) -> String {
    let n = ins.len();
    let Latency { mix_ns, jitter_ms } = lat;
    let raw = format!(
        "video/x-raw,format=I420,width={w},height={h},framerate={fps}/1,pixel-aspect-ratio=1/1"
    );
    let (cols, rows) = super::flash::grid(n);
    let (cw, ch) = (w as usize / cols, h as usize / rows);
    let mut d = format!("compositor name=mix background=black latency={mix_ns} sink_{n}::zorder=0");
    for i in 0..n {
        let (x, y) = ((i % cols) * cw, (i / cols) * ch);
        d += &format!(
            " sink_{i}::zorder=1 sink_{i}::xpos={x} sink_{i}::ypos={y} sink_{i}::width={cw} sink_{i}::height={ch} sink_{i}::sizing-policy=keep-aspect-ratio"
        );
    }
    let clients: Vec<String> = outs.iter().map(|o| format!("127.0.0.1:{}", o.0)).collect();
    // The thread count Fluo's encoders take (fluo-gst codecs::fit_encoder_threads).
    let threads = if u64::from(w) * u64::from(h) > 1280 * 720 {
        2
    } else {
        1
    };
    d += &format!(
        " ! capsfilter caps=\"{raw}\" ! tee name=grid allow-not-linked=true \
         grid. ! queue max-size-buffers=2 max-size-time=0 max-size-bytes=0 leaky=downstream \
         ! videoconvert ! vp8enc deadline=1 cpu-used=8 end-usage=cbr target-bitrate={bps} \
         keyframe-max-dist=60 lag-in-frames=0 threads={threads} error-resilient=partitions \
         ! rtpvp8pay pt=96 mtu=1200 picture-id-mode=15-bit ! multiudpsink sync=false async=false clients={} \
         videotestsrc is-live=true pattern=black ! capsfilter caps=\"{raw}\" ! mix.sink_{n}",
        clients.join(",")
    );
    let q = "queue max-size-buffers=0 max-size-bytes=0 max-size-time=200000000 leaky=downstream";
    let s16 = "audio/x-raw,format=S16LE,rate=48000,channels=2,layout=interleaved";
    for (i, (v, a)) in ins.iter().enumerate() {
        d += &format!(
            " udpsrc port={v} caps=\"application/x-rtp,media=video,encoding-name=VP8,clock-rate=90000,payload=96\" \
             ! rtpjitterbuffer latency={jitter_ms} ! rtpvp8depay ! vp8dec ! videoconvert \
             ! queue max-size-buffers=3 max-size-time=0 max-size-bytes=0 leaky=downstream ! mix.sink_{i} \
             udpsrc port={a} caps=\"application/x-rtp,media=audio,encoding-name=OPUS,clock-rate=48000,payload=111\" \
             ! rtpjitterbuffer latency={jitter_ms} ! rtpopusdepay ! opusdec plc=true ! audioconvert ! audioresample \
             ! {s16} ! tee name=at{i} allow-not-linked=true"
        );
    }
    for (j, (_, a)) in outs.iter().enumerate() {
        // Each input at 1/(n-1) of its level, as Fluo's mix-minus.
        // (its pads: sink_0 the silence, then the others in order).
        let vol = 1.0 / (n.max(2) - 1) as f64;
        let vols: String = (1..n).map(|k| format!(" sink_{k}::volume={vol}")).collect();
        d += &format!(
            " audiotestsrc is-live=true wave=silence samplesperbuffer=960 ! {s16} \
             ! audiomixer name=am{j} latency={mix_ns}{vols} ! audio/x-raw,format=S16LE,rate=48000,channels=2 \
             ! audioconvert ! audioresample ! opusenc bitrate=64000 frame-size=20 ! rtpopuspay pt=111 \
             ! udpsink host=127.0.0.1 port={a} sync=false async=false"
        );
        for i in (0..n).filter(|i| *i != j) {
            d += &format!(" at{i}. ! {q} ! am{j}.");
        }
    }
    d
}

/// A reference pipeline running for one row's round, watched: it is meant to run until the
/// round ends, and an early exit (a bad pipeline, a missing plugin) ends the bench, naming the
/// row, with gst-launch-1.0's exit status and the end of its standard error.
pub struct Launched {
    gst: GstLaunch,
    row: String,
    checked: Instant,
}

impl Launched {
    /// Starts gst-launch-1.0 with `desc` for `row`, its standard error in `stderr`; with
    /// `messages`, its element messages are kept.
    pub fn start(desc: &str, stderr: &Path, messages: bool, row: String) -> Launched {
        let gst = GstLaunch::start(desc, stderr, messages).unwrap_or_else(|e| panic!("{row}: {e}"));
        Launched {
            gst,
            row,
            checked: Instant::now(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.gst.pid()
    }

    /// Checks (every 100 ms at most) that it still runs.
    pub fn watch(&mut self) {
        if self.checked.elapsed() >= Duration::from_millis(100) {
            self.checked = Instant::now();
            if let Err(e) = self.gst.check() {
                panic!("{}: {e}", self.row);
            }
        }
    }

    /// Checks that it ran to the end, ends it; its element messages not yet taken.
    pub fn finish(self) -> Vec<String> {
        let messages = self.gst.take_messages();
        if let Err(e) = self.gst.stop() {
            panic!("{}: {e}", self.row);
        }
        messages
    }
}

/// Sends one RTP stream over plain UDP.
pub struct RtpOut {
    sock: UdpSocket,
    to: SocketAddr,
    pt: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
}

impl RtpOut {
    pub fn new(port: u16, pt: u8, ssrc: u32) -> RtpOut {
        RtpOut {
            sock: UdpSocket::bind("127.0.0.1:0").expect("udp"),
            to: SocketAddr::from(([127, 0, 0, 1], port)),
            pt,
            seq: 0,
            ts: 0,
            ssrc,
        }
    }

    fn packet(&mut self, marker: bool, payload: &[&[u8]]) {
        let mut b = Vec::with_capacity(1300);
        b.extend_from_slice(&[0x80, self.pt | if marker { 0x80 } else { 0 }]);
        b.extend_from_slice(&self.seq.to_be_bytes());
        b.extend_from_slice(&self.ts.to_be_bytes());
        b.extend_from_slice(&self.ssrc.to_be_bytes());
        for p in payload {
            b.extend_from_slice(p);
        }
        self.seq = self.seq.wrapping_add(1);
        let _ = self.sock.send_to(&b, self.to);
    }

    /// One VP8 frame (RFC 7741: a one-byte descriptor, S set on the first packet), at 90 kHz.
    pub fn vp8(&mut self, frame: &[u8]) {
        let chunks: Vec<&[u8]> = frame.chunks(1100).collect();
        for (i, c) in chunks.iter().enumerate() {
            let desc: &[u8] = if i == 0 { &[0x10] } else { &[0x00] };
            self.packet(i + 1 == chunks.len(), &[desc, c]);
        }
        self.ts = self.ts.wrapping_add(3000);
    }

    /// One 20 ms Opus packet, at 48 kHz.
    pub fn opus(&mut self, packet: &[u8]) {
        self.packet(false, &[packet]);
        self.ts = self.ts.wrapping_add(960);
    }
}

/// Receives one RTP VP8 stream over plain UDP and reassembles its frames (a frame ends at
/// the packet with the marker bit).
pub struct Vp8In {
    pub sock: UdpSocket,
    cur: Vec<u8>,
    /// The frames completed: (when the last packet arrived, the frame).
    pub frames: Vec<(Instant, Vec<u8>)>,
}

impl Vp8In {
    pub fn bind(port: u16) -> Vp8In {
        let sock = UdpSocket::bind(("127.0.0.1", port)).expect("the output port");
        sock.set_nonblocking(true).expect("nonblocking");
        Vp8In {
            sock,
            cur: vec![],
            frames: vec![],
        }
    }

    /// Reads what arrived.
    pub fn poll(&mut self) {
        let mut buf = [0u8; 2048];
        while let Ok(n) = self.sock.recv(&mut buf) {
            let now = Instant::now();
            let Some((marker, payload)) = vp8_payload(&buf[..n]) else {
                continue;
            };
            self.cur.extend_from_slice(payload);
            if marker {
                self.frames.push((now, std::mem::take(&mut self.cur)));
            }
        }
    }
}

/// An RTP packet's marker bit and its VP8 payload (the payload descriptor removed).
fn vp8_payload(p: &[u8]) -> Option<(bool, &[u8])> {
    let cc = usize::from(*p.first()? & 0x0f);
    let mut i = 12 + 4 * cc;
    if p[0] & 0x10 != 0 {
        let len = u16::from_be_bytes([*p.get(i + 2)?, *p.get(i + 3)?]);
        i += 4 + 4 * usize::from(len);
    }
    let marker = p.get(1)? & 0x80 != 0;
    let d = *p.get(i)?;
    i += 1;
    if d & 0x80 != 0 {
        let x = *p.get(i)?;
        i += 1;
        if x & 0x80 != 0 {
            i += if p.get(i)? & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1;
        }
        if x & 0x30 != 0 {
            i += 1;
        }
    }
    Some((marker, p.get(i..)?))
}
