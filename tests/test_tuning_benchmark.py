"""experiments/tuning.py (halving vs random vs grid) runs end to end on the embedded subset and
writes consistent numbers: the spend of each search, the share of the full budget, the table."""

import csv
import json

import numpy as np
import pytest


@pytest.mark.slow  # end to end (main registers the marker: pytest -m "not slow")
def test_the_tuning_benchmark_quick_run_writes_consistent_outputs(load_script, tmp_path):
    script = load_script("tuning")
    assert script.main(["--quick", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "tuning_benchmark.json").read_text())
    h, r, g = (record["searches"][k] for k in ("halving", "random", "grid"))
    # 9 trials, eta 3, 3 epochs: 9 trials x 1 epoch, then 3 trials x 2 more.
    assert h["config_epochs"] == 9 + 3 * 2 and r["config_epochs"] == g["config_epochs"] == 27
    assert h["fraction_of_full_budget"] == 15 / 27
    assert [p["config_epochs"] for p in h["curve"]] == [9, 15]
    assert [p["config_epochs"] for p in r["curve"]] == [9, 18, 27]
    for s in (h, r, g):
        assert (
            0 <= s["pick_test_accuracy"] <= 1
            and s["pick_test_accuracy"] == s["curve"][-1]["test_accuracy"]
        )
    # The first rung of halving trains the same trials, seeds and batches as random search's
    # first epoch: the same pick.
    assert np.isclose(h["curve"][0]["val_accuracy"], r["curve"][0]["val_accuracy"])
    rows = list(csv.reader((tmp_path / "tuning_benchmark.csv").read_text().splitlines()))
    assert [row[0] for row in rows[1:]] == ["halving", "random", "grid"]
    text = (tmp_path / "tuning_benchmark.txt").read_text()
    assert "| halving | 9 | 15 | 56% |" in text and "tuning_benchmark.png" in text
    assert (tmp_path / "tuning_benchmark.png").stat().st_size > 10_000
