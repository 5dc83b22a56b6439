//! Forwarding media to an endpoint: the payload type and sequence line for that viewer, the
//! write into its str0m session, and the flush that sends what was written (once per
//! endpoint after a batch of input).

use super::*;

impl MediaCore {
    /// One packet of `src` to `sink`: into its port (players, recorders, filters; through a
    /// transcoder when the codec does not fit) or written to its WebRTC session.
    pub(super) fn forward(&mut self, src: u64, sink: u64, f: &Forward) {
        let kind = f.kind;
        if let Some(target) = self.reformat_for(src, sink, f) {
            // The source's output settings force another format on its media.
            self.transcode_to(src, sink, f, Some(target));
            return;
        }
        if let Some(p) = self.ports.get_mut(&sink) {
            if p.port.accepts(kind, &f.codec) {
                let mut pkt = f.packet();
                if p.upstream.is_none() {
                    // One continuous SSRC / sequence / timestamp line per kind, across
                    // source switches and a player's seeks.
                    let rw = self.port_out.entry((sink, kind)).or_insert_with(|| {
                        let clock = f.codec.clock_rate;
                        Rewriter::new(
                            clock,
                            (sink as u32) ^ 0x5f10_0000 ^ kind.index() as u32,
                            f.seq & 0x3fff,
                            f.ts,
                        )
                    });
                    let Some(r) = rw.rewrite(self.now, f.ssrc, f.seq, f.ts) else {
                        return;
                    };
                    pkt.ssrc = rw.out_ssrc();
                    pkt.seq = r.seq;
                    pkt.timestamp = r.ts;
                }
                p.port.push(&pkt);
                if let (Some(t), None) = (f.entered, p.upstream) {
                    self.latency.record(&p.id, kind, t.elapsed());
                }
                self.port_flowed(sink, FlowDir::In, kind);
            } else if p.upstream.is_some() {
                // The source changed codec under a transcoder: never transcode for a
                // transcoder (that chains them, and can loop). Undo it: its sinks go back to
                // the source and are matched again from this packet on.
                self.unwind_transcoder(src, sink, f);
            } else {
                self.transcode(src, sink, f);
            }
            return;
        }
        let Some(e) = self.eps.get(&sink) else {
            return;
        };
        let ep_ref = e.ep.clone();
        {
            let mut ep = lock(&ep_ref);
            if !ep.connected {
                return;
            }
            let Some(mid) = ep.mid_of_kind(kind) else {
                return;
            };
            // Map the payload type by codec: the two sides may number them differently. The
            // answer for the codec last seen is kept (a lookup through str0m's codec list per
            // packet and viewer was a visible part of the fan-out's cost).
            let cached = ep.pt_cache[kind].filter(|(c, _)| *c == f.codec);
            let Some(pt) = cached.map(|(_, pt)| pt).or_else(|| {
                let pt = map_pt(&ep.rtc, mid, &f.codec)?;
                ep.pt_cache[kind] = Some((f.codec, pt));
                Some(pt)
            }) else {
                drop(ep);
                self.transcode(src, sink, f);
                return;
            };
            let now = self.now;
            let clock = match kind {
                MediaKind::Audio => 48_000,
                MediaKind::Video => 90_000,
            };
            let out = ep.out[kind].get_or_insert_with(|| OutStream {
                // Start low so the extended sequence never implies a rollover.
                rewriter: Rewriter::new(clock, 0, f.seq & 0x3fff, f.ts),
                ext: u64::from(f.seq & 0x3fff),
                rtx: None,
            });
            let Some(rw) = out.rewriter.rewrite(now, f.ssrc, f.seq, f.ts) else {
                return;
            };
            out.ext = fluo_sfu::extend_seq(out.ext, rw.seq);
            let (out_seq, out_ts) = (out.ext, rw.ts);
            let size_rtx = kind == MediaKind::Video && out.rtx.is_none();
            let mut api = ep.rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(mid, None) else {
                return;
            };
            if size_rtx {
                tx.set_rtx_cache(RTX_PACKETS, RTX_HISTORY_START, Some(0.15));
            }
            let mut write = RtpWrite::new(pt, SeqNo::from(out_seq), out_ts, now, f.payload.clone())
                .marker(f.marker)
                .nackable(kind == MediaKind::Video);
            if let Some(ext) = &f.ext_vals {
                write = write.ext_vals(ext.clone());
            }
            tx.write_rtp(write);
            if size_rtx {
                if let Some(o) = ep.out[kind].as_mut() {
                    o.rtx = Some(RtxCache::new());
                }
            }
            let c = &mut ep.stats.kinds[kind];
            c.out_packets += 1;
            c.out_first.get_or_insert(out_seq);
            c.out_bytes += f.payload.len() as u64;
            if let Some(t) = f.entered {
                c.latency.add(t.elapsed());
            }
            ep.last_out_at[kind] = Some(now);
            if !ep.flowing_out[kind] {
                ep.flowing_out[kind] = true;
                let ev = flow(FlowDir::Out, true, kind);
                self.events.push_back((ep.id.clone(), ev));
            }
        }
        if let Some(e) = self.eps.get_mut(&sink) {
            if !std::mem::replace(&mut e.dirty, true) {
                self.dirty.push(sink);
            }
        }
    }

    /// Sends what was written to endpoints: str0m releases written RTP on its next tick, run
    /// here at once, so that a packet leaves while its input is handled rather than after a
    /// round trip through the shell's timer (a millisecond of resolution).
    pub(super) fn flush(&mut self) {
        while let Some(key) = self.dirty.pop() {
            let Some(e) = self.eps.get_mut(&key) else {
                continue;
            };
            e.dirty = false;
            let ep_ref = e.ep.clone();
            {
                let mut ep = lock(&ep_ref);
                if ep.rtc.is_alive() {
                    if let Err(err) = ep.rtc.handle_input(Input::Timeout(self.now)) {
                        tracing::debug!(id = %ep.id, "timeout rejected: {err}");
                    }
                }
            }
            self.drive(key);
        }
    }

    /// Handles several datagrams (those waiting on a socket) with one flush at the end.
    pub fn receive_batch(&mut self, f: impl FnOnce(&mut MediaCore)) {
        self.batching = true;
        f(self);
        self.batching = false;
        self.flush();
    }
}

/// The sink's payload type for a codec (matched by name, clock rate and, for H.264, profile
/// and packetization mode), never by number: the two sides may number codecs differently.
/// Only payload types the sink's browser accepted on that m-line count.
fn map_pt(sink: &Rtc, mid: Mid, codec: &Codec) -> Option<str0m::media::Pt> {
    let params = sink.codec_config().params();
    let accepted = sink.media(mid).map(|m| m.remote_pts()).unwrap_or_default();
    let same = |p: &&str0m::format::PayloadParams| {
        accepted.contains(&p.pt()) && codec_of(&p.spec()).is_some_and(|c| c.compatible(codec))
    };
    let exact = params.iter().filter(same).find(|p| {
        let f = p.spec().format;
        f.profile_level_id == codec.profile_level_id
            && f.packetization_mode == codec.packetization_mode
    });
    exact.or_else(|| params.iter().find(same)).map(|p| p.pt())
}
