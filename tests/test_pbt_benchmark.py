"""experiments/pbt_benchmark.py (PBT vs fixed hyperparameters vs halving) runs end to end on the
embedded subset and writes consistent numbers; the committed docs/pbt_benchmark.* agree."""

import json
from pathlib import Path

import numpy as np
import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.slow  # end to end (main registers the marker: pytest -m "not slow")
def test_the_pbt_benchmark_quick_run_writes_consistent_outputs(load_script, tmp_path):
    script = load_script("pbt_benchmark")
    assert script.main(["--quick", "--seeds", "0,1", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "pbt_benchmark.json").read_text())
    st = record["settings"]
    assert (st["population"], st["epochs"], st["eta"]) == (4, 3, 2)
    # halving: the fewest trials that spend the population's 4 x 3 configuration-epochs (8 trials:
    # 8 x 1 + 4 x 1 + 2 x 1 = 14; 7 trials spend 7 + 3 + 1 = 11)
    assert st["halving_trials"] == 8
    for seed in ("0", "1"):
        runs = record["seeds"][seed]
        assert runs["pbt"]["config_epochs"] == runs["fixed"]["config_epochs"] == 12
        assert runs["halving"]["config_epochs"] == 14
        for r in runs.values():
            assert 0 <= r["pick_test_accuracy"] <= r["oracle_test_accuracy"] <= 1
            assert r["pick_val_curve"][-1] == r["pick_val_accuracy"]
        pbt = runs["pbt"]
        assert len(pbt["lineage"]) == 3 and len(pbt["schedule"]["lr"]) == 3
        assert pbt["lineage"][-1] == pbt["pick"]
    summary = record["summary"]["pbt"]["pick_test_accuracy"]
    values = [record["seeds"][s]["pbt"]["pick_test_accuracy"] for s in ("0", "1")]
    assert summary["mean"] == pytest.approx(np.mean(values))
    text = (tmp_path / "pbt_benchmark.txt").read_text()
    assert "| pbt | 4 | 12 |" in text and "| halving | 8 | 14 |" in text
    assert "pbt_benchmark.png" in text
    assert ("PBT wins on" in text) + ("PBT does not clearly win" in text) + (
        "PBT's pick is" in text
    ) == 1
    assert record["machine"]["uptime"] and record["machine"]["lscpu"]
    assert (tmp_path / "pbt_benchmark.png").stat().st_size > 10_000


def test_the_committed_benchmark_text_is_the_scripts_text_of_its_json(load_script, tmp_path):
    """No number typed by hand: docs/pbt_benchmark.txt is what the script writes from its JSON,
    and the Tuning page includes it."""
    script = load_script("pbt_benchmark")
    record = json.loads((DOCS / "pbt_benchmark.json").read_text())
    assert (DOCS / "pbt_benchmark.txt").read_text() == script.text(record)
    assert record["settings"]["population"] == 16 and len(record["settings"]["seeds"]) == 3
    assert "```{include} pbt_benchmark.txt" in (DOCS / "tuning.md").read_text()
