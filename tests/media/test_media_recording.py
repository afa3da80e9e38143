"""The stereo aligner and the recorder: alignment, silence, prompts, dropping to disk, sealing, repair."""

from __future__ import annotations

import hashlib
import os
import resource
import struct
import time
import wave
from pathlib import Path

import pytest

from gateway.media import g711, ports
from gateway.media.aligner import LEFT, RIGHT, StereoAligner, mix
from gateway.media.errors import MediaError
from gateway.media.ports import DiskWriter, StereoRecorder
from gateway.media.wav import repair_wav, wav_header

FRAME = 320  # bytes of 16-bit mono per 20 ms


def pcm_frame(value: int, samples: int = 160) -> bytes:
    return struct.pack("<h", value) * samples


def split(stereo: bytes) -> tuple[list[int], list[int]]:
    values = struct.unpack(f"<{len(stereo) // 2}h", stereo)
    return list(values[0::2]), list(values[1::2])


def run(al: StereoAligner, schedule: dict[int, list[tuple[int, bytes]]], ticks: int) -> tuple[list[int], list[int]]:
    """Push what arrives before tick n (schedule[n]), then tick; returns per-tick (left, right) first samples."""
    left, right = [], []
    for n in range(ticks):
        for side, data in schedule.get(n, []):
            al.push(side, data)
        frame = al.tick()
        assert len(frame) == 640
        lv, rv = split(frame)
        assert len(set(lv)) == 1 and len(set(rv)) == 1, "frames are never split in these tests"
        left.append(lv[0])
        right.append(rv[0])
    return left, right


def test_one_side_silent_every_tick_one_frame() -> None:
    al = StereoAligner()
    sched = {n: [(LEFT, pcm_frame(n + 1))] for n in range(20)}
    left, right = run(al, sched, 25)
    assert right == [0] * 25
    # prefill (two frames queued) costs one tick, then every frame in order, then silence
    assert left == [0] + list(range(1, 21)) + [0] * 4
    assert al.frames == 25


def test_gap_is_silence_at_the_right_time() -> None:
    al = StereoAligner(prefill_frames=1)
    sched = {n: [(LEFT, pcm_frame(100 + n))] for n in list(range(0, 5)) + list(range(15, 20))}
    sched.update({n: sched.get(n, []) + [(RIGHT, pcm_frame(-7))] for n in range(25)})
    left, right = run(al, sched, 25)
    assert left == [100, 101, 102, 103, 104] + [0] * 10 + [115, 116, 117, 118, 119] + [0] * 5
    assert right == [-7] * 25


def test_jitter_within_one_frame_plays_without_gaps() -> None:
    al = StereoAligner()
    sched: dict[int, list[tuple[int, bytes]]] = {}
    # packets 0..29; odd ones arrive a tick late together with the next one
    for i in range(30):
        sched.setdefault(i + (i % 2), []).append((RIGHT, pcm_frame(i + 1)))
    left, right = run(al, sched, 40)
    played = [v for v in right if v]
    assert played == list(range(1, 31))
    first = right.index(1)
    assert right[first:first + 30] == list(range(1, 31)), "no silence inserted once playing"
    assert al.sides[RIGHT].underruns == 0


def test_30ms_packets_play_without_underrun() -> None:
    al = StereoAligner()
    sched: dict[int, list[tuple[int, bytes]]] = {}
    for k in range(20):  # a 240-sample packet every 30 ms, i.e. at ticks 0, 1.5, 3, ...
        sched.setdefault((3 * k + 1) // 2, []).append((LEFT, pcm_frame(5, 240)))
    for _ in range(35):
        pass
    out = []
    for n in range(36):
        for side, data in sched.get(n, []):
            al.push(side, data)
        out.append(split(al.tick())[0])
    samples = [v for frame in out for v in frame]
    assert al.sides[LEFT].underruns == 0
    start = samples.index(5)
    assert samples[start:start + 4800] == [5] * 4800


def test_prompt_mixed_on_the_side_heard() -> None:
    al = StereoAligner(prefill_frames=1)
    for n in range(6):
        al.push(RIGHT, pcm_frame(1000))
        if n < 3:
            al.push_prompt(LEFT, pcm_frame(300))
        if n == 1:
            al.push(LEFT, pcm_frame(20))
        left, right = split(al.tick())
        assert right == [1000] * 160
        assert left == [300 + (20 if n == 1 else 0)] * 160 if n < 3 else left == [0] * 160


def test_burst_after_stall_cut_to_prefill_and_counted() -> None:
    al = StereoAligner(max_buffer_frames=10)
    for i in range(25):
        al.push(LEFT, pcm_frame(i + 1))
    assert split(al.tick())[0][0] == 24
    assert al.sides[LEFT].dropped_samples == 23 * 160
    assert split(al.tick())[0][0] == 25


def test_mix_saturates() -> None:
    a = struct.pack("<3h", 30000, -30000, 5)
    b = struct.pack("<3h", 10000, -10000, 6)
    assert struct.unpack("<3h", mix(a, b)) == (32767, -32768, 11)
    assert mix(bytes(6), b) == b and mix(a, bytes(6)) == a


# -- recorder --------------------------------------------------------------------------------------

def make(tmp_path: Path, **kwargs) -> tuple[StereoRecorder, DiskWriter]:
    writer = DiskWriter(start=False)
    return StereoRecorder(tmp_path / "rec" / "call.wav", writer=writer, **kwargs), writer


def test_recorder_writes_aligned_stereo_and_seals(tmp_path: Path) -> None:
    rec, writer = make(tmp_path)
    hp = g711.encode(pcm_frame(1200), "PCMA")
    op = g711.encode(pcm_frame(-800), "PCMU")
    for n in range(100):
        if n < 60:
            rec.push(LEFT, hp, "PCMA")
        if n >= 40:
            rec.push(RIGHT, op, "PCMU")
        rec.tick()
        if n % 7 == 0:
            writer.run_pending()
    future = rec.seal_start()
    writer.run_pending()
    digest = future.result(0)
    data = rec.path.read_bytes()
    assert digest == hashlib.sha256(data).hexdigest()
    assert rec.size == len(data)  # what the record links without a stat() on the event loop
    assert Path(f"{rec.path}.sha256").read_text() == f"{digest}  call.wav\n"
    with wave.open(str(rec.path)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 8000, 2)
        frames = w.readframes(w.getnframes())
    left, right = split(frames)
    assert len(left) == 160 * rec.aligner.frames >= 100 * 160
    per_tick_left = [left[i * 160] for i in range(100)]
    per_tick_right = [right[i * 160] for i in range(100)]
    dl, dr = g711.alaw_to_linear(hp[0]), g711.ulaw_to_linear(op[0])
    # one tick of prefill delay on both sides, so the two stay aligned with each other
    assert per_tick_left == [0] + [dl] * 60 + [0] * 39
    assert per_tick_right == [0] * 41 + [dr] * 59


def test_header_patched_every_second_so_a_crash_is_readable_then_repairable(tmp_path: Path) -> None:
    rec, writer = make(tmp_path)
    for _ in range(75):
        rec.push(LEFT, b"\x00" * 160, "PCMU")
        rec.tick()
        writer.run_pending()
    rec._file.close()  # the process dies here: no seal
    with wave.open(str(rec.path)) as w:
        assert w.getnframes() == 50 * 160  # valid up to the last patch
    assert repair_wav(rec.path) == 75 * 640
    with wave.open(str(rec.path)) as w:
        assert w.getnframes() == 75 * 160


def test_slow_disk_drops_to_disk_loudly_and_keeps_the_timeline(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    drops = []
    rec, writer = make(tmp_path, max_pending_frames=5, on_dropped=lambda r, n: drops.append(n))
    writer.run_pending()  # open
    for _ in range(12):  # the disk writer is stuck: nothing is written
        rec.tick()
    assert rec.frames_dropped == 7 and drops == list(range(1, 8))
    assert "dropped to disk" in caplog.text
    writer.run_pending()  # the disk catches up
    rec.tick()
    writer.run_pending()
    rec.seal_start()
    writer.run_pending()
    with wave.open(str(rec.path)) as w:
        assert w.getnframes() == 13 * 160  # the 7 dropped frames are back as silence


def test_own_writer_thread_seal(tmp_path: Path) -> None:
    rec = StereoRecorder(tmp_path / "solo.wav")
    for _ in range(10):
        rec.push(RIGHT, b"\x10" * 160, "PCMU")
        rec.tick()
    digest = rec.seal(timeout=10)
    assert digest == hashlib.sha256((tmp_path / "solo.wav").read_bytes()).hexdigest()
    rec.writer.close()
    assert rec.writer._thread is not None and not rec.writer._thread.is_alive()


def test_codec_change_mid_call_keeps_queued_audio_and_decodes_each_law(tmp_path: Path) -> None:
    """A re-INVITE may switch a side from PCMU to PCMA: audio queued before the switch is still written
    as what was sent (re-coded once), audio after it is decoded as A-law."""
    rec, writer = make(tmp_path)
    mu = g711.encode(pcm_frame(1000), "PCMU")
    a = g711.encode(pcm_frame(-3000), "PCMA")
    rec.push(LEFT, mu, "PCMU")
    rec.push(LEFT, mu, "PCMU")  # two frames queued (prefill), none played yet
    rec.push(LEFT, a, "PCMA")
    for _ in range(4):
        rec.tick()
    rec.seal_start()
    writer.run_pending()
    with wave.open(str(rec.path)) as w:
        left, right = split(w.readframes(w.getnframes()))
    per_tick = [left[i * 160] for i in range(4)]
    mu_value = g711.ulaw_to_linear(mu[0])
    for value in per_tick[:2]:  # queued mu-law re-coded to A-law once: within one quantisation step
        assert value != 0 and abs(value - mu_value) <= abs(mu_value) // 16
    assert per_tick[2] == g711.alaw_to_linear(a[0])
    assert per_tick[3] == 0 and set(right) == {0}  # nothing more sent: digital zero, not A-law's +8


@pytest.fixture(params=["c-batch", "python"])
def write_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both disk-writer paths: the C batch (write_batch) and the pure-Python fallback."""
    if request.param == "python":
        monkeypatch.setattr(ports, "_WRITE_BATCH", None)
    elif ports._WRITE_BATCH is None:
        pytest.skip("C extension not built")
    return request.param


def test_failed_write_keeps_channels_aligned_timeline_true_and_is_counted(
        tmp_path: Path, write_path: str, caplog: pytest.LogCaptureFixture) -> None:
    """A disk that fills up mid-write (a partial write, then EFBIG, like ENOSPC) and is freed later: the
    frames after it stay left = help point, right = operator at their true time, the lost ones are
    silence, and the loss is logged and counted in ``frames_dropped`` once sealed."""
    rec, writer = make(tmp_path)
    hp = g711.encode(pcm_frame(1200), "PCMU")
    op = g711.encode(pcm_frame(-800), "PCMU")

    def ticks(n: int) -> None:
        for _ in range(n):
            rec.push(LEFT, hp, "PCMU")
            rec.push(RIGHT, op, "PCMU")
            rec.tick()

    writer.run_pending()  # open
    ticks(10)
    writer.run_pending()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # The file may grow 322 bytes more: half a stereo frame, not a multiple of the 4-byte sample frame.
    resource.setrlimit(resource.RLIMIT_FSIZE, (44 + 10 * 640 + 322, hard))
    try:
        ticks(10)
        writer.run_pending()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert "write failed" in caplog.text
    ticks(10)  # the disk has room again
    writer.run_pending()
    rec.seal_start()
    writer.run_pending()
    data = rec.path.read_bytes()
    assert rec.sha256 == hashlib.sha256(data).hexdigest()
    with wave.open(str(rec.path)) as w:
        assert w.getnframes() == 160 * rec.aligner.frames  # the file's length is the call's length
        left, right = split(w.readframes(w.getnframes()))
    dl, dr = g711.ulaw_to_linear(hp[0]), g711.ulaw_to_linear(op[0])
    per_tick = [(left[i * 160], right[i * 160]) for i in range(rec.aligner.frames)]
    assert per_tick[1:10] == [(dl, dr)] * 9
    assert per_tick[11:20] == [(0, 0)] * 9  # lost to the full disk: silence where it belongs
    assert per_tick[20:30] == [(dl, dr)] * 10  # after it: still aligned, each side on its own channel
    assert rec.frames_dropped >= 9  # counted with the other audio lost to the disk


def test_wav_size_limit_stops_the_recording_not_the_writer(tmp_path: Path, write_path: str,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """A call of ~37 h reaches what a RIFF header can describe (4 GiB): the header sizes stay valid, the
    audio past it is counted and logged, and the disk-writer thread (every call's recordings) carries on."""
    assert StereoRecorder.MAX_DATA_BYTES % 640 == 0 and 36 + StereoRecorder.MAX_DATA_BYTES <= 0xFFFFFFFF
    rec, writer = make(tmp_path)
    other = StereoRecorder(tmp_path / "other.wav", writer=writer)
    writer.run_pending()  # open
    rec._data_bytes = StereoRecorder.MAX_DATA_BYTES - 3 * 640  # 37 h of audio so far (by hand)
    rec._since_patch = StereoRecorder.PATCH_EVERY - 1  # a size patch is due
    for _ in range(10):
        rec.tick()
        other.tick()
    writer.run_pending()  # raised struct.error here (and killed the writer thread) before
    assert rec._data_bytes == StereoRecorder.MAX_DATA_BYTES
    riff_size, = struct.unpack("<I", rec.path.read_bytes()[4:8])
    assert riff_size == 36 + StereoRecorder.MAX_DATA_BYTES
    assert rec.frames_failed == 7 and "size limit" in caplog.text
    assert other.frames_written == 10


def test_repair_of_a_file_past_the_riff_limit_keeps_every_byte(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    path.write_bytes(wav_header(0))
    os.truncate(path, (5 << 30) + 3)  # sparse: 5 GiB of data after a crash, no size patched
    data_bytes = repair_wav(path)
    assert data_bytes == 0xFFFFFFFF - 36 - (0xFFFFFFFF - 36) % 4
    with open(path, "rb") as f:
        head = f.read(44)
    assert struct.unpack_from("<I", head, 4)[0] == 36 + data_bytes
    assert struct.unpack_from("<I", head, 40)[0] == data_bytes
    assert os.path.getsize(path) == (5 << 30) + 3  # evidence is never cut


@pytest.mark.parametrize("thread", [True, False], ids=["writer-thread", "by-hand"])
def test_writer_closed_mid_call_leaves_a_complete_valid_file(tmp_path: Path, thread: bool) -> None:
    """Shutdown with a call still recording (the drain timed out): the writer stops, but what was queued
    is written and the header patched, so nothing depends on a repair; the file is left unsealed (no
    .sha256) for the start-up recovery to hash and link, and a late seal does not wait forever."""
    writer = DiskWriter(start=thread)
    rec = StereoRecorder(tmp_path / "live.wav", writer=writer)
    for _ in range(30):  # less than a batch: nothing written yet by the thread
        rec.push(LEFT, b"\x10" * 160, "PCMU")
        rec.tick()
    writer.close()
    with wave.open(str(rec.path)) as w:
        assert w.getnframes() == 30 * 160
    assert not Path(f"{rec.path}.sha256").exists()
    with pytest.raises(MediaError, match="live.wav"):
        rec.seal_start().result(0)


@pytest.mark.parametrize("step", ["open", "write", "seal"])
def test_a_recorder_that_raises_fails_alone_and_the_writer_goes_on(
        tmp_path: Path, write_path: str, step: str, caplog: pytest.LogCaptureFixture) -> None:
    """A bug that raises for one recording (not a disk error: those the recorder counts itself) must not stop
    the one disk-writer thread every call's evidence goes through: that recording fails (its seal gives the
    error, so gateway_recordings_failed_total counts it), every other recording is written and sealed."""
    writer = DiskWriter(start=False)
    bad = StereoRecorder(tmp_path / "bad.wav", writer=writer)
    good = StereoRecorder(tmp_path / "good.wav", writer=writer)

    def boom(*args: object) -> None:
        raise RuntimeError("bug")

    if step == "open":
        bad._open = boom  # type: ignore[method-assign]
    writer.run_pending()
    if step == "write":
        bad._take_queued = boom  # type: ignore[method-assign]
        bad._write_queued = boom  # type: ignore[method-assign]
    for _ in range(30):
        for rec in (bad, good):
            rec.push(LEFT, b"\x10" * 160, "PCMU")
            rec.tick()
        writer.run_pending(batch_frames=5)
    if step == "seal":
        bad._seal = boom  # type: ignore[method-assign]
    futures = [bad.seal_start(), good.seal_start()]
    writer.run_pending()
    with pytest.raises(MediaError, match="bad.wav"):
        futures[0].result(0)
    assert futures[1].result(0) == hashlib.sha256((tmp_path / "good.wav").read_bytes()).hexdigest()
    with wave.open(str(tmp_path / "good.wav")) as w:
        assert w.getnframes() == good.aligner.frames * 160
    assert writer.errors == 1 and f"bad.wav: {step} failed" in caplog.text
    assert bad._file is None  # closed, not leaked


def test_writer_thread_survives_an_unexpected_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The thread's last guard: even an error outside any one recording is logged and the thread goes on."""
    writer = DiskWriter(poll_interval=0.01)
    calls = []
    real = writer.run_pending

    def flaky(**kwargs: object) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("bug")
        return real(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(writer, "run_pending", flaky)
    rec = StereoRecorder(tmp_path / "after.wav", writer=writer)
    for _ in range(5):
        rec.tick()
    assert rec.seal_start().result(timeout=10) == hashlib.sha256((tmp_path / "after.wav").read_bytes()).hexdigest()
    writer.close()
    assert writer.errors == 1


def test_seal_file_is_written_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The .sha256 beside a recording goes through a temporary file, fsync and rename: a crash can leave no
    .sha256 (start-up recovery then seals the file) but never an empty or partial one, which recovery would
    take as sealed."""
    renamed: list[tuple[str, str]] = []
    synced: list[int] = []
    real_replace, real_fsync = os.replace, os.fsync
    monkeypatch.setattr(ports.os, "replace", lambda a, b: (renamed.append((str(a), str(b))), real_replace(a, b)))
    monkeypatch.setattr(ports.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    rec, writer = make(tmp_path)
    rec.tick()
    digest = rec.seal_start()
    writer.run_pending()
    sealed = f"{rec.path}.sha256"
    assert renamed == [(f"{sealed}.tmp", sealed)]
    assert Path(sealed).read_text() == f"{digest.result(0)}  call.wav\n"
    assert not Path(f"{sealed}.tmp").exists()
    assert len(synced) >= 3  # the recording, the .sha256 before its rename, and the folder after it


@pytest.mark.skipif(ports._SYNCFS is None, reason="no syncfs (not Linux/glibc): recordings are fsync'd one by one")
@pytest.mark.parametrize("file_calls", ["C", "C-long-recordings", "Python"])
def test_shared_writer_seals_in_batches_with_two_filesystem_syncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 file_calls: str) -> None:
    """The engine's writer seals the recordings that end together in one batch: two syncfs in all (the
    files and their .sha256, then the renames) instead of three fsyncs each, so a busy gateway's recordings
    are sealed as fast as they end; every seal still gives the file's real SHA-256 and its .sha256.  The same
    with the files created, read back and sealed by the C module (one GIL release per step), by it for files
    too long to read back whole (hashed in 1 MiB reads then), and by Python alone."""
    if file_calls == "Python":
        for name in ("_CREATE_FILE", "_SEAL_READ"):
            monkeypatch.setattr(ports, name, None)
    elif ports._SEAL_READ is None:
        pytest.skip("the C module is not built")
    elif file_calls == "C-long-recordings":
        monkeypatch.setattr(ports, "_SEAL_READ_MAX", 100)
    syncs: list[Path] = []
    batches: list[int] = []
    fsyncs: list[int] = []
    real_sync, real_batch, real_fsync = ports._sync_filesystem, DiskWriter._seal_batch, os.fsync
    monkeypatch.setattr(ports, "_sync_filesystem", lambda folder: (syncs.append(folder), real_sync(folder)))
    monkeypatch.setattr(DiskWriter, "_seal_batch",
                        lambda self, recs: (batches.append(len(recs)), real_batch(self, recs)))
    monkeypatch.setattr(ports.os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd)))
    open_fds = len(os.listdir("/proc/self/fd"))
    writer = DiskWriter(poll_interval=0.01)
    recs = [StereoRecorder(tmp_path / f"r{i}.wav", writer=writer) for i in range(40)]
    for rec in recs:
        for n in range(3):
            rec.push(LEFT, bytes([0x10 + n]) * 160, "PCMU")
            rec.tick()
    futures = [rec.seal_start() for rec in recs]
    for future in futures:
        future.result(timeout=10)
    writer.close()
    for rec, future in zip(recs, futures, strict=True):
        digest = hashlib.sha256(rec.path.read_bytes()).hexdigest()
        assert future.result(0) == digest
        assert Path(f"{rec.path}.sha256").read_text() == f"{digest}  {rec.path.name}\n"
        with wave.open(str(rec.path)) as w:
            assert w.getnframes() == rec.aligner.frames * 160 > 0
    assert not list(tmp_path.glob("*.tmp"))
    assert sum(batches) == 40 and len(syncs) == 2 * len(batches) and fsyncs == []
    assert len(os.listdir("/proc/self/fd")) == open_fds  # every recording's file closed once


@pytest.mark.skipif(ports._SYNCFS is None, reason="no syncfs: no batched seals")
def test_a_seal_that_raises_in_a_batch_fails_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    writer = DiskWriter(poll_interval=0.01)
    bad = StereoRecorder(tmp_path / "bad.wav", writer=writer)
    good = StereoRecorder(tmp_path / "good.wav", writer=writer)

    def boom(*args: object) -> None:
        raise RuntimeError("bug")

    bad._seal_stage = boom  # type: ignore[method-assign]
    for rec in (bad, good):
        rec.push(LEFT, b"\x10" * 160, "PCMU")
        rec.tick()
    futures = [bad.seal_start(), good.seal_start()]
    with pytest.raises(MediaError, match="bad.wav"):
        futures[0].result(timeout=10)
    assert futures[1].result(timeout=10) == hashlib.sha256((tmp_path / "good.wav").read_bytes()).hexdigest()
    writer.close()
    assert writer.errors == 1 and "bad.wav: seal failed" in caplog.text
    assert bad._file is None


@pytest.mark.skipif(ports._SYNCFS is None, reason="no syncfs: no batched seals")
def test_a_failed_filesystem_sync_fails_the_batch_and_the_writer_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk could not make the batch durable: every seal of it fails (gateway_recordings_failed_total;
    start-up recovery hashes and links the files), no .sha256 claims a seal, and later recordings seal."""
    fail = [True]
    real_sync = ports._sync_filesystem

    def sync(folder: Path) -> None:
        if fail[0]:
            raise OSError(5, "Input/output error")
        real_sync(folder)

    monkeypatch.setattr(ports, "_sync_filesystem", sync)
    writer = DiskWriter(poll_interval=0.01)
    first = [StereoRecorder(tmp_path / f"a{i}.wav", writer=writer) for i in range(3)]
    for rec in first:
        rec.tick()
    for future in [rec.seal_start() for rec in first]:
        with pytest.raises(MediaError, match="cannot seal recording"):
            future.result(timeout=10)
    assert not list(tmp_path.glob("a*.wav.sha256"))
    fail[0] = False
    later = StereoRecorder(tmp_path / "later.wav", writer=writer)
    later.tick()
    assert later.seal_start().result(timeout=10) == hashlib.sha256((tmp_path / "later.wav").read_bytes()).hexdigest()
    writer.close()


@pytest.mark.skipif(not Path("/proc/self/task").is_dir() or ports._PRCTL is None, reason="Linux only")
def test_writer_and_journal_threads_are_named_for_top_and_perf(tmp_path: Path) -> None:
    """Ops tell the gateway's threads apart in ``top -H``/``ps -L``/``perf`` by their kernel names."""
    from gateway.calls.journal import SummaryLog

    def native_names() -> set[str]:
        return {(task / "comm").read_text().strip() for task in Path("/proc/self/task").iterdir()}

    writer = DiskWriter()
    journal = SummaryLog(tmp_path / "activations.jsonl")
    try:
        journal.append({"id": "a1"})  # the executor starts its thread (and names it) on the first job
        journal._thread.submit(lambda: None).result(10)
        deadline = time.monotonic() + 10  # the writer thread names itself first thing, but asynchronously
        while not {"gw-disk-writer", "gw-journal"} <= (names := native_names()) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert {"gw-disk-writer", "gw-journal"} <= names, names
    finally:
        journal.close()
        writer.close()
