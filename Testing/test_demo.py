"""The demo command runs end to end on the real MNI152 volume and writes labelmap, report and picture."""

import json

import SimpleITK as sitk

from TextSegmentLib.cli.main import main
from TextSegmentLib.demo import demo_volume


def test_demo_writes_labelmap_report_and_png(tiny_bundle, tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["demo", "--model", str(tiny_bundle), "--device", "cpu", "--output", str(out), "--prompt", "brain"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "brain" in printed and "segments.png" in printed
    labelmap = sitk.ReadImage(str(out / "segments.nii.gz"))
    source = sitk.ReadImage(str(demo_volume()))
    assert labelmap.GetSize() == source.GetSize() and labelmap.GetOrigin() == source.GetOrigin()
    report = json.loads((out / "segments.nii.gz.json").read_text())
    assert report["segments"][0]["prompt"] == "brain"
    assert (out / "segments.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_with_missing_model_exits_2(tmp_path, capsys):
    code = main(["demo", "--model", str(tmp_path / "nope"), "--output", str(tmp_path / "o")])
    assert code == 2
    assert "nope" in capsys.readouterr().err
