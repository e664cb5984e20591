"""Freed memory stays in the process for the next prompt (glibc): no page faults when the same blocks come back."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROGRAM = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    sys.path.insert(0, {root!r})
    from TextSegmentLib.engine.allocator import keep_freed_memory
    print(keep_freed_memory())
    big = np.ones(20 << 18, np.float32); del big  # a 20 MB block: glibc's own threshold follows it
    for i in range(4):
        r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        blocks = [np.ones(15 << 18, np.float32) for _ in range(3)]  # 45 MB, freed again: a prompt's temporaries
        del blocks
        print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0)
    """
)


def _faults(env_value: str):
    env = {"TEXTSEGMENT_KEEP_FREED_MEMORY": env_value, "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM.format(root=str(ROOT))], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0] == "True", [int(x) for x in out[1:]]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator: Linux only")
def test_freed_blocks_come_back_without_page_faults():
    applied, kept = _faults("1")
    assert applied
    assert max(kept[1:]) < 100  # 45 MB (11,520 pages) allocated again: served from the kept heap
    applied, default = _faults("0")  # turned off in the environment: glibc's defaults give the pages back
    assert not applied
    assert min(default[1:]) > 10 * max(max(kept[1:]), 10)
