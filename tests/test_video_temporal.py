"""Video carried along the motion (flow.py, temporal.py) and the audio of a video kept (video.py)."""

from fractions import Fraction

import numpy as np
import pytest
import torch

from ncaedit.flow import estimate_motion, warp
from ncaedit.image import to_samples
from ncaedit.noise import position_uniform, uniform_at
from ncaedit.rule import Rule, RuleConfig
from ncaedit.temporal import FlowCarry, fresh_tiles
from ncaedit.tiling import edit_tiles
from ncaedit.video import probe_video, read_frames, write_video


pytest.importorskip("cv2", reason="optical flow needs opencv-python-headless (the dev extra installs it)")


def texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth random colour texture, uint8 (h, w, 3): something optical flow can lock onto."""
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.random((h, w, 3)).astype(np.float32)
    return to_samples(np.clip(cv2.GaussianBlur(noise, (0, 0), 2.0) * 4 - 1.5, 0, 1), np.uint8)


@pytest.fixture
def rule():
    torch.manual_seed(0)
    r = Rule(RuleConfig(hidden_channels=4, width=16))
    torch.nn.init.normal_(r.w2.weight, std=0.05)
    return r


def per_frame(rule, frames, steps):
    out = []
    for f in frames:
        o = np.empty(f.shape, np.float32)
        for t, edited, _ in edit_tiles(rule, f, steps):
            o[t.core.slices()] = edited
        out.append(o)
    return out


def carried(carry, frames):
    out = []
    for f in frames:
        o = np.empty(f.shape, np.float32)
        for t, edited, _ in carry.edit(f):
            o[t.core.slices()] = edited
        out.append(o)
    return out


def test_warp_of_a_known_translation_moves_the_state_by_exactly_that():
    rng = np.random.default_rng(0)
    state = rng.uniform(-1, 1, (40, 50, 15)).astype(np.float16)
    back = np.broadcast_to(np.float32([-3, -2]), (40, 50, 2))  # each pixel was 3 left and 2 up
    for nearest in (False, True):
        moved = warp(state, back, nearest=nearest)
        assert moved.dtype == np.float16
        assert np.array_equal(moved[2:, 3:], state[:-2, :-3])


def test_estimated_motion_of_a_shifted_frame():
    img = texture(72, 96)
    shifted = np.roll(img, (2, 3), axis=(0, 1))  # content moves 3 right, 2 down
    motion = estimate_motion(img, shifted)
    inner = motion.back[8:-8, 8:-8]
    assert np.abs(inner - np.float32([-3, -2])).mean() < 0.05
    assert not motion.valid[:, :3].any() or motion.valid[:, :3].mean() < 0.5  # new at the left edge: rolled in from the right
    assert motion.valid[8:-8, 8:-8].mean() > 0.95


def test_an_occlusion_mask_appears_where_an_object_uncovers_the_background():
    bg, obj = texture(64, 96, seed=1), texture(20, 20, seed=2)
    frames = []
    for x in (30, 36):  # a square moving 6 px right over a still background
        f = bg.copy()
        f[22:42, x : x + 20] = obj
        frames.append(f)
    motion = estimate_motion(*frames)
    uncovered = motion.valid[24:40, 31:35]  # behind the square's left edge, seen now, covered before
    assert uncovered.mean() < 0.5
    assert motion.valid[:, 66:].mean() > 0.95 and motion.valid[:16].mean() > 0.95  # still background


def test_cells_keep_the_random_numbers_of_their_birth_pixel():
    ys, xs = torch.meshgrid(torch.arange(5, 9), torch.arange(10, 16), indexing="ij")
    assert torch.equal(uniform_at(3, 7, ys, xs), position_uniform(3, 7, 5, 10, 4, 6))


def test_fresh_tiles_cover_every_fresh_pixel():
    fresh = np.zeros((100, 130), bool)
    fresh[3, 5] = fresh[70:75, 100:129] = fresh[99, 0] = True
    covered = np.zeros_like(fresh)
    for t in fresh_tiles(fresh, halo=5, max_side=64, block=32):
        covered[t.core.slices()] = True
        assert t.run.top == max(0, t.core.top - 5) and t.run.right == min(130, t.core.right + 5)
        assert t.core.bottom - t.core.top <= 64 and t.core.right - t.core.left <= 64
    assert covered[fresh].all() and covered.mean() < 0.5
    everywhere = fresh_tiles(np.ones((100, 130), bool), halo=5, max_side=64, block=32)
    assert len(everywhere) == 6 and sum(t.core.area for t in everywhere) == 100 * 130


def test_carried_result_on_a_still_clip_equals_the_per_frame_result(rule, tmp_path):
    write_video(tmp_path / "still.mp4", [texture(48, 64)] * 5, Fraction(8))
    frames = list(read_frames(tmp_path / "still.mp4"))  # the codec's small noise included
    want = per_frame(rule, frames, 8)
    got = carried(FlowCarry(rule, 8, 3), frames)
    for w, g in zip(want, got):
        assert np.abs(w - g).max() <= 1 / 255
    assert np.abs(want[0] - frames[0] / 255).mean() > 0.01  # the rule does edit


def test_carried_edit_moves_with_an_exact_pan(rule):
    canvas = texture(48, 64 + 2 * 6)
    frames = [canvas[:, 12 - 2 * t : 12 - 2 * t + 64] for t in range(6)]  # the scene moves 2 px right a frame
    out = carried(FlowCarry(rule, 8, 2), frames)
    pf = per_frame(rule, frames, 8)
    for t in range(1, 6):
        moved = np.abs(out[t][:, 2 + 8 :] - out[t - 1][:, 8:-2]).mean()  # away from the new edge and its halo
        assert moved < 0.5 / 255
        assert np.abs(out[t] - frames[t] / 255).mean() == pytest.approx(np.abs(pf[t] - frames[t] / 255).mean(), rel=0.2)
    assert np.abs(pf[3][:, 10:] - pf[2][:, 8:-2]).mean() > 2 * np.abs(out[3][:, 10:] - out[2][:, 8:-2]).mean()


def test_a_scene_cut_starts_over(rule):
    a, b = texture(48, 64, seed=3), texture(48, 64, seed=4)
    frames = [a, np.roll(a, 1, axis=1), b, np.roll(b, 1, axis=1)]
    carry = FlowCarry(rule, 6, 2)
    out = carried(carry, frames)
    assert carry.cuts == 1
    assert np.abs(out[2] - per_frame(rule, [b], 6)[0]).max() <= 1 / 255  # the cut frame is a fresh edit


def audio_clip(path, codec: str, seconds: float = 1.0, fps: int = 10) -> None:
    """A clip of `seconds` with a sine tone in `codec` (aac, or pcm_s16le in a .mov)."""
    import av

    rate = 16000
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = out.add_stream(codec, rate=rate)
        audio.layout = "mono"
        for i in range(round(seconds * fps)):
            out.mux(video.encode(av.VideoFrame.from_ndarray(texture(48, 64, seed=i), format="rgb24")))
        out.mux(video.encode())
        t = np.arange(round(seconds * rate)) / rate
        tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
        for start in range(0, len(tone), 1024):
            frame = av.AudioFrame.from_ndarray(tone[None, start : start + 1024], format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            out.mux(audio.encode(frame))
        out.mux(audio.encode())


def streams(path):
    import av

    with av.open(str(path)) as c:
        return {s.type: (s.codec_context.name, float(s.duration * s.time_base) if s.duration else None) for s in c.streams}


@pytest.mark.parametrize("suffix, codec, copied", [(".mp4", "aac", "aac"), (".mov", "pcm_s16le", "aac")])
def test_a_clip_with_audio_keeps_its_audio(tmp_path, rule_file, cli, suffix, codec, copied):  # noqa: F811
    clip = tmp_path / f"clip{suffix}"
    audio_clip(clip, codec)
    out = tmp_path / "out.mp4"
    code, said = cli("apply", rule_file, clip, "-o", out)
    assert code == 0, said
    got, want = streams(out), streams(clip)
    assert got["audio"][0] == copied
    assert abs(got["audio"][1] - want["audio"][1]) <= 0.1  # within a frame (10 frames/s)
    assert abs(got["video"][1] - want["video"][1]) <= 0.1
    assert probe_video(out).fps == 10 and len(list(read_frames(out))) == 10


def test_temporal_options_are_checked(tmp_path, rule_file, cli):  # noqa: F811
    clip = tmp_path / "c.mp4"
    write_video(clip, [texture(48, 64)] * 3, Fraction(8))
    for args, message in [
        (["--temporal", "optical"], "--temporal optical: use flow or none"),
        (["--refresh-steps", "4"], "--refresh-steps must be between 0 and the steps (3)"),
        (["--refresh-steps", "-1"], "--refresh-steps must be a whole number from 0"),  # the bounds table (limits.py)
        (["--temporal", "flow", "--carry"], "--carry goes with temporal none"),
        (["--temporal", "none", "--refresh-steps", "1"], "--refresh-steps goes with temporal flow"),
    ]:
        code, said = cli("apply", rule_file, clip, "-o", tmp_path / "o.mp4", *args)
        assert code == 2 and message in said, (args, said)
        assert not (tmp_path / "o.mp4").exists()
    code, said = cli("apply", rule_file, clip, "-o", tmp_path / "o.mp4", "--refresh-steps", "0")
    assert code == 0 and "(3 frames" in said, said
