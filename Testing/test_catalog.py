"""Catalog file and schema, selection of entries, the cache folder, embedded models, imports for offline sites,
safe unpacking, verification, removal and the inter-process lock."""
# ruff: noqa: F811  (pytest fixtures imported from conftest_http are parameters of the tests)

import io
import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import jsonschema
import pytest
from conftest_http import entry, home, leftovers, make_zip, server, snapshot, tiny, write_catalog  # noqa: F401

from TextSegmentLib.catalog import (
    CatalogError,
    DownloadCancelled,
    DownloadError,
    ModelIncompatible,
    ModelLock,
    UnsafeArchive,
    VerificationError,
    cache_dir,
    download_model,
    import_model,
    list_models,
    load_catalog,
    parse_id,
    remove_model,
    resolve_model,
    verify_model,
)
from TextSegmentLib.catalog.archive import safe_unpack
from TextSegmentLib.resources import RESOURCES_DIR

RESOURCES = RESOURCES_DIR  # the package data: catalog, schema, embedded default model
SCHEMA = json.loads((RESOURCES / "models.schema.json").read_text(encoding="utf-8"))


def _catalog(home, entries, default=None):
    return write_catalog(home.parent / "Resources" / "models.json", entries, default)


def _validate(path: Path) -> None:
    jsonschema.validate(json.loads(path.read_text(encoding="utf-8")), SCHEMA)


# --- the catalog file ---------------------------------------------------------------------------------------------


def test_repository_catalog_validates_against_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    _validate(RESOURCES / "models.json")
    catalog = load_catalog(RESOURCES / "models.json")
    for e in catalog.entries:
        assert e.embedded or e.urls
        if e.embedded:
            assert (e.embedded_path / "model.json").is_file()


def test_test_catalogs_validate_too(tmp_path, tiny):
    path = write_catalog(
        tmp_path / "models.json",
        [
            entry("a-v1.0.0", tiny["zip"], ["https://example.org/a.zip"], weights_sha256="a" * 64),
            entry("b-v0.1.0", tiny["bundle"] / "model.safetensors", [], embedded="models/b-v0.1.0"),
        ],
        default="a",
    )
    _validate(path)
    bad = json.loads(path.read_text())
    bad["models"][0]["id"] = "A model"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMA)
    del bad["models"][1]["embedded"]
    bad["models"][0]["id"] = "a-v1.0.0"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMA)  # neither urls nor embedded


def test_parse_id():
    assert parse_id("ct-organs-v1.2.3") == ("ct-organs", (1, 2, 3))
    assert parse_id("brain_lite.2-v0.10.0") == ("brain_lite.2", (0, 10, 0))
    for bad in ("ct-organs", "ct-organs-v1.2", "CT-v1.0.0", "-v1.0.0", ""):
        assert parse_id(bad) is None


def test_newest_and_default(tmp_path, tiny):
    url = ["https://example.org/x.zip"]
    entries = [
        entry("x-v1.2.0", tiny["zip"], url),
        entry("x-v1.10.0", tiny["zip"], url),
        entry("x-v2.0.0", tiny["zip"], url, deprecated=True),
        entry("y-v0.1.0", tiny["zip"], url),
    ]
    cat = load_catalog(write_catalog(tmp_path / "m.json", entries))
    assert cat.newest("x").id == "x-v1.10.0"  # numeric, not string order; deprecated skipped
    assert cat.default_id() == "x-v1.10.0"
    assert load_catalog(write_catalog(tmp_path / "m.json", entries, default="y")).default_id() == "y-v0.1.0"
    assert load_catalog(write_catalog(tmp_path / "m.json", entries, default="x-v1.2.0")).default_id() == "x-v1.2.0"
    assert load_catalog(write_catalog(tmp_path / "m.json", [])).default_id() is None


@pytest.mark.parametrize(
    "change, message",
    [
        ({"id": "no version"}, "not of the form"),
        ({"sha256": "abc"}, "64 lower-case hex"),
        ({"size": 0}, "positive"),
        ({"urls": []}, "needs 'urls'"),
        ({"urls": ["https://example.org/model.bin"]}, "archive format"),
        ({"embedded": "../outside", "urls": []}, "inside the catalog's folder"),
        ({"title": None, "license": None}, None),
    ],
)
def test_invalid_entries_are_refused(tmp_path, tiny, change, message):
    raw = entry("x-v1.0.0", tiny["zip"], ["https://example.org/x.zip"])
    raw.update(change)
    if message is None:
        del raw["title"], raw["license"]
        message = "lacks the fields"
    with pytest.raises(CatalogError, match=message):
        load_catalog(write_catalog(tmp_path / "m.json", [raw]))


def test_catalog_level_errors(tmp_path, tiny):
    raw = entry("x-v1.0.0", tiny["zip"], ["https://example.org/x.zip"])
    with pytest.raises(CatalogError, match="more than once"):
        load_catalog(write_catalog(tmp_path / "m.json", [raw, raw]))
    with pytest.raises(CatalogError, match="default"):
        load_catalog(write_catalog(tmp_path / "m.json", [raw], default="nothing"))
    (tmp_path / "v.json").write_text(json.dumps({"catalog_version": 9, "models": []}))
    with pytest.raises(CatalogError, match="update the TextSegment extension"):
        load_catalog(tmp_path / "v.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(CatalogError, match="cannot be read"):
        load_catalog(tmp_path / "broken.json")
    with pytest.raises(CatalogError, match="does not exist"):
        load_catalog(tmp_path / "missing.json")


def test_cache_dir_override_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv("TEXTSEGMENT_HOME", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("TEXTSEGMENT_HOME")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "TextSegment" / "models"


# --- embedded models and folders ------------------------------------------------------------------------------------


def _embed(home, tiny, **extra):
    folder = home.parent / "Resources" / "models" / "tiny-v1.0.0"
    shutil.copytree(tiny["bundle"], folder)
    raw = entry("tiny-v1.0.0", folder / "model.safetensors", [], embedded="models/tiny-v1.0.0", **extra)
    _catalog(home, [raw], default="tiny")
    return folder


def test_embedded_default_model_needs_no_network(home, tiny):
    folder = _embed(home, tiny)
    assert resolve_model(None) == folder == resolve_model("default") == resolve_model("tiny")
    assert download_model("tiny-v1.0.0") == folder
    assert verify_model("tiny-v1.0.0") and not (home / ".partial").exists()
    [status] = list_models()
    assert status.installed and status.embedded and status.default
    with pytest.raises(CatalogError, match="embedded"):
        remove_model("tiny-v1.0.0")


def test_tampered_embedded_model_is_refused(home, tiny):
    folder = _embed(home, tiny, sha256="1" * 64)
    with pytest.raises(VerificationError, match="SHA-256"):
        resolve_model(None)
    assert verify_model("tiny-v1.0.0", raise_error=False) is False
    shutil.rmtree(folder)
    with pytest.raises(VerificationError, match="missing"):
        resolve_model("tiny-v1.0.0")


def test_bundle_folder_path_is_checked_and_used(home, tiny, tmp_path):
    _catalog(home, [])
    assert resolve_model(str(tiny["bundle"])) == tiny["bundle"]
    assert resolve_model(tiny["bundle"]) == tiny["bundle"]
    with pytest.raises(CatalogError, match="does not exist"):
        resolve_model(str(tmp_path / "nothing"))
    broken = tmp_path / "broken"
    shutil.copytree(tiny["bundle"], broken)
    (broken / "model.safetensors").write_bytes(b"junk")
    with pytest.raises(VerificationError):
        resolve_model(str(broken))
    with pytest.raises(CatalogError, match="not in the model catalog"):
        resolve_model("unknown-v1.0.0")


def test_newer_format_bundle_names_the_release_needed(home, tiny, tmp_path):
    _catalog(home, [])
    future = tmp_path / "future"
    shutil.copytree(tiny["bundle"], future)
    card = json.loads((future / "model.json").read_text())
    card.update(format_version=5, min_textsegment_version="2.0.0")
    (future / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelIncompatible, match=r"format 5.*TextSegment 2\.0\.0 or newer"):
        resolve_model(str(future))
    with pytest.raises(ModelIncompatible):
        import_model(str(future))
    assert list_models() == []


# --- import for offline sites -----------------------------------------------------------------------------------------


def test_import_archive_matching_catalog_entry(home, tiny):
    _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], ["https://example.invalid/tiny.zip"])])
    path = import_model(tiny["zip"].as_uri())  # file:// URL, matched by SHA-256
    assert path == home / "tiny-v1.0.0" and verify_model("tiny-v1.0.0")
    assert resolve_model("tiny") == path  # no network needed afterwards
    assert import_model(str(tiny["zip"]), model_id="tiny-v1.0.0") == path


def test_import_of_wrong_file_for_catalog_id_is_refused(home, tiny):
    _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], ["https://example.invalid/tiny.zip"])])
    with pytest.raises(VerificationError, match="is not catalog model"):
        import_model(str(tiny["zip2"]), model_id="tiny-v1.0.0")
    assert list_models()[0].installed is False and leftovers(home) == []


def test_import_custom_archive_and_folder(home, tiny):
    _catalog(home, [])
    path = import_model(str(tiny["zip2"]))  # id from its card: name + version
    assert path.name == "tiny-v1.1.0" and verify_model("tiny-v1.1.0")
    assert resolve_model("tiny-v1.1.0") == path
    folder = import_model(str(tiny["bundle"]))
    assert folder.name == "tiny-v1.0.0"
    named = import_model(str(tiny["bundle"]), model_id="mine-v3.0.0")
    assert named.name == "mine-v3.0.0"
    ids = {m.id: m for m in list_models()}
    assert set(ids) == {"tiny-v1.1.0", "tiny-v1.0.0", "mine-v3.0.0"} and not ids["mine-v3.0.0"].in_catalog
    assert remove_model("mine-v3.0.0") and not named.exists()
    assert remove_model("mine-v3.0.0") is False
    with pytest.raises(CatalogError, match="not of the form"):
        import_model(str(tiny["bundle"]), model_id="bad id")


def test_import_folder_checked_by_weights_sha(home, tiny):
    from conftest_http import sha256

    weights = sha256(tiny["bundle"] / "model.safetensors")
    _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], ["https://x.invalid/t.zip"], weights_sha256=weights)])
    assert import_model(str(tiny["bundle"])).name == "tiny-v1.0.0"
    with pytest.raises(VerificationError, match="weights' SHA-256 differs"):
        import_model(str(tiny["bundle2"]), model_id="tiny-v1.0.0")


def test_custom_import_cannot_take_a_catalog_id(home, tiny):
    _catalog(home, [entry("tiny-v1.1.0", tiny["zip"], ["https://x.invalid/t.zip"])])
    with pytest.raises(VerificationError, match="catalog id"):
        import_model(str(tiny["zip2"]))  # calls itself tiny-v1.1.0 but is not that file


def test_resolve_an_archive_path_imports_it(home, tiny):
    _catalog(home, [])
    assert resolve_model(str(tiny["targz"])).name == "tiny-v1.0.0"


# --- safe unpacking -------------------------------------------------------------------------------------------------


def _zip_with(path: Path, name: str) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("bundle/model.json", "{}")
        zf.writestr(name, "evil")
    return path


def _tar_with(path: Path, add) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        add(tf)
    return path


def _file(tf, name, data=b"evil"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def _link(tf, name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    tf.addfile(info)


@pytest.mark.parametrize("name", ["../evil.txt", "bundle/../../evil.txt", "/tmp/evil.txt", "C:/evil.txt", "..\\e.txt"])
def test_zip_escaping_paths_are_refused(tmp_path, name):
    archive = _zip_with(tmp_path / "a.zip", name)
    with pytest.raises(UnsafeArchive):
        safe_unpack(archive, tmp_path / "out" / "x")
    assert not (tmp_path / "out" / "x").exists() and not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize(
    "add",
    [
        lambda tf: _file(tf, "../evil.txt"),
        lambda tf: _file(tf, "/abs/evil.txt"),
        lambda tf: _link(tf, "bundle/link", "/etc/passwd"),
        lambda tf: _link(tf, "bundle/hard", "../x", tarfile.LNKTYPE),
    ],
)
def test_tar_escaping_members_are_refused(tmp_path, add):
    archive = _tar_with(tmp_path / "a.tar.gz", add)
    with pytest.raises(UnsafeArchive):
        safe_unpack(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil.txt").exists()


def test_zip_bomb_limit(tmp_path):
    with zipfile.ZipFile(tmp_path / "b.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.bin", b"\0" * 100_000)
    with pytest.raises(UnsafeArchive, match="more than"):
        safe_unpack(tmp_path / "b.zip", tmp_path / "out", max_bytes=1000)


def test_download_of_archive_with_parent_paths_is_refused(home, server, tiny, tmp_path):
    good = server.url("/tiny.zip")
    server.add("/tiny.zip", body=tiny["zip"].read_bytes())
    _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], [good])])
    old = download_model("tiny-v1.0.0")
    before = snapshot(old)
    evil = make_zip(tiny["bundle"], tmp_path / "evil.zip")
    with zipfile.ZipFile(evil, "a") as zf:
        zf.writestr("../../escaped.txt", "gotcha")
    server.add("/evil.zip", body=evil.read_bytes())
    _catalog(home, [entry("tiny-v1.0.0", evil, [server.url("/evil.zip")])])
    with pytest.raises(UnsafeArchive, match="leaves its folder"):
        download_model("tiny-v1.0.0", force=True)
    assert snapshot(old) == before and leftovers(home) == []
    assert not any(p.name == "escaped.txt" for p in tmp_path.parent.rglob("escaped.txt"))
    with pytest.raises(UnsafeArchive):
        import_model(str(evil))


# --- verification, removal, lock ------------------------------------------------------------------------------------


def test_verify_detects_a_damaged_install_and_resolve_replaces_it(home, server, tiny):
    server.add("/tiny.zip", body=tiny["zip"].read_bytes())
    _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], [server.url("/tiny.zip")])])
    path = download_model("tiny-v1.0.0")
    weights = path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(VerificationError, match="SHA-256"):
        verify_model("tiny-v1.0.0")
    assert resolve_model("tiny-v1.0.0") == path and verify_model("tiny-v1.0.0")
    assert server._server.routes["/tiny.zip"].gets == 2
    with pytest.raises(VerificationError, match="not installed"):
        verify_model("other-v1.0.0")


def test_remove_model(home, tiny):
    _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], ["https://x.invalid/t.zip"])])
    import_model(str(tiny["zip"]))
    assert remove_model("tiny-v1.0.0") and not (home / "tiny-v1.0.0").exists()
    assert [m.installed for m in list_models()] == [False]


def test_lock_waits_times_out_and_cancels(home):
    with ModelLock("tiny-v1.0.0"):
        with pytest.raises(DownloadError, match="another process"):
            ModelLock("tiny-v1.0.0", timeout=0.2, poll=0.02).acquire()
        with pytest.raises(DownloadCancelled):
            ModelLock("tiny-v1.0.0", cancel=lambda: True, poll=0.02).acquire()
    with ModelLock("tiny-v1.0.0", timeout=0.2):
        pass


def test_zip_symlink_member_is_refused(tmp_path):
    import stat

    with zipfile.ZipFile(tmp_path / "l.zip", "w") as zf:
        info = zipfile.ZipInfo("bundle/link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UnsafeArchive, match="link"):
        safe_unpack(tmp_path / "l.zip", tmp_path / "out")


def test_unwritable_cache_gives_clear_error(home, tiny, monkeypatch, tmp_path):
    _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], ["https://x.invalid/t.zip"])])
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TEXTSEGMENT_HOME", str(blocker / "models"))
    with pytest.raises(DownloadError, match="set TEXTSEGMENT_HOME to a writable folder"):
        import_model(str(tiny["zip"]))


def test_installed_model_usable_without_catalog(home, tiny, monkeypatch):
    _catalog(home, [])
    path = import_model(str(tiny["zip"]))
    monkeypatch.setenv("TEXTSEGMENT_CATALOG", str(home / "missing.json"))
    assert resolve_model("tiny-v1.0.0") == path
    with pytest.raises(CatalogError, match="does not exist"):
        resolve_model("other-v1.0.0")


def test_file_url_forms():
    from TextSegmentLib.catalog.models import _local_path

    assert _local_path("file:///data/m.zip") == Path("/data/m.zip")
    assert _local_path("file://localhost/data/m.zip") == Path("/data/m.zip")
    assert _local_path("file://server/share/m.zip") == Path("//server/share/m.zip")
    assert _local_path("https://example.org/m.zip") is None
    assert _local_path("ct-organs-v1.0.0") is None
