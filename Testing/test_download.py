"""Downloads against a real HTTP server on 127.0.0.1: good, no length, resume, bad hash, 404, 5xx, stall,
cancel, proxy, concurrent processes, and a cached model used with the server stopped."""
# ruff: noqa: F811  (pytest fixtures imported from conftest_http are parameters of the tests)

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest_http import FAST, entry, home, leftovers, server, snapshot, tiny, write_catalog  # noqa: F401
from httpserver import closed_port

from TextSegmentLib.catalog import (
    CatalogError,
    DownloadCancelled,
    DownloadError,
    ModelIncompatible,
    download_model,
    load_catalog,
    resolve_model,
    verify_model,
)

REPO = Path(__file__).resolve().parents[1]


def _catalog(home, entries, default=None):
    return write_catalog(home.parent / "Resources" / "models.json", entries, default)


def _serve(server, tiny, key="zip", name="/tiny-v1.0.0.zip", **route):
    server.add(name, body=tiny[key].read_bytes(), **route)
    return server.url(name)


def test_good_download_with_progress(home, server, tiny):
    url = _serve(server, tiny)
    _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], [url])])
    seen = []
    path = resolve_model("tiny-v1.0.0", progress=lambda done, total: seen.append((done, total)), options=FAST)
    assert path == home / "tiny-v1.0.0"
    assert (path / "model.safetensors").read_bytes() == (tiny["bundle"] / "model.safetensors").read_bytes()
    size = tiny["zip"].stat().st_size
    assert seen[-1] == (size, size) and all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))
    assert verify_model("tiny-v1.0.0") and leftovers(home) == []
    from TextSegmentLib.checkpoint import load_bundle

    assert load_bundle(path).config.image_size == 64


def test_targz_and_bare_name_gets_newest_non_deprecated(home, server, tiny):
    url = _serve(server, tiny, "targz", "/tiny.tar.gz")
    _catalog(
        home,
        [
            entry("tiny-v0.9.0", tiny["targz"], [url]),
            entry("tiny-v1.0.0", tiny["targz"], [url]),
            entry("tiny-v2.0.0", tiny["targz"], [url], deprecated=True),
        ],
    )
    assert resolve_model("tiny", options=FAST).name == "tiny-v1.0.0"
    assert resolve_model(None, options=FAST).name == "tiny-v1.0.0"  # no default: newest of the first name


def test_no_content_length(home, server, tiny):
    url = _serve(server, tiny, send_length=False)
    _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], [url])])
    totals = set()
    path = download_model("tiny-v1.0.0", progress=lambda d, t: totals.add(t), options=FAST)
    assert totals == {None} and verify_model(path.name)


def test_interrupted_transfer_resumes_with_range(home, server, tiny):
    half = tiny["zip"].stat().st_size // 2
    url = _serve(server, tiny, drop_after=half)
    _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], [url])])
    download_model("tiny-v1.0.0", options=FAST)
    route = server._server.routes["/tiny-v1.0.0.zip"]
    assert [r["range"] for r in route.requests] == [None, f"bytes={half}-"]


def test_failed_download_is_resumed_by_the_next_call(home, server, tiny):
    from dataclasses import replace

    half = tiny["zip"].stat().st_size // 2
    url = _serve(server, tiny, drop_after=half)
    _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], [url])])
    with pytest.raises(DownloadError, match="dropped"):
        download_model("tiny-v1.0.0", options=replace(FAST, retries=0))
    assert not (home / "tiny-v1.0.0").exists()
    parts = list((home / ".partial").iterdir())
    assert len(parts) == 1 and parts[0].stat().st_size == half
    download_model("tiny-v1.0.0", options=FAST)
    assert server._server.routes["/tiny-v1.0.0.zip"].requests[-1]["range"] == f"bytes={half}-"
    assert leftovers(home) == []


def test_server_without_range_support_restarts(home, server, tiny):
    half = tiny["zip"].stat().st_size // 2
    url = _serve(server, tiny, drop_after=half, ranges=False)
    _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], [url])])
    assert verify_model(download_model("tiny-v1.0.0", options=FAST).name)


def test_wrong_sha256_is_rejected_and_old_model_kept(home, server, tiny, caplog):
    url = _serve(server, tiny)
    _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], [url])])
    old = download_model("tiny-v1.0.0", options=FAST)
    before = snapshot(old)
    bad = entry("tiny-v1.1.0", tiny["zip"], [url], sha256="0" * 64)
    _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], [url]), bad])
    with pytest.raises(DownloadError, match="SHA-256"):
        download_model("tiny-v1.1.0", options=FAST)
    assert snapshot(old) == before and not (home / "tiny-v1.1.0").exists() and leftovers(home) == []
    # a bare name falls back to the installed older version when the newest one cannot be had
    assert resolve_model("tiny", options=FAST) == old and "older model" in caplog.text
    # the same id re-downloaded (force) with a bad file: the installed copy is untouched
    _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], [url], size=tiny["zip"].stat().st_size + 1)])
    with pytest.raises(DownloadError):
        download_model("tiny-v1.0.0", options=FAST, force=True)
    assert snapshot(old) == before


def test_404_fails_at_once(home, server, tiny):
    _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], [server.url("/missing.zip")])])
    with pytest.raises(DownloadError, match="404"):
        download_model("tiny-v1.0.0", options=FAST)
    assert not (home / "tiny-v1.0.0").exists()


def test_second_url_used_when_first_is_missing(home, server, tiny):
    url = _serve(server, tiny)
    _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], [server.url("/gone.zip"), url])])
    assert download_model("tiny-v1.0.0", options=FAST).is_dir()


def test_500_then_success_on_retry(home, server, tiny):
    url = _serve(server, tiny, fail_first=2)
    _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], [url])])
    assert download_model("tiny-v1.0.0", options=FAST).is_dir()
    assert server._server.routes["/tiny-v1.0.0.zip"].gets == 3


def test_500_for_ever_gives_up(home, server, tiny):
    url = _serve(server, tiny, fail_first=100, fail_status=503)
    _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], [url])])
    with pytest.raises(DownloadError, match="503"):
        download_model("tiny-v1.0.0", options=FAST)
    assert server._server.routes["/tiny-v1.0.0.zip"].gets == FAST.retries + 1


def test_stalled_server_times_out_with_clear_message(home, server, tiny):
    from dataclasses import replace

    url = _serve(server, tiny, stall_after=4096)
    _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], [url])])
    start = time.monotonic()
    with pytest.raises(DownloadError, match="stopped sending data.*read timeout"):
        download_model("tiny-v1.0.0", options=replace(FAST, retries=0, read_timeout=0.4))
    assert time.monotonic() - start < 5
    assert not (home / "tiny-v1.0.0").exists()


def test_unreachable_server(home, tiny):
    _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], [f"http://127.0.0.1:{closed_port()}/m.zip"])])
    with pytest.raises(DownloadError, match="cannot connect"):
        download_model("tiny-v1.0.0", options=FAST)


def test_cancel_mid_way_leaves_cache_as_it_was(home, server, tiny):
    size = tiny["zip"].stat().st_size
    url = _serve(server, tiny, chunk=4096, delay=0.002)
    _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], [url])])
    state = {"done": 0}
    with pytest.raises(DownloadCancelled):
        download_model(
            "tiny-v1.0.0",
            progress=lambda d, t: state.update(done=d),
            cancel=lambda: state["done"] > size // 3,
            options=FAST,
        )
    assert 0 < state["done"] < size
    assert not (home / "tiny-v1.0.0").exists() and leftovers(home) == []


def test_cached_model_is_used_with_server_stopped(home, server, tiny):
    url = _serve(server, tiny)
    _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], [url])], default="tiny")
    first = resolve_model("default", options=FAST)
    server.stop()
    assert resolve_model("tiny-v1.0.0", options=FAST) == first
    assert resolve_model(None, options=FAST) == first
    assert verify_model("tiny-v1.0.0")


def test_proxy_from_environment(home, server, tiny, monkeypatch):
    _serve(server, tiny)
    _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], ["http://models.example.invalid/tiny-v1.0.0.zip"])])
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{server.port}")
    monkeypatch.setenv("no_proxy", "localhost")
    monkeypatch.setenv("NO_PROXY", "localhost")
    assert download_model("tiny-v1.0.0", options=FAST).is_dir()
    assert server._server.routes["/tiny-v1.0.0.zip"].requests[0]["proxied"]


def test_no_proxy_bypasses_proxy(home, server, tiny, monkeypatch):
    url = _serve(server, tiny)
    _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], [url])])
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{closed_port()}")
    assert download_model("tiny-v1.0.0", options=FAST).is_dir()
    assert not server._server.routes["/tiny-v1.0.0.zip"].requests[0]["proxied"]


def test_newer_bundle_format_is_refused_before_download(home, server, tiny):
    url = _serve(server, tiny)
    _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], [url], format_version=7, min_textsegment_version="3.1.0")])
    with pytest.raises(ModelIncompatible, match=r"format 7.*TextSegment 3\.1\.0 or newer"):
        resolve_model("tiny-v1.0.0", options=FAST)
    assert server._server.routes["/tiny-v1.0.0.zip"].gets == 0


def test_missing_text_encoder_package_is_refused_before_download(home, server, tiny, monkeypatch):
    from TextSegmentLib.model import text_encoder

    monkeypatch.setattr(text_encoder, "KNOWN_TEXT_ENCODER_PACKAGES", ("no_such_encoder_pkg",))
    url = _serve(server, tiny)
    encoder = {"name": "x/y", "package": "no_such_encoder_pkg"}
    _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], [url], text_encoder=encoder)])
    with pytest.raises(ModelIncompatible, match="pip install no-such-encoder-pkg"):
        download_model("tiny-v1.0.0", options=FAST)


CHILD = """
import sys
from TextSegmentLib.catalog import DownloadOptions, resolve_model
print(resolve_model("tiny-v1.0.0", options=DownloadOptions(read_timeout=5, retries=1, backoff=0.01)))
"""


def test_two_processes_download_the_same_model(home, server, tiny):
    url = _serve(server, tiny, chunk=8192, delay=0.03)  # about one second of transfer
    _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], [url])])
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [
        subprocess.Popen([sys.executable, "-c", CHILD], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err.decode()
    assert {o.decode().strip() for o, _ in outs} == {str(home / "tiny-v1.0.0")}
    assert server._server.routes["/tiny-v1.0.0.zip"].gets == 1  # the second process waited, then used the cache
    assert verify_model("tiny-v1.0.0") and leftovers(home) == []
    assert load_catalog().get("tiny-v1.0.0") is not None


def test_garbage_partial_file_is_detected_and_downloaded_again(home, server, tiny):
    size = tiny["zip"].stat().st_size
    url = _serve(server, tiny)
    _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], [url])])
    sha = load_catalog().get("tiny-v1.0.0").sha256
    part = home / ".partial" / f"tiny-v1.0.0-{sha[:16]}.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * (size // 2))  # e.g. a disk error in an earlier run
    assert verify_model(download_model("tiny-v1.0.0", options=FAST).name)
    assert [r["range"] for r in server._server.routes["/tiny-v1.0.0.zip"].requests] == [f"bytes={size // 2}-", None]
    part.write_bytes(tiny["zip"].read_bytes())  # complete but never installed: no request at all
    assert download_model("tiny-v1.0.0", options=FAST, force=True).is_dir()
    assert server._server.routes["/tiny-v1.0.0.zip"].gets == 2 and leftovers(home) == []


def test_sample_data_download_is_verified_and_cached(home, server, tiny):
    from TextSegmentLib.catalog import download_sample

    data = b"sample volume bytes" * 100
    server.add("/samples/head.nii.gz", body=data)
    import hashlib

    sample = {"name": "head", "url": server.url("/samples/head.nii.gz"), "size": len(data)}
    sample["sha256"] = hashlib.sha256(data).hexdigest()
    bad = dict(sample, name="bad", sha256="f" * 64)
    _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], [server.url("/t.zip")], sample_data=[sample, bad])])
    path = download_sample("tiny-v1.0.0", options=FAST)
    assert path.read_bytes() == data and path.name == "head.nii.gz"
    with pytest.raises(DownloadError, match="does not match"):
        download_sample("tiny-v1.0.0", "bad", options=FAST)
    server.stop()
    assert download_sample("tiny", "head", options=FAST) == path
    with pytest.raises(CatalogError, match="listed: head, bad"):
        download_sample("tiny-v1.0.0", "other")


def test_unknown_host_fails_at_once_with_offline_hint(home, tiny):
    _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], ["http://models.example.invalid/t.zip"])])
    start = time.monotonic()
    with pytest.raises(DownloadError, match="cannot find the server.*models import"):
        download_model("tiny-v1.0.0", options=FAST)
    assert time.monotonic() - start < 10


def test_server_file_of_another_size_is_refused_at_once(home, server, tiny):
    server.add("/tiny-v1.0.0.zip", body=tiny["zip"].read_bytes() + b"extra")
    _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], [server.url("/tiny-v1.0.0.zip")])])
    with pytest.raises(DownloadError, match="bytes but the catalog lists"):
        download_model("tiny-v1.0.0", options=FAST)
    assert server._server.routes["/tiny-v1.0.0.zip"].gets == 1 and not (home / "tiny-v1.0.0").exists()


def test_https_certificate_checked_and_site_authority_accepted(home, tiny, tmp_path, monkeypatch):
    from httpserver import ModelServer

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    with ModelServer(str(cert), str(key)) as srv:
        srv.add("/t.zip", body=tiny["zip"].read_bytes())
        _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], [srv.url("/t.zip")])])
        with pytest.raises(DownloadError, match="certificate.*SSL_CERT_FILE"):
            download_model("tiny-v1.0.0", options=FAST)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        assert download_model("tiny-v1.0.0", options=FAST).is_dir()
