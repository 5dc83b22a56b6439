//! Tables of codecs through [`decide`].

use super::*;
use crate::settings::{AudioFormat, VideoFormat};

fn same_kind(from: &Codec, to: &Codec) -> bool {
    from.name.kind() == to.name.kind()
}

fn no_factory(_: &Codec, _: &Codec) -> bool {
    false
}

fn h264(profile_level_id: u32, mode: u8) -> Codec {
    Codec {
        profile_level_id: Some(profile_level_id),
        packetization_mode: Some(mode),
        ..Codec::new(CodecName::H264)
    }
}

fn sink(codecs: &[(u8, Codec)]) -> SinkCaps {
    SinkCaps::codecs(codecs.iter().map(|(pt, c)| SinkCodec::with_pt(*c, *pt)))
}

fn named(names: &[CodecName]) -> SinkCaps {
    SinkCaps::codecs(names.iter().map(|n| SinkCodec::new(Codec::new(*n))))
}

#[test]
fn every_pair_of_codecs_fluo_knows() {
    for from in CodecName::ALL {
        for to in CodecName::ALL {
            let src = Codec::new(from);
            let caps = sink(&[(100, Codec::new(to))]);
            let with_factory = decide(&src, &caps, None, same_kind);
            let without = decide(&src, &caps, None, no_factory);
            let expected = if from == to {
                Decision::Forward { pt: Some(100) }
            } else if from.kind() == to.kind() {
                Decision::Transcode { to: Codec::new(to) }
            } else {
                Decision::Impossible(Impossible::NoCodec)
            };
            assert_eq!(with_factory, expected, "{from:?} -> sink of {to:?}");
            let expected_without = if from == to {
                expected
            } else {
                Decision::Impossible(Impossible::NoCodec)
            };
            assert_eq!(without, expected_without, "{from:?} -> {to:?} (no factory)");
        }
    }
}

#[test]
fn the_first_target_the_factory_can_make_of_the_same_kind_is_chosen() {
    let caps = named(&[
        CodecName::Opus,
        CodecName::Vp9,
        CodecName::Vp8,
        CodecName::H263,
    ]);
    let only_vp8 = |_: &Codec, to: &Codec| to.name == CodecName::Vp8;
    assert_eq!(
        decide(&Codec::new(CodecName::H264), &caps, None, only_vp8),
        Decision::Transcode {
            to: Codec::new(CodecName::Vp8)
        }
    );
    assert_eq!(
        decide(&Codec::new(CodecName::H264), &caps, None, same_kind),
        Decision::Transcode {
            to: Codec::new(CodecName::Vp9)
        }
    );
    // Audio never becomes video, however willing the factory.
    assert_eq!(
        decide(
            &Codec::new(CodecName::Pcmu),
            &named(&[CodecName::Vp8]),
            None,
            |_, _| true
        ),
        Decision::Impossible(Impossible::NoCodec)
    );
    // A sink's order decides among the codecs it takes as they are, too.
    let caps = sink(&[
        (0, Codec::new(CodecName::Pcmu)),
        (111, Codec::new(CodecName::Opus)),
    ]);
    assert_eq!(
        decide(&Codec::new(CodecName::Opus), &caps, None, same_kind),
        Decision::Forward { pt: Some(111) }
    );
}

#[test]
fn h264_profiles_and_packetization_modes() {
    let cb = 0x42e01f; // constrained baseline 3.1
    let baseline = 0x42001f;
    let main = 0x4d001f;
    let high = 0x640c1f;
    let caps = sink(&[
        (96, h264(cb, 1)),
        (97, h264(cb, 0)),
        (98, h264(main, 1)),
        (99, h264(high, 1)),
    ]);
    let no_mode = Codec {
        packetization_mode: None,
        ..h264(cb, 1)
    };
    let table: &[(Codec, Decision)] = &[
        (h264(cb, 1), Decision::Forward { pt: Some(96) }),
        (h264(cb, 0), Decision::Forward { pt: Some(97) }),
        // Same profile_idc, other constraint flags or level: the first of that profile.
        (h264(baseline, 1), Decision::Forward { pt: Some(96) }),
        (h264(baseline, 0), Decision::Forward { pt: Some(97) }),
        (h264(main, 1), Decision::Forward { pt: Some(98) }),
        (h264(high, 1), Decision::Forward { pt: Some(99) }),
        (h264(0x640032, 1), Decision::Forward { pt: Some(99) }),
        // A side that does not say its mode matches any.
        (no_mode, Decision::Forward { pt: Some(96) }),
        // High in mode 0 is nowhere: transcoded to the sink's first choice.
        (h264(high, 0), Decision::Transcode { to: h264(cb, 1) }),
        (h264(0x4d0033, 0), Decision::Transcode { to: h264(cb, 1) }),
    ];
    for (src, expected) in table {
        assert_eq!(decide(src, &caps, None, same_kind), *expected, "{src:?}");
    }
    // Several entries of one profile: the one of the same profile-level-id wins, else the
    // first.
    let caps2 = sink(&[(100, h264(baseline, 1)), (101, h264(cb, 1))]);
    for (src, pt) in [
        (h264(cb, 1), 101),
        (h264(baseline, 1), 100),
        (h264(0x42e034, 1), 100),
    ] {
        assert_eq!(
            decide(&src, &caps2, None, same_kind),
            Decision::Forward { pt: Some(pt) },
            "{src:?}"
        );
    }
    // The same without a factory: what cannot be forwarded cannot be had.
    assert_eq!(
        decide(&h264(high, 0), &caps, None, no_factory),
        Decision::Impossible(Impossible::NoCodec)
    );
    // A sink of mode 0 only does not take mode 1.
    let mode0 = sink(&[(97, h264(cb, 0))]);
    assert_eq!(
        decide(&h264(cb, 1), &mode0, None, same_kind),
        Decision::Transcode { to: h264(cb, 0) }
    );
    // An entry without profile or mode (a filter, a recorder) takes any H.264.
    let any_h264 = Codec {
        profile_level_id: None,
        packetization_mode: None,
        ..Codec::new(CodecName::H264)
    };
    let caps = SinkCaps::codecs([SinkCodec::new(any_h264)]);
    for src in [h264(cb, 1), h264(high, 0), h264(main, 1)] {
        assert_eq!(
            decide(&src, &caps, None, no_factory),
            Decision::Forward { pt: None }
        );
    }
}

fn video(codec: CodecName, framerate: Option<(u32, u32)>) -> OutputSettings {
    OutputSettings {
        video: Some(VideoFormat { codec, framerate }),
        ..OutputSettings::new(300_000)
    }
}

fn audio(codec: CodecName, bitrate: u32) -> OutputSettings {
    OutputSettings {
        audio: Some(AudioFormat { codec, bitrate }),
        ..OutputSettings::new(300_000)
    }
}

#[test]
fn forced_formats() {
    use CodecName::*;
    let vp8 = Codec::new(Vp8);
    let h264 = Codec::new(H264);
    let both = named(&[Vp8, H264]);
    let vp8_only = named(&[Vp8]);
    let fwd = Decision::Forward { pt: None };
    let to = |c: CodecName| Decision::Transcode { to: Codec::new(c) };
    let v = MediaKind::Video;
    // (settings, source applied them itself, source codec, sink, expected)
    let table: Vec<(OutputSettings, bool, Codec, &SinkCaps, Decision)> = vec![
        // Nothing forced.
        (OutputSettings::new(300_000), false, vp8, &both, fwd),
        // Another codec: who takes it gets it made; who does not keeps the source's.
        (video(H264, None), false, vp8, &both, to(H264)),
        (video(H264, None), false, vp8, &vp8_only, fwd),
        (video(H264, None), false, h264, &both, fwd),
        // A frame rate: re-encoded for everyone, in the forced codec where taken...
        (video(Vp8, Some((15, 1))), false, vp8, &both, to(Vp8)),
        (video(Vp8, Some((15, 1))), false, vp8, &vp8_only, to(Vp8)),
        (video(H264, Some((15, 1))), false, vp8, &both, to(H264)),
        // ... else in the first codec the sink takes.
        (video(H264, Some((15, 1))), false, vp8, &vp8_only, to(Vp8)),
        // Unless the source applied the rate while encoding its own output.
        (video(Vp8, Some((15, 1))), true, vp8, &both, fwd),
        (video(H264, Some((15, 1))), true, vp8, &both, to(H264)),
        // A forced audio format does not touch video.
        (audio(Pcma, 0), false, vp8, &both, fwd),
    ];
    for (settings, applied, src, caps, expected) in table {
        let forced = Forced::of(&settings, v, applied);
        assert_eq!(
            decide(&src, caps, forced, same_kind),
            expected,
            "{settings:?} applied={applied} {src} -> {caps:?}"
        );
    }
    let opus = Codec::new(Opus);
    let pcmu = Codec::new(Pcmu);
    let a = MediaKind::Audio;
    let f = |s: &OutputSettings| Forced::of(s, a, false);
    let pcmu_opus = named(&[Pcmu, Opus]);
    let pcmu_only = named(&[Pcmu]);
    // An Opus bitrate: PCMU re-encoded to Opus where taken, else to PCMU again.
    assert_eq!(
        decide(&pcmu, &pcmu_opus, f(&audio(Opus, 32_000)), same_kind),
        to(Opus)
    );
    assert_eq!(
        decide(&pcmu, &pcmu_only, f(&audio(Opus, 32_000)), same_kind),
        to(Pcmu)
    );
    // PCMA without a bitrate, for a sink that does not take PCMA: as it is.
    assert_eq!(
        decide(&opus, &named(&[Opus]), f(&audio(Pcma, 0)), same_kind),
        fwd
    );
    // Opus forced on Opus: nothing to do.
    assert_eq!(
        decide(&opus, &pcmu_opus, f(&audio(Opus, 0)), same_kind),
        fwd
    );
    // No factory: a forced format cannot be made; the usual matching holds.
    assert_eq!(
        decide(
            &vp8,
            &both,
            Forced::of(&video(H264, None), v, false),
            no_factory
        ),
        fwd
    );
    assert_eq!(
        decide(
            &Codec::new(Vp9),
            &both,
            Forced::of(&video(H264, None), v, false),
            no_factory
        ),
        Decision::Impossible(Impossible::NoCodec)
    );
}

#[test]
fn forced_reads_the_settings_of_its_kind() {
    let s = video(CodecName::H264, Some((10, 1)));
    assert_eq!(
        Forced::of(&s, MediaKind::Video, false),
        Some(Forced {
            codec: CodecName::H264,
            reencode: true
        })
    );
    assert_eq!(
        Forced::of(&s, MediaKind::Video, true).map(|f| f.reencode),
        Some(false)
    );
    assert_eq!(Forced::of(&s, MediaKind::Audio, false), None);
    let s = audio(CodecName::Opus, 0);
    assert_eq!(
        Forced::of(&s, MediaKind::Audio, false).map(|f| f.reencode),
        Some(false)
    );
    // The same answers as OutputSettings::reformat, for every codec.
    for applied in [false, true] {
        for s in [
            s,
            video(CodecName::Vp8, Some((15, 1))),
            audio(CodecName::Opus, 24_000),
        ] {
            for name in CodecName::ALL {
                let c = Codec::new(name);
                let kind = name.kind();
                let old = s.reformat(kind, &c, applied);
                let new = Forced::of(&s, kind, applied)
                    .filter(|f| f.unmet_by(&c))
                    .map(|f| f.codec);
                assert_eq!(old, new, "{s:?} {name:?} applied={applied}");
            }
        }
    }
}

#[test]
fn a_transcoder_is_never_transcoded_for() {
    let caps = SinkCaps::transcoder(Codec::new(CodecName::Vp8));
    let forced = Forced::of(
        &video(CodecName::H264, Some((5, 1))),
        MediaKind::Video,
        false,
    );
    assert_eq!(
        decide(&Codec::new(CodecName::Vp8), &caps, forced, same_kind),
        Decision::Forward { pt: None }
    );
    // The source moved to H.264 under it: the transcoder must go.
    for f in [None, forced] {
        assert_eq!(
            decide(&Codec::new(CodecName::H264), &caps, f, same_kind),
            Decision::Impossible(Impossible::TranscoderInput)
        );
    }
}

#[test]
fn a_sink_that_takes_anything_gets_it_as_it_is() {
    let caps = SinkCaps::anything();
    for name in CodecName::ALL {
        assert_eq!(
            decide(&Codec::new(name), &caps, None, same_kind),
            Decision::Forward { pt: None }
        );
    }
    // A forced format has nothing to make for it.
    let forced = Forced::of(
        &video(CodecName::H264, Some((5, 1))),
        MediaKind::Video,
        false,
    );
    assert_eq!(
        decide(&Codec::new(CodecName::Vp8), &caps, forced, same_kind),
        Decision::Forward { pt: None }
    );
}
