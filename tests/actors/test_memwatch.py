"""The decode's per-stage memory figures: a start and a peak that sees what the body allocated."""

import sys

import numpy as np
import pytest

from gigacanvas.actors.memwatch import anon_rss_mib, watched

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RssAnon is Linux's")


def test_peak_sees_the_body_and_start_what_was_there():
    peaks: dict = {}
    before = anon_rss_mib()
    with watched(peaks, "tail"):
        block = np.ones(64 << 20, np.uint8)  # 64 MiB, touched
        del block
    assert peaks["tail start"] == pytest.approx(before, abs=8)
    assert peaks["tail"] - peaks["tail start"] >= 56


def test_start_is_the_first_calls_and_peak_the_largest():
    peaks: dict = {}
    with watched(peaks, "tail"):
        pass
    first = peaks["tail start"]
    keep = np.ones(32 << 20, np.uint8)
    with watched(peaks, "tail"):
        pass
    assert peaks["tail start"] == first
    assert peaks["tail"] >= first + 24
    del keep
