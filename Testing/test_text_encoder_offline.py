"""Loading the text encoder stays offline without switching the Hugging Face hub off for the whole process.

Inside Slicer the process is shared with every other extension; ``HF_HUB_OFFLINE=1`` set there would break their
downloads. The encoder's files are local and loaded with ``local_files_only=True`` instead.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[1]
CODE = """
import os
from TextSegmentLib.model.config import TextEncoderSpec
from TextSegmentLib.model.text_encoder import TextEncoder
enc = TextEncoder(TextEncoderSpec())
assert enc.encode(["left hippocampus"]).sentence.shape[0] == 1
import huggingface_hub.constants as c
print(os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"), c.HF_HUB_OFFLINE)
"""


def test_loading_the_text_encoder_sets_no_process_wide_offline_flag():
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, encoding="utf-8", errors="replace", env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["None", "None", "False"]
