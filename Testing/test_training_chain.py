"""The training chain on a small real case: prepare -> train (loss goes down) -> evaluate -> export -> the bundle
loads and segments a volume through the engine; resuming gives the same state as an uninterrupted run."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # training/ is a folder of the repository, not installed

import copy  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("monai")
pytest.importorskip("yaml")
sitk = pytest.importorskip("SimpleITK")

TEMPLATES = Path("/usr/share/mricron/templates")
pytestmark = pytest.mark.skipif(not (TEMPLATES / "aal.nii.gz").exists(), reason="mricron-data is not installed")
TINY = {"image_size": 64, "embed_dim": 32, "decoder_heads": 4, "decoder_mlp_dim": 64}


def _crop(src: Path, dst: Path, k0: int = 56, k1: int = 68) -> str:
    img = sitk.ReadImage(str(src))
    sitk.WriteImage(img[:, :, k0:k1], str(dst))  # axial slab around the hippocampi and thalami, real geometry
    return str(dst)


def make_config(tmp: Path) -> dict:
    """A tiny config: a 12-slice slab of Colin27 with 4 AAL structures and the brain."""
    data = tmp / "data"
    data.mkdir(exist_ok=True)
    image = _crop(TEMPLATES / "ch2.nii.gz", data / "t1.nii.gz")
    labels = _crop(TEMPLATES / "aal.nii.gz", data / "aal.nii.gz")
    brain = _crop(TEMPLATES / "ch2bet.nii.gz", data / "bet.nii.gz")
    table = data / "aal.txt"
    table.write_text("37 Hippocampus_L\n38 Hippocampus_R\n77 Thalamus_L\n78 Thalamus_R\n")
    case = {
        "id": "colin_slab",
        "image": image,
        "modality": "MR",
        "synth": True,
        "layers": {"aal": {"path": labels}, "brain": {"path": brain, "threshold": 0, "fill_holes": True}},
    }
    return {
        "name": "tiny-test",
        "version": "0.0.1",
        "prepare": {
            "cache": str(tmp / "cache"),
            "image_size": 64,
            "min_pixels": 6,
            "cases": [case],
            "structures": [
                {"table": True, "layer": "aal", "names_table": str(table), "names": "aal.yaml", "region": "brain"},
                {"name": "brain", "layer": "brain", "values": [1], "region": "brain", "laterality": "bilateral"},
            ],
        },
        "model": dict(TINY),
        "train": {
            "seed": 1,
            "steps": 30,
            "batch_size": 4,
            "lr": 2e-3,
            "warmup": 0.1,
            "threads": 1,
            "workers": 0,
            "intent_weight": 0.1,
            "log_every": 1,
            "checkpoint_every": 1000,
            "val_every": 1000,
            "val_per_structure": 1,
            "data": {
                "prompts_per_structure": 4,
                "p_spatial": 0.1,
                "spatial_min_structures": 2,
                "structure_weights": {"brain": 3},
            },
        },
        "evaluate": {"cases": [dict(case, id="colin_slab_eval")], "absent": ["liver"]},
        "export": {"description": "test model"},
    }


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from training.prepare import prepare

    tmp = tmp_path_factory.mktemp("chain")
    cfg = make_config(tmp)
    cache = prepare(cfg)
    return tmp, cfg, cache


def test_prepare_writes_checked_cache(prepared):
    _, cfg, cache = prepared
    manifest = json.loads((cache / "manifest.json").read_text())
    names = [s["name"] for s in manifest["structures"]]
    assert names == ["left hippocampus", "right hippocampus", "left thalamus", "right thalamus", "brain"]
    case = manifest["cases"][0]
    counts = np.load(cache / case["id"] / "counts.npy")
    image = np.load(cache / case["id"] / "image_mr.npy")
    assert image.shape == (12, 64, 64) and image.dtype == np.uint8 and image.max() > 200
    assert (cache / case["id"] / "preview.png").stat().st_size > 1000
    assert (counts >= 0).all() and (counts[:, 4] > 0).all()
    # left structures lie on the patient's left: high columns of a canonical (LPS) axial slice
    layer = np.load(cache / case["id"] / "layer_aal.npy")
    assert np.nonzero(layer == 37)[2].mean() > 32 > np.nonzero(layer == 38)[2].mean()


def test_prepare_refuses_broken_case(tmp_path):
    from training.prepare import CaseError, prepare

    cfg = make_config(tmp_path)
    const = tmp_path / "const.nii.gz"
    sitk.WriteImage(sitk.Image(8, 8, 4, sitk.sitkFloat32), str(const))
    cfg["prepare"]["cases"][0]["image"] = str(const)
    cfg["prepare"]["cases"][0]["layers"] = {"aal": {"path": str(const)}}
    with pytest.raises(CaseError, match="constant"):
        prepare(cfg)
    from training.prepare import check_cases

    assert "constant" in check_cases(cfg)[0]["error"]
    report = check_cases(make_config(tmp_path))[0]
    assert "error" not in report and report["shape"] == [12, 217, 181] and report["labels"]["brain"] == 1


def test_chain_train_evaluate_export_segment(prepared):
    from training.evaluate import evaluate
    from training.export import export, load_trained_model
    from training.train import train

    tmp, cfg, _ = prepared
    run = train(cfg, tmp / "run", "cpu")
    import csv

    rows = list(csv.DictReader(open(run / "log.csv")))
    assert int(rows[-1]["step"]) == 30
    losses = [float(r["total"]) for r in rows]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]), losses

    model, step = load_trained_model(cfg, run)
    assert step == 30
    metrics = evaluate(model, cfg, tmp / "eval", max_slices=3)
    assert (tmp / "eval" / "slice_results.csv").is_file() and (tmp / "eval" / "summary.md").is_file()
    assert (tmp / "eval" / "dice_boxplot.png").is_file()
    assert 0.0 <= metrics["overall"]["slice_dice"] <= 1.0
    assert "liver (MR)" in metrics["volume"]

    res = export(cfg, run, tmp / "export" / "tiny", metrics, url="https://example.org/tiny.zip", timings=False)
    from TextSegmentLib.checkpoint import load_bundle
    from TextSegmentLib.engine import Segmenter

    bundle = load_bundle(res["bundle"])
    card = bundle.card
    assert card["weights_dtype"] == "float16"
    left = next(v for v in card["vocabulary"] if v["name"] == "left hippocampus")
    assert left["laterality"] == "left" and "HIP L" in left["synonyms"]
    assert card["metrics"]["overall"] == metrics["overall"]
    assert res["entry"]["id"] == "tiny-test-v0.0.1" and len(res["entry"]["sha256"]) == 64
    from TextSegmentLib.catalog.catalog import load_catalog
    from TextSegmentLib.catalog.publish import add_to_catalog

    add_to_catalog(tmp / "models.json", res["entry"])  # the entry passes the catalog's own checks (schema)
    assert [m.id for m in load_catalog(tmp / "models.json")] == ["tiny-test-v0.0.1"]
    result = Segmenter(model=bundle, device="cpu").segment(cfg["prepare"]["cases"][0]["image"], ["brain"])
    assert result.labelmap.GetSize() == (181, 217, 12)


def test_warm_start_continues_from_a_bundle_and_the_card_says_so(prepared):
    """``train(init=bundle)`` starts from the bundle's weights (a step 0 run equals them, to fp16) and the export
    records the bundle in the card's ``training_data.warm_start``."""
    from training.export import export
    from training.train import train

    tmp, cfg, _ = prepared
    cfg = copy.deepcopy(cfg)
    cfg["train"]["steps"] = 2
    first = train(cfg, tmp / "first", "cpu")
    bundle = export(cfg, first, tmp / "export" / "first", timings=False)["bundle"]
    again = train(cfg, tmp / "again", "cpu", init=Path(bundle), stop_after=0)
    start = torch.load(again / "checkpoint.pt", weights_only=False)["model"]
    trained = torch.load(first / "checkpoint.pt", weights_only=False)["model"]
    for k in trained:  # the bundle holds the first run's last weights in fp16
        assert torch.allclose(start[k].float(), trained[k].float(), atol=2e-3, rtol=2e-3), k
    assert json.loads((again / "warm_start.json").read_text())["bundle"] == "tiny-test-v0.0.1"
    train(cfg, tmp / "again", "cpu", init=Path(bundle))
    card = json.loads(
        (Path(export(cfg, again, tmp / "export" / "again", timings=False)["bundle"]) / "model.json").read_text()
    )
    assert card["training_data"]["warm_start"] == {"bundle": "tiny-test-v0.0.1", "steps": 2}


def test_resume_equals_uninterrupted(prepared):
    from training.train import train

    tmp, cfg, _ = prepared
    cfg = copy.deepcopy(cfg)
    cfg["train"]["steps"] = 8
    train(cfg, tmp / "full", "cpu")
    train(cfg, tmp / "parts", "cpu", stop_after=4)
    assert torch.load(tmp / "parts" / "checkpoint.pt", weights_only=False)["step"] == 4
    train(cfg, tmp / "parts", "cpu")
    a = torch.load(tmp / "full" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp / "parts" / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] == 8
    for k in a["model"]:
        assert torch.allclose(a["model"][k].float(), b["model"][k].float(), atol=1e-6), k
    assert torch.equal(a["extra"]["intent"]["weight"], b["extra"]["intent"]["weight"])  # training-only head too
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert all(torch.allclose(sa[i]["exp_avg"], sb[i]["exp_avg"], atol=1e-6) for i in sa)


def test_torchrun_two_processes_match_one(prepared):
    """Two CPU processes (gloo) with half the batch each give the weights of one process with the whole batch."""
    import os
    import subprocess
    import sys

    import yaml

    tmp, cfg, _ = prepared
    cfg = copy.deepcopy(cfg)
    cfg["train"].update(steps=4, batch_size=4, intent_weight=0.0)
    path = tmp / "ddp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    from training.train import train

    train(cfg, tmp / "single", "cpu")
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(root))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
        "-m",
        "training.train",
        "--config",
        str(path),
        "--out",
        str(tmp / "ddp"),
        "--device",
        "cpu",
    ]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, encoding="utf-8", errors="replace", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = torch.load(tmp / "single" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp / "ddp" / "checkpoint.pt", weights_only=False)["model"]
    # the first step's loss (before any update) is the same computation split over two processes
    import csv

    first = [float(next(csv.DictReader(open(tmp / d / "log.csv")))["total"]) for d in ("single", "ddp")]
    assert abs(first[0] - first[1]) < 1e-5, first
    # after 4 AdamW steps of lr 2e-3 (each moves a weight by up to ~2e-3), float summation order differences stay
    # an order of magnitude below one step
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst < 3e-4, worst


def test_mask_prompt_and_mixed_prompt_samples(prepared):
    """Mask prompts follow the sample's flip/augmentation; boxes enclose the target; points sit inside/outside it."""
    from training.data import SliceSampler

    _, cfg, cache = prepared
    sampler = SliceSampler(cache, cfg["train"]["data"])
    samples = [sampler.sample(i, with_prior=True) for i in range(40)]
    for s in samples:
        assert s.prior is not None and s.prior.shape == s.mask.shape
        assert set(np.unique(np.sign(s.prior))) <= {-1.0, 1.0}
        if s.present and s.structure == "brain":  # neighbouring slice or degraded mask: mostly overlaps the target
            inside = (s.prior > 0) & (s.mask > 0)
            assert inside.sum() > 0.5 * min((s.prior > 0).sum(), s.mask.sum())
        if s.box[0] >= 0:
            rows, cols = np.nonzero(s.mask)
            assert s.box[0] <= cols.min() + 0.2 * (np.ptp(cols) + 1) + 2
            assert s.box[2] >= cols.max() - 0.2 * (np.ptp(cols) + 1) - 2
        for (x, y), label in zip(s.points, s.labels):
            if label >= 0:
                assert s.mask[int(y), int(x)] == label
    assert all(s.prior is None for s in (sampler.sample(i) for i in range(5)))


def test_box_samples_can_get_a_prior_the_box_contradicts(prepared):
    """With p_box_contradiction, a box sample's prior spills out of the box; the target and box stay those of the
    same seed without it, and without the option the samples are unchanged."""
    from training.data import SliceSampler

    _, cfg, cache = prepared
    opts = dict(cfg["train"]["data"], prompt_modes={"text_box": 1.0}, p_spatial=0.0, neg_ratio=0.0)
    plain = SliceSampler(cache, opts)
    contra = SliceSampler(cache, dict(opts, p_box_contradiction=1.0))
    same = SliceSampler(cache, dict(opts, p_box_contradiction=0.0))
    spilled = 0
    for i in range(12):
        a, b, c = plain.sample(i, with_prior=True), contra.sample(i, with_prior=True), same.sample(i, with_prior=True)
        assert np.array_equal(a.prior, c.prior)  # the option off draws nothing: samples as before
        assert np.array_equal(a.mask, b.mask) and np.array_equal(a.box, b.box)
        if b.box[0] < 0:
            continue
        x0, y0, x1, y1 = (int(round(float(v))) for v in b.box)
        inside = np.zeros(b.mask.shape, bool)
        inside[y0 : y1 + 1, x0 : x1 + 1] = True
        assert ((b.prior > 0) & (b.mask > 0)).sum() == (b.mask > 0).sum()  # the prior covers the target
        spilled += int(((b.prior > 0) & ~inside).sum() > 0)
    assert spilled >= 6


def test_flip_keeps_left_prompts_on_the_patients_left(prepared):
    """With every sample flipped, 'left X' targets still lie on the patient's left (the partner's mirrored mask)."""
    from training.data import SliceSampler

    _, cfg, cache = prepared
    no_aug = {"p_flip": 1.0, "p_affine": 0, "p_elastic": 0, "p_synth": 0}
    flipped = SliceSampler(cache, {"augment": no_aug, "neg_ratio": 0, "p_spatial": 0})
    checked = 0
    for i in range(60):
        s = flipped.sample(i)
        side = s.structure.split(" ")[0]
        if side in ("left", "right") and s.present:
            cols = np.nonzero(s.mask)[1].mean()
            assert (cols > 32) if side == "left" else (cols < 32), (s.structure, cols)
            checked += 1
    assert checked >= 10


def test_other_planes_and_slice_context(tmp_path):
    """prepare can cache coronal slices; the sampler trains on them and gives 2.5D (k-1, k, k+1) channels."""
    from training.data import SliceSampler
    from training.prepare import prepare

    cfg = make_config(tmp_path)
    cfg["prepare"]["planes"] = ["axial", "coronal"]
    cache = prepare(cfg)
    manifest = json.loads((cache / "manifest.json").read_text())
    assert set(manifest["cases"][0]["planes"]) == {"axial", "coronal"}
    sampler = SliceSampler(cache, {"planes": ["coronal"], "augment": None}, slice_context=True)
    assert all(c.plane == "coronal" for c in sampler.cases)
    s = sampler.sample(0, augment=False)
    assert s.image.shape == (3, 64, 64) and not np.array_equal(s.image[0], s.image[2])


def test_disjoint_masks_can_be_dropped(prepared):
    """components.npy counts the pieces of each structure per slice; max_components: 1 drops split slices."""
    from training.data import SliceSampler

    _, _, cache = prepared
    parts = np.load(cache / "colin_slab" / "components.npy")
    counts = np.load(cache / "colin_slab" / "counts.npy")
    assert ((parts > 0) == (counts > 0)).all()
    every = SliceSampler(cache, {"augment": None})
    single = SliceSampler(cache, {"augment": None, "max_components": 1})
    for j, (cases, slices, _) in single.pos.items():
        assert all(single.cases[c].components[k, j] == 1 for c, k in zip(cases, slices))
        assert len(slices) <= len(every.pos[j][1])
