"""Model ids from outside never become paths outside the cache; folder imports are checked against the whole card;
``models list`` and ``models verify`` agree about broken installs."""
# ruff: noqa: F811  (pytest fixtures imported from conftest_http are parameters of the tests)

import json
import shutil
from pathlib import Path

import pytest
from conftest_http import entry, home, sha256, tiny, write_catalog  # noqa: F401
from fuzz_helpers import cli, snapshot

from TextSegmentLib.catalog import CatalogError, ModelLock, import_model, list_models, model_dir, remove_model


def _catalog(home, entries, default=None):
    return write_catalog(home.parent / "Resources" / "models.json", entries, default)


def _locks(root: Path):
    return sorted(str(p) for p in root.rglob("*.lock"))


@pytest.mark.parametrize(
    "model_id", ["../victim", "..", "/abs/victim", "a/b", "a\\b", ".tmp", ".locks", "x\x00y", "x\ny", "", " tiny"]
)
def test_ids_that_are_not_names_are_refused_everywhere(home, tiny, tmp_path, capsys, model_id):
    _catalog(home, [])
    assert import_model(str(tiny["bundle"])).name == "tiny-v1.0.0"
    victim = home.parent / "victim"  # a folder beside the cache
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    before, locks = snapshot(tmp_path), _locks(tmp_path)  # the installed model's own lock file
    for action in (["remove", model_id], ["verify", model_id], ["download", model_id]):
        code, out, err = cli(capsys, "models", *action)
        assert code == 2, (action, out, err)
        assert "Traceback" not in err and ("not a model name" in err or "not in the catalog" in err), err
    assert snapshot(tmp_path) == before and _locks(tmp_path) == locks == [str(home / ".locks" / "tiny-v1.0.0.lock")]
    with pytest.raises(CatalogError, match="not a model name"):
        model_dir(model_id)
    with pytest.raises(CatalogError, match="not a model name"):
        ModelLock(model_id)
    assert _locks(tmp_path) == locks


def test_removing_a_model_that_is_not_installed_leaves_no_lock_file(home, tiny, capsys):
    _catalog(home, [])
    code, _, err = cli(capsys, "models", "remove", "nothing-v1.0.0")
    assert code == 2 and "not installed" in err and _locks(home) == []
    assert import_model(str(tiny["bundle"])).is_dir()
    assert remove_model("tiny-v1.0.0") and not (home / "tiny-v1.0.0").exists()


def test_a_folder_with_an_edited_card_is_not_the_catalog_model(home, tiny, tmp_path, capsys):
    weights = sha256(tiny["bundle"] / "model.safetensors")
    card = sha256(tiny["bundle"] / "model.json")
    _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], ["https://x.invalid/t.zip"], weights_sha256=weights)])
    edited = tmp_path / "edited"
    shutil.copytree(tiny["bundle"], edited)
    data = json.loads((edited / "model.json").read_text())
    data["vocabulary"] = ["liver", "spleen"]  # same weights, another card
    data["name"] = "other"
    (edited / "model.json").write_text(json.dumps(data))
    code, _, err = cli(capsys, "models", "import", edited)
    assert code == 2 and "is not catalog model 'tiny-v1.0.0'" in err and "--id" in err
    assert list_models()[0].installed is False and not (home / "tiny-v1.0.0").exists()
    # given its own id it is a custom model, and verify says so
    code, _, _ = cli(capsys, "models", "import", edited, "--id", "mine-v1.0.0")
    assert code == 0 and cli(capsys, "models", "verify", "mine-v1.0.0")[0] == 0
    # with the card's SHA-256 in the catalog entry, even a card with the same name is refused
    data["name"] = "tiny"
    (edited / "model.json").write_text(json.dumps(data))
    url = ["https://x.invalid/t.zip"]
    entries = [entry("tiny-v1.0.0", tiny["zip"], url, weights_sha256=weights, card_sha256=card)]
    _catalog(home, entries)
    code, _, err = cli(capsys, "models", "import", edited)
    assert code == 2 and "its model card differs" in err
    code, _, err = cli(capsys, "models", "import", tiny["bundle"])
    assert code == 0 and cli(capsys, "models", "verify", "tiny-v1.0.0")[0] == 0


def test_a_card_edited_after_install_fails_verify(home, tiny, capsys):
    _catalog(home, [])
    folder = import_model(str(tiny["bundle"]))
    card = json.loads((folder / "model.json").read_text())
    card["vocabulary"] = ["anything"]
    (folder / "model.json").write_text(json.dumps(card))
    code, out, _ = cli(capsys, "models", "verify", "tiny-v1.0.0")
    assert code == 1 and "model card" in out and "was changed" in out


def test_list_and_verify_agree_about_a_broken_install_record(home, tiny, capsys):
    _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], ["https://x.invalid/t.zip"])])
    folder = import_model(str(tiny["zip"]))
    (folder / "install.json").write_text("{ not json")
    code, out, _ = cli(capsys, "models", "list")
    assert code == 0 and "tiny-v1.0.0  BROKEN" in out and "cannot be read" in out
    code, out, _ = cli(capsys, "models", "verify")
    assert code == 1 and "tiny-v1.0.0: FAILED" in out and "installed but broken" in out
    status = list_models()[0]
    assert status.installed is False and status.broken
    assert cli(capsys, "models", "remove", "tiny-v1.0.0")[0] == 0 and not folder.exists()
