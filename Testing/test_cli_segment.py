"""``python -m TextSegmentLib segment``: single files, folders with a broken file, resume, shards, jobs, bad input."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from TextSegmentLib.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def volume(seed: int, shape=(4, 20, 24)) -> sitk.Image:
    rng = np.random.default_rng(seed)
    image = sitk.GetImageFromArray((rng.random(shape) * 100).astype(np.int16))
    image.SetSpacing((0.9, 1.1, 3.0))
    image.SetOrigin((5.0, -3.0, 12.0))
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    return image


@pytest.fixture()
def cases(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for n in range(4):
        sitk.WriteImage(volume(n), str(folder / f"case{n}.nii.gz"))
    return folder


def seg(bundle, *args) -> int:
    return main(["segment", *map(str, args), "--model", str(bundle), "--device", "cpu", "--no-progress"])


def test_single_file_output_geometry_and_report(tiny_bundle, cases, tmp_path, capsys):
    out = tmp_path / "out" / "labels.nrrd"
    assert seg(tiny_bundle, cases / "case0.nii.gz", "--prompt", "brain", "--prompt", "left lung", "--output", out) == 0
    labels, image = sitk.ReadImage(str(out)), sitk.ReadImage(str(cases / "case0.nii.gz"))
    assert labels.GetSize() == image.GetSize() and labels.GetSpacing() == image.GetSpacing()
    assert np.allclose(labels.GetOrigin(), image.GetOrigin()) and np.allclose(
        labels.GetDirection(), image.GetDirection()
    )
    report = json.loads(Path(str(out) + ".json").read_text())
    assert [s["prompt"] for s in report["segments"]] == ["brain", "left lung"]
    assert {"label", "found", "confidence", "volume_ml", "seconds", "matched"} <= set(report["segments"][1])
    assert "wrote" in capsys.readouterr().out
    # an existing output is kept unless --overwrite
    before = out.stat().st_mtime_ns
    assert seg(tiny_bundle, cases / "case0.nii.gz", "--prompt", "brain", "--output", out) == 0
    assert out.stat().st_mtime_ns == before
    assert seg(tiny_bundle, cases / "case0.nii.gz", "--prompt", "brain", "--output", out, "--overwrite") == 0
    assert out.stat().st_mtime_ns != before
    assert len(json.loads(Path(str(out) + ".json").read_text())["segments"]) == 1


@pytest.mark.parametrize(
    "make, args, message",
    [
        (lambda d: d / "missing.nii.gz", ["--prompt", "x"], "does not exist"),
        (lambda d: (d / "bad.nii.gz").write_bytes(b"garbage") and d / "bad.nii.gz", ["--prompt", "x"], "cannot read"),
        (lambda d: d / "case0.nii.gz", ["--prompt", "  "], "empty"),
        (lambda d: d / "case0.nii.gz", [], "no prompt"),
        (lambda d: d / "case0.nii.gz", ["--prompt", "x", "--model", "/no/such/model"], "does not exist"),
        (lambda d: d / "case0.nii.gz", ["--prompt", "x", "--shard", "3/2"], "shard"),
        (lambda d: d / "case0.nii.gz", ["--prompt", "x", "--ct-window", "bananas"], "ct-window"),
    ],
)
def test_bad_input_exit_2_nothing_written(tiny_bundle, cases, tmp_path, capsys, make, args, message):
    source = make(cases)
    out = tmp_path / "res" / "x.nii.gz"
    argv = ["segment", str(source), "--output", str(out), "--device", "cpu"]
    if "--model" not in args:
        argv += ["--model", str(tiny_bundle)]
    assert main(argv + args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "res").exists()


def test_constant_volume_exit_2(tiny_bundle, tmp_path, capsys):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 8, 8), np.int16)), str(tmp_path / "flat.nii.gz"))
    out = tmp_path / "flat_labels.nii.gz"
    assert seg(tiny_bundle, tmp_path / "flat.nii.gz", "--prompt", "x", "--output", out) == 2
    assert "constant" in capsys.readouterr().err and not out.exists()


def test_folder_batch_with_broken_file_then_resume(tiny_bundle, cases, tmp_path, capsys):
    (cases / "zbroken.nii.gz").write_bytes(b"not an image")
    out = tmp_path / "out"
    assert seg(tiny_bundle, cases, "--prompt", "brain", "--output", out, "--format", ".seg.nrrd") == 1
    err = capsys.readouterr().err
    assert "segmented 4, skipped 0, failed 1 of 5" in err and "zbroken" in err
    assert sorted(p.name for p in out.glob("*.seg.nrrd")) == [f"case{n}.seg.nrrd" for n in range(4)]
    (out / "case2.seg.nrrd").unlink()
    stamp = (out / "case1.seg.nrrd").stat().st_mtime_ns
    (cases / "zbroken.nii.gz").unlink()
    assert seg(tiny_bundle, cases, "--prompt", "brain", "--output", out, "--format", ".seg.nrrd") == 0
    assert "segmented 1, skipped 3" in capsys.readouterr().err
    assert (out / "case2.seg.nrrd").exists() and (out / "case1.seg.nrrd").stat().st_mtime_ns == stamp


def test_shards_partition_the_batch(tiny_bundle, cases, tmp_path):
    done = []
    for i in range(3):
        out = tmp_path / f"shard{i}"
        assert seg(tiny_bundle, cases, "--prompt", "brain", "--output", out, "--shard", f"{i}/3") == 0
        done.append(sorted(p.name for p in out.glob("*.nii.gz")))
    flat = sorted(n for names in done for n in names)
    assert flat == [f"case{n}.nii.gz" for n in range(4)] and all(done)


def test_jobs_file(tiny_bundle, cases, tmp_path):
    jobs = [
        {"input": "in/case0.nii.gz", "prompts": ["brain", "liver"], "output": "res/a.nrrd"},
        {"input": "in/case1.nii.gz", "prompts": "left lung"},
    ]
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    assert seg(tiny_bundle, "--jobs", tmp_path / "jobs.json", "--output", tmp_path / "rest") == 0
    assert len(json.loads((tmp_path / "res" / "a.nrrd.json").read_text())["segments"]) == 2
    assert (tmp_path / "rest" / "case1.nii.gz").exists()
    (tmp_path / "bad.json").write_text(json.dumps([{"input": "in/case0.nii.gz", "prompts": [""], "output": "x.nrrd"}]))
    assert seg(tiny_bundle, "--jobs", tmp_path / "bad.json") == 2


def test_module_entry_point(tiny_bundle, cases, tmp_path):
    out = tmp_path / "cli.nii.gz"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "TextSegmentLib",
            "segment",
            str(cases / "case3.nii.gz"),
            "--prompt",
            "brain",
            "--output",
            str(out),
            "--model",
            str(tiny_bundle),
            "--device",
            "cpu",
        ],
        cwd=ROOT,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.exists() and Path(str(out) + ".json").exists()


def test_the_table_shows_how_each_prompt_was_read(tiny_bundle, cases, tmp_path, capsys):
    out = tmp_path / "read.nii.gz"
    prompts = ["lung rt", "tumour", "the structure above the liver"]
    args = [a for p in prompts for a in ("--prompt", p)]
    assert seg(tiny_bundle, cases / "case0.nii.gz", *args, "--output", out) == 0
    printed = capsys.readouterr().out
    assert "read as" in printed.splitlines()[1]
    assert "lung; side right ('rt' read as right (abbreviation))" in printed
    assert "not segmented: this model segments anatomy, not tumour" in printed
    assert "spatial requests are not supported" in printed
    report = json.loads(Path(str(out) + ".json").read_text())
    assert [s["kind"] for s in report["segments"]] == ["structure", "finding", "unsupported"]
    assert report["segments"][0]["side_read"] == "'rt' read as right (abbreviation)"
