"""The bank of 3D variants and its sampler: canonical orientation, labels that move with the image, counts that
match the masks, side-free sagittal targets, left/right flips, synthesis, the full-head class map."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

pytest.importorskip("yaml")
pytest.importorskip("monai")

from training.bank import BankSampler  # noqa: E402
from training.prepare import headmodel  # noqa: E402
from training.prepare.variants import SPATIAL, load_source, make_variant, plane_counts, write_variant  # noqa: E402
from training.synth import draw_contrast, synthesize_slice  # noqa: E402
from training.vocabulary import build_structures  # noqa: E402

T = "/usr/share/mricron/templates/"
SMALL = {**SPATIAL, "grid": [40, 48], "p_thick": 0.0}


@pytest.fixture(scope="module")
def source():
    spec = {
        "id": "colin27",
        "image": T + "ch2.nii.gz",
        "modality": "MR",
        "synth": True,
        "mni": True,
        "layers": {
            "aal": {"path": T + "aal.nii.gz"},
            "brain": {"path": T + "ch2bet.nii.gz", "threshold": 0, "fill_holes": True},
        },
    }
    return load_source(spec)


@pytest.fixture(scope="module")
def structures():
    return build_structures(
        [
            {"table": True, "layer": "aal", "names_table": T + "aal.nii.txt", "names": "aal.yaml", "region": "brain"},
            {"name": "brain", "layer": "brain", "values": [1], "region": "brain", "laterality": "bilateral"},
        ]
    )


@pytest.fixture(scope="module")
def bank(tmp_path_factory, source, structures):
    root = tmp_path_factory.mktemp("bank")
    variants = []
    for v, (vid, split) in enumerate([("v0000", "train"), ("v0001", "train"), ("val0002", "val")]):
        arrays, info = make_variant(source, 100 + v, SMALL)
        info.update(id=vid, split=split)
        write_variant(root / vid, arrays, info, plane_counts(arrays, structures, info["spacing"], 64))
        variants.append({"id": vid, "split": split})
    bank = {"version": 1, "image_size": 64, "min_pixels": 4, "structures": [s.to_dict() for s in structures],
            "variants": variants}  # fmt: skip
    (root / "bank.json").write_text(json.dumps(bank))
    return root


def test_head_model_classes_follow_the_image(source):
    gen = source.gen
    assert gen.max() < headmodel.N_CLASSES
    t1 = np.asarray(__import__("SimpleITK").GetArrayFromImage(source.image), float)
    mean = {c: t1[gen == c].mean() for c in (headmodel.CSF, headmodel.GM_L, headmodel.WM_L, headmodel.FAT)}
    assert mean[headmodel.CSF] < mean[headmodel.GM_L] < mean[headmodel.WM_L]  # T1: CSF dark, WM bright
    # left classes lie on the patient's left: larger LPS x = smaller i for this RAS-stored file
    ii = np.nonzero(gen == headmodel.GM_L)[2].mean(), np.nonzero(gen == headmodel.GM_R)[2].mean()
    direction = source.image.GetDirection()[0]
    assert (ii[0] - ii[1]) * direction > 0


def test_variant_is_canonical_and_labels_move_with_the_image(source, structures):
    arrays, info = make_variant(source, 7, SMALL)
    assert arrays["image"].shape == arrays["layer_aal"].shape == arrays["gen"].shape == tuple(info["shape"])
    aal = arrays["layer_aal"]
    # canonical (S, P, L): the left hippocampus (AAL 37) has a larger L index than the right one (38)
    assert np.nonzero(aal == 37)[2].mean() > np.nonzero(aal == 38)[2].mean()
    # labels sit on the image: the brain label covers bright voxels, the air outside is dark
    brain = arrays["layer_brain"] > 0
    assert arrays["image"][brain].mean() > 3 * max(arrays["image"][arrays["gen"] == 0].mean(), 1)


def test_structure_scale_warp_changes_shapes_only_when_asked(source):
    """``warp_fine_mm`` adds a 9^3-grid deformation drawn after everything else: without it a seed gives the variant
    it always gave (older banks stay reproducible); with it the same grid and head move, labels still on the image."""
    plain, info = make_variant(source, 11, SMALL)
    assert "warp_fine_mm" not in info
    again, _ = make_variant(source, 11, {**SMALL, "warp_fine_mm": 0.0})
    assert np.array_equal(plain["layer_aal"], again["layer_aal"])
    warped, warped_info = make_variant(source, 11, {**SMALL, "warp_fine_mm": 4.0})
    assert 0 < warped_info["warp_fine_mm"] <= 4.0 and warped_info["size"] == info["size"]
    assert warped["layer_aal"].shape == plain["layer_aal"].shape
    moved = (warped["layer_aal"] > 0) != (plain["layer_aal"] > 0)
    assert 0.01 < moved.mean() / max((plain["layer_aal"] > 0).mean(), 1e-9) < 0.5
    brain = warped["layer_brain"] > 0
    assert warped["image"][brain].mean() > 3 * max(warped["image"][warped["gen"] == 0].mean(), 1)


def test_clinic_edges_cut_through_the_deep_grey_and_atrophy_shrinks_labels_with_the_image(source):
    """The v0.12 bank's edges (drawn after everything else: with them off a seed gives the variant it always gave):
    a thin slab or a field of view ending near the deep grey structures, and atrophy whose lost voxels turn to CSF
    in the image and the generation map and leave the structure labels (the whole-brain label keeps them)."""
    plain, info = make_variant(source, 5, SMALL)
    assert "edges" not in info and "atrophy" not in info
    same, _ = make_variant(source, 5, {**SMALL, "p_slab": 0.0, "p_deep_cut": 0.0, "p_atrophy": 0.0})
    assert np.array_equal(plain["layer_aal"], same["layer_aal"])
    slab, slab_info = make_variant(source, 5, {**SMALL, "p_slab": 1.0, "slab_mm": [24.0, 24.0]})
    (edge,) = slab_info["edges"]
    axis = edge["axis"]  # (x, y, z) of the output grid = canonical L, P, S = array axes 2, 1, 0
    assert edge["kind"] == "slab" and slab_info["size"][axis] == max(8, round(24.0 / slab_info["spacing"]))
    assert np.isin(slab["layer_aal"], [71, 72, 73, 74, 77, 78]).any()  # the slab goes through the deep grey
    atrophic, a_info = make_variant(source, 5, {**SMALL, "p_atrophy": 1.0})
    assert a_info["atrophy"]["csf_mm"] >= 1.0 and np.array_equal(atrophic["layer_brain"] > 0, plain["layer_brain"] > 0)
    parts = [37, 38, 41, 42, 71, 72]  # hippocampi, amygdalae, caudates (next to the ventricles): never grow
    for value in parts:
        assert (atrophic["layer_aal"] == value).sum() <= (plain["layer_aal"] == value).sum()
    assert np.isin(atrophic["layer_aal"], parts).sum() < 0.97 * np.isin(plain["layer_aal"], parts).sum()
    lost = (plain["layer_aal"] > 0) & (atrophic["layer_aal"] == 0)
    assert (atrophic["gen"][lost] == headmodel.CSF).mean() > 0.6  # the label left where the image became CSF
    darker = atrophic["image"][lost].astype(int) < plain["image"][lost].astype(int)
    assert darker.mean() > 0.9  # CSF is dark on this T1 (partial volume at this coarse test grid)


def test_counts_match_the_masks(bank, structures):
    sampler = BankSampler(bank, {"augment": None}, "train")
    j = sampler.index["left putamen"]
    v = sampler.variants[0]
    for plane in ("axial", "coronal", "sagittal"):
        counts = v.counts[plane][:, j]
        k = int(np.argmax(counts))
        mask = v.mask(sampler.structures[j], plane, k)
        h, w = mask.shape
        assert counts[k] > 0 and abs(counts[k] - mask.sum() * 64 * 64 / max(h, w) ** 2) <= 0.2 * counts[k] + 2


def test_sagittal_targets_are_side_free_and_flips_swap_sides(bank):
    opts = {"augment": None, "plane_weights": {"sagittal": 1.0}, "structure_weights": {"left putamen": 1e6},
            "neg_ratio": 0.0, "prompt_modes": {"text": 1.0}, "p_synth": 0.0}  # fmt: skip
    sampler = BankSampler(bank, opts, "train")
    j, r = sampler.index["left putamen"], sampler.index["right putamen"]
    # a sagittal slice holding only the right putamen is a positive for "left putamen"
    positives = []
    for seed in range(20):
        s = sampler.sample(seed, augment=False)
        assert s.structure == "left putamen" and s.present == 1.0
        positives.append(s.mask.sum())
    assert min(positives) > 0
    found = False
    for v in sampler.variants:
        only_right = (v.counts["sagittal"][:, r] >= sampler.min_pixels) & (v.counts["sagittal"][:, j] == 0)
        found |= bool(only_right.any())
        assert set(np.flatnonzero(only_right)) <= set(sampler._slices(v, "sagittal", [j, r], False))
    assert found  # slices with only the right putamen are positives of "left putamen"
    for p_flip in (0.0, 1.0):
        axial = BankSampler(bank, {**opts, "plane_weights": {"axial": 1.0}, "p_flip": p_flip}, "train")
        for seed in range(6):
            s = axial.sample(seed, augment=True)
            assert s.structure == "left putamen"
            head = s.image[0] > 10
            # columns run from the patient's right to left: the left putamen lies left of the head's centre
            # (larger column), also when a flip made it from the mirrored right putamen
            assert np.nonzero(s.mask)[1].mean() > np.nonzero(head)[1].mean()


def test_variant_weights_draw_flagged_variants_less_often(bank, tmp_path):
    """``bank.variant_weights``: a variant whose ``variant.json`` records a flag (here ``edges``) is drawn that much
    less often; weight 0 never draws it; without weights both variants come equally."""
    import shutil

    root = tmp_path / "bank"
    shutil.copytree(bank, root)
    info_path = root / "v0000" / "variant.json"
    info = json.loads(info_path.read_text())
    info["edges"] = {"cut": "top"}
    info_path.write_text(json.dumps(info))
    opts = {"augment": None, "structure_weights": {"brain": 1e6}, "neg_ratio": 0.0, "prompt_modes": {"text": 1.0}}

    def share_of_edges(weights, n=400):
        sampler = BankSampler(root, opts, "train", variant_weights=weights)
        j = sampler.index["brain"]
        flagged = [i for i, v in enumerate(sampler.variants) if v.info.get("edges")]
        rng = np.random.default_rng(0)
        picks = [int(rng.choice(sampler.has[j], p=sampler.variant_p[j])) for _ in range(n)]
        return np.isin(picks, flagged).mean()

    assert 0.4 < share_of_edges(None) < 0.6
    assert 0.12 < share_of_edges({"edges": 0.25}) < 0.28  # 0.25 / 1.25 = 0.2
    assert share_of_edges({"edges": 0.0}) == 0.0
    assert 0.4 < share_of_edges({"atrophy": 0.1}) < 0.6  # a flag no variant has changes nothing
    with pytest.raises(ValueError, match="negative"):
        BankSampler(root, opts, "train", variant_weights={"edges": -1})


def test_synthesis_gives_valid_images_of_every_family(source):
    rng = np.random.default_rng(0)
    slab = source.gen[80:83, ::2, ::2]
    for family in ("t1", "t2", "flair", "pd", "ct", None):
        params = draw_contrast(rng, family=family) if family else draw_contrast(rng, p_family=0.0)
        image = synthesize_slice(slab, params, np.bincount(source.gen.ravel()), rng, (0, 2.0))
        assert image.shape == slab.shape[1:] and image.dtype == np.float32
        assert 0 <= image.min() and image.max() <= 255 and image.std() > 1
    t2 = synthesize_slice(slab[1:2], draw_contrast(rng, family="t2"), np.bincount(source.gen.ravel()), rng)
    lab = slab[1]
    assert t2[lab == headmodel.CSF].mean() > t2[lab == headmodel.WM_L].mean()  # T2: bright fluid, dark WM


def test_validation_samples_come_from_validation_variants_only(bank):
    val = BankSampler(bank, {"augment": None}, "val")
    assert [v.id for v in val.variants] == ["val0002"]
    samples = val.validation_samples(2, ["left putamen", "brain"])
    assert samples and {s.structure.split("|")[0] for s in samples} == {"left putamen", "brain"}
    assert {s.structure.split("|")[2] for s in samples} == {"real", "t2"}


def test_choose_validates_best_last_and_shipped_and_exits_by_the_winner(bank, tiny_bundle, tmp_path):
    """``validate3d --choose``: the run's best and last weights and the shipped bundle are each segmented whole on the
    validation variants (T1 and T2-like); the highest mean wins (a tie keeps the shipped one), exit 0 to ship, 3 not."""
    import torch
    from conftest import TINY_MODEL_CONFIG

    from TextSegmentLib.model import build_model
    from training import validate3d

    cfg = {"bank": {"dir": str(bank)}, "model": dict(TINY_MODEL_CONFIG)}
    run = tmp_path / "run"
    run.mkdir()
    for name, seed, step in (("checkpoint.pt", 1, 9), ("best.pt", 2, 6)):
        torch.manual_seed(seed)
        state = {"model": build_model(TINY_MODEL_CONFIG).state_dict(), "step": step, "mean_dice": 0.1, "config": cfg}
        torch.save(state, run / name)
    verdict = validate3d.choose(cfg, run, tiny_bundle, limit=1)
    scores = verdict["scores"]
    assert set(scores) == {"shipped", "best", "last"}
    assert scores["best"]["step"] == 6 and scores["last"]["step"] == 9
    assert all(set(s) >= {"real", "t2", "mean"} and 0.0 <= s["mean"] <= 1.0 for s in scores.values())
    top = max(s["mean"] for s in scores.values())
    assert scores[verdict["choice"]]["mean"] == top
    assert verdict["choice"] != "shipped" or scores["shipped"]["mean"] == top
    config = tmp_path / "cfg.yaml"
    config.write_text(json.dumps(cfg))  # JSON is YAML
    with pytest.raises(SystemExit) as done:
        validate3d.main(["--config", str(config), "--run", str(run), "--choose", str(tiny_bundle), "--limit", "1"])
    assert done.value.code == (3 if verdict["choice"] == "shipped" else 0)


def test_choice_scores_brain_and_cerebellum_with_the_deep_grey(bank):
    """The weights to ship are chosen on the deep grey nuclei and on whole brain and cerebellum (a run that gains on
    the nuclei and loses the brain is not better): their references are the variant's brain layer and AAL 91-116."""
    from training import validate3d

    assert {"brain", "cerebellum", "left putamen"} <= set(validate3d.CHOICE)
    folder = bank / "val0002"
    aal = np.load(folder / "layer_aal.npy")
    brain = validate3d.reference(folder, "brain")
    cerebellum = validate3d.reference(folder, "cerebellum")
    putamen = validate3d.reference(folder, "left putamen")
    assert np.array_equal(brain, np.load(folder / "layer_brain.npy") > 0)
    assert cerebellum.any() and np.array_equal(cerebellum, (aal >= 91) & (aal <= 116))
    assert putamen.any() and np.array_equal(putamen, aal == 73)
    assert brain[putamen].mean() > 0.95  # the nuclei lie inside the brain mask


def test_calibrate_writes_per_structure_thresholds_chosen_on_validation_into_the_card(bank, present_bundle, tmp_path):
    """``training.calibrate``: every threshold of the grid is tried through the engine on the validation variants;
    the card's vocabulary gets the winners (sides pooled) and a record of what was tried; the weights are untouched
    and the bundle still loads."""
    import shutil

    from TextSegmentLib.checkpoint import load_bundle, read_card
    from training import calibrate

    bundle = tmp_path / "bundle"
    shutil.copytree(present_bundle, bundle)
    weights = (bundle / "model.safetensors").read_bytes()
    config = tmp_path / "cfg.yaml"
    config.write_text(json.dumps({"bank": {"dir": str(bank)}}))
    calibrate.main(["--config", str(config), "--bundle", str(bundle), "--limit", "1", "--grid", "0.2,0.5"])
    card = read_card(bundle)
    record = card["calibration"]["mask_threshold"]
    assert record["grid"] == [0.2, 0.5] and "brain" in record["structures"]
    brain = record["structures"]["brain"]
    assert brain["n"] == 2  # one variant, T1 and T2-like
    assert brain["threshold"] in (0.2, 0.5) and brain["dice"] >= brain["dice_default"]
    entry = next(e for e in card["vocabulary"] if e["name"] == "brain")
    assert entry.get("mask_threshold", 0.5) == brain["threshold"]
    assert brain["names"] == ["brain"] and entry.get("largest_only", False) is brain["largest_only"]
    assert (bundle / "model.safetensors").read_bytes() == weights
    assert load_bundle(bundle).card["calibration"] == card["calibration"]


def test_calibration_keeps_the_default_unless_a_threshold_gains_enough():
    from training.calibrate import apply_thresholds, choose_thresholds

    scores = {
        "left thalamus": {0.4: [0.70], 0.5: [0.70]},  # a tie keeps 0.5
        "right thalamus": {0.4: [0.704], 0.5: [0.70]},  # pooled with the left: +0.002 < min_gain
        "left hippocampus": {0.4: [0.5], 0.5: [0.4]},
        "cerebellum": {0.3: [0.7], 0.5: []},  # never scored at 0.5: left alone
    }
    chosen = choose_thresholds(scores, min_gain=0.005)
    assert chosen["thalamus"]["threshold"] == 0.5 and chosen["hippocampus"]["threshold"] == 0.4
    assert "cerebellum" not in chosen
    card = {
        "vocabulary": [
            {"name": "left thalamus", "mask_threshold": 0.35},  # an older calibration is replaced
            {"name": "right hippocampus"},
            {"name": "hippocampi"},
            "brain",
        ]
    }
    assert apply_thresholds(card, chosen, {"grid": [0.4, 0.5]}) == 1
    assert card["vocabulary"][:3] == [
        {"name": "left thalamus"},
        {"name": "right hippocampus", "mask_threshold": 0.4},
        {"name": "hippocampi"},
    ]
    assert card["calibration"] == {"mask_threshold": {"grid": [0.4, 0.5]}}


def test_calibration_keeps_one_piece_only_where_the_largest_component_gains_enough():
    """Largest-only scores beat the best threshold by min_gain: the scored names' entries get ``largest_only``
    (the hippocampi, two pieces, never); a gain under min_gain leaves every piece."""
    from training.calibrate import apply_thresholds, choose_thresholds

    scores = {
        "left hippocampus": {0.4: [0.50], 0.5: [0.40]},
        "right hippocampus": {0.4: [0.50], 0.5: [0.40]},
        "cerebellum": {0.4: [0.70], 0.5: [0.70]},
    }
    pieces = {
        "left hippocampus": {0.4: [0.52], 0.5: [0.41]},  # +0.02 over the best threshold with every piece
        "right hippocampus": {0.4: [0.51], 0.5: [0.40]},
        "cerebellum": {0.4: [0.703], 0.5: [0.70]},  # +0.003: not enough
    }
    chosen = choose_thresholds(scores, min_gain=0.005, pieces=pieces)
    assert (chosen["hippocampus"]["threshold"], chosen["hippocampus"]["largest_only"]) == (0.4, True)
    assert chosen["hippocampus"]["dice"] == 0.515 and chosen["hippocampus"]["dice_default"] == 0.4
    assert chosen["hippocampus"]["names"] == ["left hippocampus", "right hippocampus"]
    assert chosen["cerebellum"]["largest_only"] is False and chosen["cerebellum"]["dice_largest_only"] == 0.703
    card = {"vocabulary": [{"name": "left hippocampus"}, {"name": "hippocampi"}, {"name": "cerebellum"}]}
    card["vocabulary"][2]["largest_only"] = True  # an older calibration is replaced
    assert apply_thresholds(card, chosen, {}) == 1
    assert card["vocabulary"] == [
        {"name": "left hippocampus", "mask_threshold": 0.4, "largest_only": True},
        {"name": "hippocampi"},
        {"name": "cerebellum"},
    ]


def test_calibration_trims_outliers_only_where_it_gains_on_every_contrast():
    """Trimming that gains on average but loses on real T1 (what the synthesised T2-like variants hide) is refused;
    trimming that gains on both contrasts goes into the scored structure's sided and unsided entries."""
    from training.calibrate import TRIM_SDS, apply_thresholds, choose_thresholds

    scores = {name: {0.5: [0.6, 0.6]} for name in ("left hippocampus", "right hippocampus", "left caudate nucleus")}
    gains = {
        "left hippocampus": {0.5: {"real": [0.015], "t2": [0.03]}},
        "right hippocampus": {0.5: {"real": [0.005], "t2": [0.02]}},
        "left caudate nucleus": {0.5: {"real": [-0.05], "t2": [0.09]}},  # +0.02 on average, -0.05 on T1
    }
    chosen = choose_thresholds(scores, min_gain=0.005, gains=gains)
    assert chosen["hippocampus"]["trim_outliers"] == TRIM_SDS
    assert chosen["hippocampus"]["trim_gain"] == {"real": 0.01, "t2": 0.025}
    assert chosen["caudate nucleus"]["trim_outliers"] == 0.0
    card = {"vocabulary": [{"name": "left hippocampus"}, {"name": "hippocampus"}, {"name": "left caudate nucleus"}]}
    card["vocabulary"][2]["trim_outliers"] = 3.0  # an older calibration is replaced
    assert apply_thresholds(card, chosen, {}) == 2
    assert card["vocabulary"] == [
        {"name": "left hippocampus", "trim_outliers": TRIM_SDS},
        {"name": "hippocampus", "trim_outliers": TRIM_SDS},
        {"name": "left caudate nucleus"},
    ]


def test_compare_scores_each_bundle_on_each_bank_and_refuses_a_bad_bank(bank, tiny_bundle, present_bundle, capsys):
    """``training.compare``: one row per bundle, one column per bank (the same bank twice gives the same score), the
    choice structures scored whole; a --bank that is not NAME=FOLDER with a bank.json, or a folder that is not a
    bundle, exits non-zero naming it."""
    from training import compare

    assert compare.main([str(tiny_bundle), str(present_bundle), "--bank", f"a={bank}", "--bank", f"b={bank}",
                         "--limit", "1"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| tiny") or line.startswith("| present")]
    assert len(rows) == 2 and "| bundle | a | b |" in out.splitlines()
    for row in rows:
        a, b = (float(x) for x in row.strip("|").split("|")[1:])
        assert 0.0 <= a <= 1.0 and a == b
    # the present-biased bundle segments something everywhere: it overlaps the whole brain, the tiny one need not
    assert float(rows[1].strip("|").split("|")[1]) > 0.0
    for bad in (["--bank", "a"], ["--bank", f"a={bank / 'v0000'}"]):
        with pytest.raises(SystemExit) as done:
            compare.main([str(tiny_bundle), *bad])
        assert done.value.code == 2
        assert "--bank" in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        compare.main([str(bank), "--bank", f"a={bank}"])
    assert done.value.code == 2 and "not a model bundle" in capsys.readouterr().err
