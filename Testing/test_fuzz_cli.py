"""``segment`` with the bad and unusual inputs a new user tries: every case must end with a clear message and exit 2
(bad input or options), 1 (a failed case) or a correct result, inputs byte-identical, nothing partial left behind,
files created with the user's umask. Small real volumes, the tiny real model, the CLI in this process where it can be.
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from fuzz_helpers import (
    SUBPROCESS_ENV,
    cli,
    digest,
    expected_dir_mode,
    expected_file_mode,
    mode,
    one_torch_thread,
    seg,
    small_volume,
    snapshot,
    temporary_files,
)

ROOT = Path(__file__).resolve().parents[1]
ENV = SUBPROCESS_ENV


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_torch_thread():
        yield


@pytest.fixture
def scan(tmp_path) -> Path:
    return small_volume(tmp_path / "in.nii.gz")


# --- 1. the input is never written ----------------------------------------------------------------------------------
def test_output_that_is_the_input_is_refused_by_path_and_by_identity(tiny_bundle, tmp_path, scan, capsys):
    os.link(scan, tmp_path / "hard.nii.gz")
    os.symlink(scan, tmp_path / "soft.nii.gz")
    (tmp_path / "sub").mkdir()
    before = snapshot(tmp_path)
    for output in (scan, tmp_path / "hard.nii.gz", tmp_path / "soft.nii.gz", tmp_path / "sub" / ".." / "in.nii.gz"):
        code, _, err = seg(capsys, tiny_bundle, scan, "--prompt", "brain", "--output", output, "--overwrite")
        assert code == 2 and "is the input" in err and "never written" in err, err
    assert snapshot(tmp_path) == before


def test_a_folder_into_itself_with_overwrite_is_refused(tiny_bundle, tmp_path, capsys):
    scans = tmp_path / "scans"
    small_volume(scans / "a.nii.gz")
    small_volume(scans / "b.nii.gz", seed=1)
    before = snapshot(scans)
    code, _, err = seg(capsys, tiny_bundle, scans, "--prompt", "brain", "--output", scans, "--overwrite")
    assert code == 2 and "is the input" in err
    assert snapshot(scans) == before
    # another format into the same folder writes new files and leaves the scans as they were
    code, _, err = seg(capsys, tiny_bundle, scans, "--prompt", "brain", "--output", scans, "--format", ".nrrd")
    assert code == 0, err
    after = snapshot(scans)
    assert {k: after[k] for k in before} == before and {"a.nrrd", "b.nrrd", "a.nrrd.json"} <= set(after)


# --- 3. a full disk leaves nothing that a later run would take for a result -------------------------------------------
FULL_DISK = """
import resource, sys
from TextSegmentLib.cli.main import main
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
sys.exit(main(sys.argv[2:]))
"""


def test_full_disk_leaves_no_output_and_a_rerun_redoes_it(tiny_bundle, tmp_path, capsys):
    # the labelmap (.nii, 16 kB) is larger than the file-size limit; its report (about 2 kB) is not: ITK's writer
    # then truncates the labelmap without an error, and only the read-back finds it
    big = small_volume(tmp_path / "big.nii.gz", shape=(16, 32, 32))
    out = tmp_path / "out" / "labels.nii"
    args = ["segment", big, "--prompt", "brain", "--output", out, "--model", tiny_bundle, "--device", "cpu"]
    proc = subprocess.run(
        [sys.executable, "-c", FULL_DISK, "8000", *map(str, args)],
        capture_output=True, encoding="utf-8", errors="replace", env=ENV, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "could not be written completely" in proc.stderr and str(out) in proc.stderr
    assert not out.exists() and not Path(str(out) + ".json").exists() and temporary_files(tmp_path) == []
    code, _, err = seg(capsys, tiny_bundle, big, "--prompt", "brain", "--output", out)
    assert code == 0 and "nothing to do" not in err
    assert sitk.ReadImage(str(out)).GetSize() == (32, 32, 16)


def test_a_damaged_output_is_not_taken_for_a_result(tiny_bundle, tmp_path, scan, capsys):
    out = tmp_path / "res" / "labels.nii.gz"
    assert seg(capsys, tiny_bundle, scan, "--prompt", "brain", "--output", out)[0] == 0
    out.write_bytes(out.read_bytes()[:-30])  # what a full disk used to leave
    code, _, err = seg(capsys, tiny_bundle, scan, "--prompt", "brain", "--output", out)
    assert code == 1 and "not complete" in err and "--overwrite" in err
    assert seg(capsys, tiny_bundle, scan, "--prompt", "brain", "--output", out, "--overwrite")[0] == 0
    sitk.ReadImage(str(out))


# --- 4. truncated inputs are refused, never zero-filled ---------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_a_truncated_input_is_refused(tiny_bundle, tmp_path, capsys, suffix):
    scan = small_volume(tmp_path / f"in{suffix}")
    data = scan.read_bytes()
    scan.write_bytes(data[: len(data) * 2 // 3])
    out = tmp_path / "res" / "labels.nii.gz"
    code, _, err = seg(capsys, tiny_bundle, scan, "--prompt", "brain", "--output", out)
    assert code == 2 and str(scan) in err and ("truncated" in err or "cut short" in err) and "again" in err, err
    assert not (tmp_path / "res").exists()


# --- 5. files honour the umask ----------------------------------------------------------------------------------------
def test_outputs_honour_the_umask_also_when_overwriting(tiny_bundle, tmp_path, scan, capsys):
    old = os.umask(0o027)
    try:
        out = tmp_path / "res" / "labels.nii.gz"
        assert seg(capsys, tiny_bundle, scan, "--prompt", "brain", "--output", out)[0] == 0
        assert (mode(out), mode(Path(str(out) + ".json")), mode(out.parent)) == (0o640, 0o640, 0o750)
    finally:
        os.umask(old)
    os.chmod(out, 0o600)
    assert seg(capsys, tiny_bundle, scan, "--prompt", "brain", "--output", out, "--overwrite")[0] == 0
    assert mode(out) == expected_file_mode() and mode(Path(str(out) + ".json")) == expected_file_mode()


# --- 6. overlapping prompts: nothing found is invisible ---------------------------------------------------------------
@pytest.mark.parametrize("overlap", ["smaller", "confident", "first"])
def test_report_says_what_each_label_shows(present_bundle, tmp_path, capsys, overlap):
    scan = small_volume(tmp_path / "in.nii.gz")
    out = tmp_path / "labels.nii.gz"
    prompts = ["--prompt", "brain", "--prompt", "left hippocampus", "--prompt", "lung"]
    code, _, err = seg(capsys, present_bundle, scan, *prompts, "--output", out, "--overlap", overlap)
    assert code == 0, err
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    report = json.loads(Path(str(out) + ".json").read_text())
    assert report["overlap"] == overlap
    for s in report["segments"]:
        assert s["visible_voxels"] == int((labels == s["label"]).sum()) <= s["voxels"]
        assert s["visible_ml"] == pytest.approx(s["visible_voxels"] * 1.2 * 1.0 * 2.0 / 1000, abs=1e-3)
        hidden = [w for w in report["warnings"] if w.startswith(f"'{s['prompt']}' (") and " hidden " in w]
        assert bool(hidden) == (s["visible_voxels"] < s["voxels"]) and all(w in s["warnings"] for w in hidden)
        if hidden:
            assert f"warning: {out}: {hidden[0]}" in err
    assert report["warnings"], "the three prompts overlap: some must be reported hidden"


def test_seg_nrrd_keeps_overlapping_segments_whole(present_bundle, tmp_path, capsys):
    scan = small_volume(tmp_path / "in.nii.gz")
    out = tmp_path / "labels.seg.nrrd"
    code, _, err = seg(
        capsys, present_bundle, scan, "--prompt", "brain", "--prompt", "left hippocampus", "--output", out
    )
    assert code == 0, err
    report = json.loads(Path(str(out) + ".json").read_text())
    assert report["overlap"] == "layers" and report["warnings"] == []
    assert all(s["visible_voxels"] == s["voxels"] > 0 for s in report["segments"])
    image = sitk.ReadImage(str(out))
    assert image.GetNumberOfComponentsPerPixel() == 2  # they overlap: two layers
    layers = sitk.GetArrayFromImage(image)
    layers = layers[..., None] if image.GetNumberOfComponentsPerPixel() == 1 else layers
    for i, s in enumerate(report["segments"]):
        layer = int(image.GetMetaData(f"Segment{i}_Layer"))
        assert int((layers[..., layer] == s["label"]).sum()) == s["voxels"]


# --- 7. bad options, jobs and outputs: refused before any computing ---------------------------------------------------
@pytest.mark.parametrize("window", ["nan,nan", "0,inf", "40,-5", "40,0", "a,b", "40"])
def test_bad_ct_windows_exit_2(tiny_bundle, tmp_path, scan, capsys, window):
    code, _, err = seg(
        capsys, tiny_bundle, scan, "--prompt", "x", "--output", tmp_path / "o.nii.gz", "--ct-window", window
    )
    assert code == 2 and "--ct-window" in err and not (tmp_path / "o.nii.gz").exists()


def test_an_existing_folder_or_a_non_labelmap_name_as_output_exits_2(tiny_bundle, tmp_path, scan, capsys):
    (tmp_path / "taken.nii.gz").mkdir()
    code, _, err = seg(capsys, tiny_bundle, scan, "--prompt", "x", "--output", tmp_path / "taken.nii.gz", "--overwrite")
    assert code == 2 and "existing folder" in err and (tmp_path / "taken.nii.gz").is_dir()
    code, _, err = seg(capsys, tiny_bundle, scan, "--prompt", "x", "--output", tmp_path / "labels.png")
    assert code == 2 and "must end in one of" in err
    (tmp_path / "afile").write_text("mine")
    code, _, err = seg(capsys, tiny_bundle, scan, "--prompt", "x", "--output", tmp_path / "afile" / "o.nii.gz")
    assert code == 2 and "is a file" in err and (tmp_path / "afile").read_text() == "mine"


def _without_root_override() -> None:
    """In the child, before exec: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, so that root obeys file modes."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def test_an_unwritable_output_folder_exits_2_before_computing(tiny_bundle, capsys):
    shared = Path(tempfile.mkdtemp(prefix="textsegment-ro-"))
    try:
        os.chmod(shared, 0o755)
        scan = small_volume(shared / "in.nii.gz")
        os.chmod(scan, 0o644)
        (shared / "ro").mkdir(mode=0o555)
        os.chmod(shared / "ro", 0o555)
        out = shared / "ro" / "sub" / "labels.nii.gz"
        args = ["segment", scan, "--prompt", "brain", "--output", out, "--model", tiny_bundle, "--device", "cpu"]
        if os.geteuid() == 0:  # root writes anywhere: run without the capability that lets it
            proc = subprocess.run(
                [sys.executable, "-m", "TextSegmentLib", *map(str, args)], preexec_fn=_without_root_override,
                capture_output=True, encoding="utf-8", errors="replace", timeout=300, env=ENV, cwd=str(ROOT),
            )  # fmt: skip
            code, err = proc.returncode, proc.stderr
        else:
            code, _, err = cli(capsys, *args)
        assert code == 2 and "cannot be written" in err and str(shared / "ro") in err, err
        assert sorted(p.name for p in shared.rglob("*")) == ["in.nii.gz", "ro"]
    finally:
        os.chmod(shared / "ro", 0o755)
        for p in sorted(shared.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
        shared.rmdir()


@pytest.mark.parametrize(
    "jobs, message",
    [
        ([{"input": "in.nii.gz", "prompts": 42, "output": "a.nii.gz"}], "'prompts' must be a text"),
        ([{"input": 5, "prompts": ["brain"], "output": "a.nii.gz"}], "'input' must be a file path"),
        ([{"input": "in.nii.gz", "prompts": ["brain"], "output": 7}], "'output' must be a file path"),
        ([{"input": "in.nii.gz", "prompts": [], "output": "a.nii.gz"}], "'prompts' must be a text"),
        ([{"input": "in.nii.gz", "prompts": ["bra\x1bin"], "output": "a.nii.gz"}], "control character"),
        ([{"input": "in.nii.gz", "promts": ["brain"], "output": "a.nii.gz"}], "unknown keys ['promts']"),
        (["in.nii.gz"], "must be an object"),
        ({"input": "in.nii.gz"}, "non-empty JSON list"),
        ([{"input": "in.nii.gz", "prompts": "brain", "output": "a.nii.gz"},
          {"input": "in.nii.gz", "prompts": "brain", "output": "a.png"}], "must end in one of"),
        ([{"input": "in.nii.gz", "prompts": "brain", "output": "a.nii.gz"},
          {"input": "in.nii.gz", "prompts": "lung", "output": "sub/../a.nii.gz"}], "both write"),
        ([{"input": "in.nii.gz", "prompts": "brain", "output": "b.nii.gz"},
          {"input": "b.nii.gz", "prompts": "lung", "output": "c.nii.gz"}], "does not exist"),
    ],
)  # fmt: skip
def test_bad_jobs_files_exit_2_and_nothing_is_computed(tiny_bundle, tmp_path, scan, capsys, jobs, message):
    (tmp_path / "sub").mkdir()
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    before = snapshot(tmp_path)
    code, _, err = seg(capsys, tiny_bundle, "--jobs", tmp_path / "jobs.json", "--overwrite")
    assert code == 2 and message in err and "Traceback" not in err, err
    assert snapshot(tmp_path) == before  # not even the first, valid job was run


def test_an_output_being_written_by_another_run_is_left_to_it(tiny_bundle, tmp_path, scan, capsys):
    out = tmp_path / "labels.nii.gz"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from TextSegmentLib.filelock import ExclusiveFile as L; l = L(sys.argv[1], "
         "'segmenting'); l.acquire(); print('held', flush=True); sys.stdin.read(); l.release()", str(out)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, encoding="utf-8", env=ENV,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        code, _, err = seg(capsys, tiny_bundle, scan, "--prompt", "brain", "--output", out, "--overwrite")
        assert code == 1 and "is being written by segmenting process" in err and not out.exists()
    finally:
        holder.stdin.close()
        holder.wait(30)
    assert not Path(str(out) + ".lock").exists()
    code, _, err = seg(capsys, tiny_bundle, scan, "--prompt", "brain", "--output", out)
    assert code == 0 and out.exists() and temporary_files(tmp_path) == []


def test_a_lock_left_by_a_killed_run_is_taken_over(tiny_bundle, tmp_path, scan, capsys):
    out = tmp_path / "labels.nii.gz"
    Path(str(out) + ".lock").write_text("segmenting process 999999 on a machine that crashed\n")
    code, _, err = seg(capsys, tiny_bundle, scan, "--prompt", "brain", "--output", out)
    assert code == 0 and out.exists() and temporary_files(tmp_path) == []


def test_a_fifo_as_input_is_refused_at_once(tiny_bundle, tmp_path, capsys):
    fifo = tmp_path / "scan.nii.gz"
    os.mkfifo(fifo)

    def rescue():  # if anything opened the FIFO for reading, give it an end so the test fails instead of hanging
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not done.is_set():
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                time.sleep(0.05)

    done = threading.Event()
    threading.Thread(target=rescue, daemon=True).start()
    start = time.monotonic()
    code, _, err = seg(capsys, tiny_bundle, fifo, "--prompt", "brain", "--output", tmp_path / "o.nii.gz")
    done.set()
    assert code == 2 and "is a FIFO" in err and time.monotonic() - start < 5
    os.mkfifo(tmp_path / "jobs.json")
    code, _, err = seg(capsys, tiny_bundle, "--jobs", tmp_path / "jobs.json", "--output", tmp_path / "o")
    assert code == 2 and "not a regular file" in err
    # inside a folder a FIFO is not a scan at all
    small_volume(tmp_path / "real.nii.gz")
    code, _, err = seg(capsys, tiny_bundle, tmp_path, "--prompt", "brain", "--output", tmp_path / "out")
    assert code == 0 and sorted(p.name for p in (tmp_path / "out").glob("*.nii.gz")) == ["real.nii.gz"]


def test_control_characters_in_prompts_exit_2(tiny_bundle, tmp_path, scan, capsys):
    code, _, err = seg(capsys, tiny_bundle, scan, "--prompt", "liver\x1b[2J", "--output", tmp_path / "o.seg.nrrd")
    assert code == 2 and "U+001B" in err and not (tmp_path / "o.seg.nrrd").exists()


def test_inputs_are_byte_identical_after_a_batch(tiny_bundle, tmp_path, capsys):
    scans = tmp_path / "scans"
    for n, suffix in enumerate([".nii.gz", ".nrrd", ".mha"]):
        small_volume(scans / f"c{n}{suffix}", seed=n)
    (scans / "notes.txt").write_text("not a scan")
    before = {p.name: digest(p) for p in scans.iterdir()}
    code, _, err = seg(capsys, tiny_bundle, scans, "--prompt", "brain", "--output", tmp_path / "out")
    assert code == 0 and "segmented 3, skipped 0, failed 0 of 3" in err
    assert {p.name: digest(p) for p in scans.iterdir()} == before
    assert all(mode(p) == expected_file_mode() for p in (tmp_path / "out").iterdir())
    assert mode(tmp_path / "out") == expected_dir_mode() and temporary_files(tmp_path) == []
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / "c1.nii.gz")))
    assert labels.shape == (8, 12, 10) and labels.dtype == np.uint8
