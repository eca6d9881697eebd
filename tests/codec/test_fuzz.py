"""Mutated, truncated and random bitstreams: never a crash or a hang, always a typed error.
(`lsic bench fuzz` runs the 100,000-case version.)"""

from __future__ import annotations

from lsic.codec.bench.fuzz import fuzz

from ..conftest import natural_image


def test_fuzzed_bitstreams_fail_with_typed_errors_only(encoder, decoder):
    seeds = [encoder.encode(natural_image(96, 200), q) for q in (1, 8)]
    report = fuzz(seeds, cases=1500, decoder=decoder, seed=1, max_seconds_per_case=5.0)
    assert report["crashes"] == [] and report["slow"] == []
    assert report["typed_errors"] + report["decoded"] == 1500
