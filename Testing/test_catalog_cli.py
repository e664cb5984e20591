"""``python -m TextSegmentLib models list | download | import | verify | remove``."""
# ruff: noqa: F811  (pytest fixtures imported from conftest_http are parameters of the tests)

import subprocess
import sys
from pathlib import Path

from conftest_http import entry, home, server, tiny, write_catalog  # noqa: F401

from TextSegmentLib.cli.main import main

REPO = Path(__file__).resolve().parents[1]


def _catalog(home, entries, default=None):
    return write_catalog(home.parent / "Resources" / "models.json", entries, default)


def test_list_download_verify_remove(home, server, tiny, capsys):
    server.add("/tiny.zip", body=tiny["zip"].read_bytes())
    url = server.url("/tiny.zip")
    _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], [url]), entry("tiny-v0.1.0", tiny["zip"], [url])], "tiny")
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "tiny-v1.0.0  no" in out and "default" in out and "0.2 MB" in out

    assert main(["models", "download", "tiny", "--retries", "0"]) == 0
    assert capsys.readouterr().out.strip() == str(home / "tiny-v1.0.0")
    assert main(["models", "list"]) == 0
    assert "tiny-v1.0.0  yes" in capsys.readouterr().out

    assert main(["models", "verify"]) == 0
    assert "tiny-v1.0.0: ok" in capsys.readouterr().out
    (home / "tiny-v1.0.0" / "model.safetensors").write_bytes(b"broken")
    assert main(["models", "verify", "tiny-v1.0.0"]) == 1
    assert "FAILED" in capsys.readouterr().out

    assert main(["models", "remove", "tiny-v1.0.0"]) == 0
    assert not (home / "tiny-v1.0.0").exists()
    assert main(["models", "remove", "tiny-v1.0.0"]) == 2


def test_bad_input_exits_2_and_network_failure_exits_1(home, server, tiny, capsys):
    _catalog(home, [entry("tiny-v1.0.0", tiny["zip"], [server.url("/missing.zip")])])
    assert main(["models", "download", "nothing-v1.0.0"]) == 2
    assert "not in the catalog" in capsys.readouterr().err
    assert main(["models", "download", "tiny-v1.0.0"]) == 1
    assert "404" in capsys.readouterr().err
    assert main(["models", "import", str(home / "nowhere.zip")]) == 2
    assert main(["models", "--catalog", str(home / "none.json"), "list"]) == 2


def test_import_then_list_shows_custom_model(home, tiny, capsys):
    _catalog(home, [])
    assert main(["models", "list"]) == 0
    assert "lists no models" in capsys.readouterr().out
    assert main(["models", "import", tiny["zip2"].as_uri()]) == 0
    assert main(["models", "list"]) == 0
    assert "tiny-v1.1.0  yes" in capsys.readouterr().out


def test_module_entry_point(home, tiny):
    _catalog(home, [])
    run = subprocess.run(
        [sys.executable, "-m", "TextSegmentLib", "models", "list"],
        cwd=REPO,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
    )
    assert run.returncode == 0, run.stderr
    assert "no models" in run.stdout
