"""Fault positions come from what a real deploy did, so a drawn fault can land (issue #16).

`--fault reset@N` arms each flash's own program count; the campaign used to draw N up to the
SUM of both flashes' programs, so by DFU a reset past the external flash's count never fired.
The virtual Core now reports the larger count and the campaign draws up to it: a reset at
exactly that count fires during a deploy like the calibration one.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _campaign() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("campaign_tool", str(ROOT / "tools" / "campaign"))
    spec = importlib.util.spec_from_loader("campaign_tool", loader)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["campaign_tool"] = mod  # its dataclasses look their module up there
    loader.exec_module(mod)
    return mod


def test_a_reset_at_the_calibrated_program_count_fires(tmp_path: Path) -> None:
    c = _campaign()
    rng = random.Random(5)
    (dist0, trust), (dist1, _) = (c.make_release(tmp_path, v, rng) for v in ("1.0.0", "1.1.0"))
    via, state = c.DfuVia(), tmp_path / "core"
    cal = c.calibrate(via, state, dist1, trust)
    assert 0 < cal.programs < 36  # one flash's count (30 blocks by SPI), not the sum with internal (36)
    core = c.Core(state, via.endpoints, [f"reset@{cal.programs}"]).__enter__()
    try:
        rc, _, err = c.run_deploy(via, core, str(dist0), trust, None)
    finally:
        core.__exit__(None, None, None)
    assert "reset" in core.final["fired"], (rc, err)
    assert rc == 4 and "went away" in err  # the device reset under the deploy: exit 4, one clear line
