"""Publishing: reproducible archives, generated catalog entries that validate and download, ``models publish``."""
# ruff: noqa: F811  (pytest fixtures imported from conftest_http are parameters of the tests)

import json
import shutil

import jsonschema
import pytest
from conftest_http import entry, home, server, sha256, tiny, write_catalog  # noqa: F401

from TextSegmentLib.catalog import CatalogError, download_model, import_model, list_models, load_catalog, resolve_model
from TextSegmentLib.catalog.publish import add_to_catalog, make_entry, pack_bundle
from TextSegmentLib.cli.main import main
from TextSegmentLib.resources import CATALOG_SCHEMA_FILE

SCHEMA = json.loads(CATALOG_SCHEMA_FILE.read_text())


def test_pack_is_reproducible_and_entry_downloads(home, server, tiny, tmp_path):
    a = pack_bundle(tiny["bundle"], tmp_path / "a" / "tiny.zip")
    b = pack_bundle(tiny["bundle"], tmp_path / "b" / "tiny.zip")
    assert sha256(a) == sha256(b)
    server.add("/tiny-v1.0.0.zip", body=a.read_bytes())
    entry = make_entry(a, [server.url("/tiny-v1.0.0.zip")], modalities=["MR"], description="test")
    assert entry["id"] == "tiny-v1.0.0" and entry["size"] == a.stat().st_size and entry["modalities"] == ["MR"]
    catalog = write_catalog(home.parent / "Resources" / "models.json", [])
    add_to_catalog(catalog, entry, default="tiny")
    jsonschema.validate(json.loads(catalog.read_text()), SCHEMA)
    assert load_catalog().default_id() == "tiny-v1.0.0"
    assert download_model("tiny").name == "tiny-v1.0.0"
    assert import_model(str(tiny["bundle"])).name == "tiny-v1.0.0"  # matched by weights_sha256


def test_embedded_entry(home, tiny):
    folder = home.parent / "Resources" / "models" / "tiny-v1.0.0"
    shutil.copytree(tiny["bundle"], folder)
    catalog = write_catalog(home.parent / "Resources" / "models.json", [])
    add_to_catalog(catalog, make_entry(folder, embedded="models/tiny-v1.0.0"), default="tiny")
    jsonschema.validate(json.loads(catalog.read_text()), SCHEMA)
    assert resolve_model(None) == folder


def test_invalid_entry_leaves_catalog_unchanged(home, tiny, tmp_path):
    catalog = write_catalog(home.parent / "Resources" / "models.json", [])
    before = catalog.read_text()
    with pytest.raises(CatalogError):
        add_to_catalog(catalog, {"id": "broken"})
    assert catalog.read_text() == before
    with pytest.raises(CatalogError):
        make_entry(tiny["bundle"], ["https://example.org/x.zip"])  # a folder needs packing first


def test_publish_command(home, tiny, tmp_path, capsys):
    catalog = write_catalog(home.parent / "Resources" / "models.json", [])
    url = "https://models.example.org/tiny-v1.0.0.zip"
    args = ["models", "publish", str(tiny["bundle"]), "--url", url, "--out", str(tmp_path)]
    assert main([*args, "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["urls"] == [url]
    assert load_catalog().entries == []
    assert main([*args, "--set-default"]) == 0
    assert (tmp_path / "tiny-v1.0.0.zip").is_file()
    assert load_catalog(catalog).default_id() == "tiny-v1.0.0"
    assert main(["models", "publish", str(tiny["bundle"])]) == 2  # no URL
    assert main(["models", "publish", str(tiny["bundle"]), "--embedded"]) == 2  # not inside Resources


def test_one_embedded_model_replaces_the_previous_one(home, tiny, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a refused publish must not leave an archive in the current folder
    models = home.parent / "Resources" / "models"
    old, new = models / "tiny-v1.0.0", models / "tiny-v1.1.0"
    shutil.copytree(tiny["bundle"], old)
    shutil.copytree(tiny["bundle2"], new)
    card = dict(json.loads((old / "model.json").read_text()), vocabulary=["brain", {"name": "left putamen"}])
    (old / "model.json").write_text(json.dumps(card))
    catalog = write_catalog(home.parent / "Resources" / "models.json", [])
    add_to_catalog(catalog, make_entry(old, embedded="models/tiny-v1.0.0"), default="tiny")
    assert "structures" not in json.loads(catalog.read_text())["models"][0]  # the card beside it lists them
    assert load_catalog(catalog).get("tiny-v1.0.0").structures == ["brain", "left putamen"]
    args = ["models", "publish", str(new), "--embedded", "--set-default", "--only-embedded"]
    assert main(args) == 0
    listed = [m["id"] for m in json.loads(catalog.read_text())["models"]]
    assert listed == ["tiny-v1.1.0"] and not old.exists() and (new / "model.safetensors").is_file()
    jsonschema.validate(json.loads(catalog.read_text()), SCHEMA)
    assert resolve_model(None) == new
    assert main(["models", "publish", str(new), "--only-embedded", "--url", "https://example.org/x.zip"]) == 2
    assert not list(tmp_path.glob("*.zip"))


def test_the_model_list_offers_only_what_can_be_used(home, tiny):
    models = home.parent / "Resources" / "models"
    shutil.copytree(tiny["bundle"], models / "tiny-v1.0.0")
    url = "https://example.org/{}.zip"
    write_catalog(
        home.parent / "Resources" / "models.json",
        [
            entry("tiny-v1.0.0", tiny["bundle"] / "model.safetensors", [], embedded="models/tiny-v1.0.0"),
            entry("gone-v0.1.0", tiny["bundle"] / "model.safetensors", [], embedded="models/gone-v0.1.0"),
            entry("old-v0.9.0", tiny["zip"], [url.format("old")], deprecated=True),
            entry("ct-v1.0.0", tiny["zip"], [url.format("ct")]),
        ],
        default="tiny",
    )
    offered = {m.id: m.offered for m in list_models()}
    # embedded and present; an embedded folder that is not there; a deprecated download; a current download
    assert offered == {"tiny-v1.0.0": True, "gone-v0.1.0": False, "old-v0.9.0": False, "ct-v1.0.0": True}
