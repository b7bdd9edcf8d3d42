"""experiments/resnet_benchmark.py (a small ResNet with BatchNorm and Dropout: a grid, halving, the
grid's cost against its cells one after another, and the MLP's) runs end to end on the embedded
subset and writes consistent numbers; the committed docs/resnet_benchmark.* agree."""

import json
from pathlib import Path

import numpy as np
import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
FASHION = "/usr/share/datasets/fashion-mnist"


def _check_record(script, record: dict, text: str) -> None:
    """What must hold of any record the script writes, and of the text it writes from it."""
    st = record["settings"]
    assert st["selected_on"] == "val/accuracy" == record["halving"]["selected_on"]
    for cells in (record["cnn"]["grid"]["cells"], record["halving"]["cells"]):
        val = np.array(cells["val_accuracy"], float)
        test = np.array(cells["test_accuracy"], float)
        ok = np.isfinite(val).all(1) & ~np.array(cells["diverged"])
        p = script.pick(cells)
        # the pick is the argmax of the mean validation accuracy, and reports test beside it
        assert p["pick"] == int(np.flatnonzero(ok)[np.argmax(val[ok].mean(1))])
        assert p["pick_val_accuracy"] == pytest.approx(val[p["pick"]].mean())
        assert p["pick_test_accuracy"] == pytest.approx(test[p["pick"]].mean())
        assert 0 <= p["pick_test_accuracy"] <= p["oracle_test_accuracy"] <= 1
        # a pick made on test instead would read the test column: the validation column differs
        assert not np.array_equal(val[ok], test[ok])
        assert (
            f"| {100 * p['pick_val_accuracy']:.2f} | {100 * p['pick_test_accuracy']:.2f} |" in text
        )
    for model in ("cnn", "mlp"):
        c = record[model]
        grid, seq = c["grid"], c["sequential"]
        for d in (grid, seq):
            assert len(d["train_eval_rounds"]) == c["rounds"]
            assert d["train_eval_seconds"] == min(d["train_eval_rounds"])
        assert len(seq["val_accuracy"]) == c["configurations"]
        got = np.array(grid["cells"]["val_accuracy"], float).reshape(-1)
        assert c["max_val_difference"] == pytest.approx(np.max(np.abs(got - seq["val_accuracy"])))
        assert c["ratio_with_compile"] == pytest.approx(seq["wall_seconds"] / grid["wall_seconds"])
        assert c["ratio_without_compile"] == pytest.approx(
            seq["train_eval_seconds"] / grid["train_eval_seconds"]
        )
        assert f"{c['ratio_with_compile']:.2f}x | {c['ratio_without_compile']:.2f}x |" in text
        assert len(grid["cells"]["lr"]) * st["seeds"] == c["configurations"]
    # a model that convolves trains stepwise on CPU, one configuration at a time; the MLP does not
    assert record["cnn"]["plan"]["stepwise"] and record["cnn"]["plan"]["chunk_size"] == 1
    # one cell alone runs the very program the stepwise grid runs per cell: bit for bit
    assert record["cnn"]["max_val_difference"] == 0 and record["mlp"]["rounds"] == 3
    assert not record["mlp"]["plan"]["stepwise"]
    assert ("stepwise" in text) and ("configurations at once (vmapped)" in text)
    assert record["machine"]["uptime"] and record["machine"]["lscpu"]
    assert "resnet_benchmark.png" in text


def test_the_pick_follows_validation_and_skips_stopped_and_diverged_trials(load_script):
    pick = load_script("resnet_benchmark").pick
    cells = {
        "lr": [0.1, 0.2, 0.3, 0.4],
        "momentum": [0.5, 0.6, 0.7, 0.8],
        "val_accuracy": [[0.9, 0.8], [0.5, 0.6], [None, None], [0.95, 0.99]],  # None: stopped
        "test_accuracy": [[0.1, 0.3], [0.9, 0.8], [1.0, 1.0], [1.0, 1.0]],
        "diverged": [False, False, False, True],
    }
    p = pick(cells)
    assert (p["pick"], p["lr"], p["momentum"]) == (0, 0.1, 0.5)
    assert p["pick_val_accuracy"] == pytest.approx(0.85)
    assert p["pick_test_accuracy"] == pytest.approx(0.2) and p["pick_test_per_seed"] == [0.1, 0.3]
    assert p["oracle_test_accuracy"] == pytest.approx(0.85)  # the best of the two that count
    cells["diverged"][0] = True
    assert pick(cells)["pick"] == 1


@pytest.mark.slow  # end to end, compiling the ResNet twice (a minute and more on two cores)
def test_the_resnet_benchmark_quick_run_writes_consistent_outputs(load_script, tmp_path):
    script = load_script("resnet_benchmark")
    assert script.main(["--quick", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "resnet_benchmark.json").read_text())
    st = record["settings"]
    assert (st["epochs"], st["seeds"], st["lrs"], st["momenta"]) == (2, 2, [0.03, 0.1], [0.5, 0.9])
    # halving: the fewest trials spending the grid's 4 x 2 configuration-epochs a seed (6 trials:
    # 6 x 1 + 3 x 1 = 9; 5 trials spend 5 + 2 = 7), with both seeds
    assert st["halving_trials"] == 6 and record["halving"]["config_epochs"] == 18
    assert record["cnn"]["configurations"] == record["mlp"]["configurations"] == 8
    text = (tmp_path / "resnet_benchmark.txt").read_text()
    assert text == script.text(record)
    _check_record(script, record, text)
    assert (tmp_path / "resnet_benchmark.png").stat().st_size > 10_000
    # --replot rewrites the text and the figure from the JSON alone
    (tmp_path / "resnet_benchmark.txt").unlink()
    assert script.main(["--replot", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "resnet_benchmark.txt").read_text() == text


@pytest.mark.parametrize("flag", ["--epochs=0", "--train=-5", "--seeds=two", "--val=1.5"])
def test_a_bad_flag_is_one_line_before_any_work(load_script, flag, capsys):
    with pytest.raises(SystemExit) as exit:
        load_script("resnet_benchmark").main([flag, "--out", "/nonexistent/never"])
    assert exit.value.code == 2
    assert "expected a positive integer" in capsys.readouterr().err


@pytest.mark.skipif(not Path(FASHION).is_dir(), reason="dataset-fashion-mnist is not installed")
def test_more_images_than_the_dataset_holds_is_one_line(load_script, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        load_script("resnet_benchmark").main(["--out", str(tmp_path), "--train", "59500"])
    assert exit.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.endswith("--train + --val must be at most 60000 and --test at most 10000 for "
                        "Fashion-MNIST")  # fmt: skip
    assert not list(tmp_path.iterdir())


def test_the_committed_benchmark_text_is_the_scripts_text_of_its_json(load_script):
    """No number typed by hand: docs/resnet_benchmark.txt is what the script writes from its
    JSON, the JSON's numbers hold together, and the Tuning page includes it."""
    script = load_script("resnet_benchmark")
    record = json.loads((DOCS / "resnet_benchmark.json").read_text())
    text = (DOCS / "resnet_benchmark.txt").read_text()
    assert text == script.text(record)
    _check_record(script, record, text)
    assert record["dataset"] == "Fashion-MNIST" and record["settings"]["test"] == 10_000
    assert "```{include} resnet_benchmark.txt" in (DOCS / "tuning.md").read_text()
