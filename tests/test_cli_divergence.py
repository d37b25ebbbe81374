"""fmnist-train when training diverges: exit code 3, nothing non-finite saved or recorded."""

from __future__ import annotations

import json
import math

import pytest
import torch

from fmnist_gui.cli import main
from tests.support.plugin_fixtures import BOMB_OPTIMIZER, write_plugin

BATCHES = 16  # the tiny data: 256 images in batches of 16


@pytest.fixture
def bomb_dir(tmp_path):
    folder = tmp_path / "bomb-plugins"
    write_plugin(folder, "bomb", BOMB_OPTIMIZER)
    return folder


def common(tiny_root, *extra):
    return ["--data-dir", str(tiny_root), "--no-download", "--seed", "0", *extra]


def metrics_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def saved_state(path):
    return torch.load(path, weights_only=True)


def test_help_documents_the_divergence_exit_code(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "3 diverged" in out
    assert "--on-divergence" in out


def test_full_batch_huge_lr_exits_3_without_saving_or_done(tiny_root, tmp_path, capsys):
    ck, metrics = tmp_path / "ck.pt", tmp_path / "m.jsonl"
    good = common(tiny_root, "--epochs", "1", "--batch-size", "256", "--save", str(ck))
    assert main(good) == 0
    before = ck.read_bytes()
    capsys.readouterr()
    args = common(tiny_root, "--batch-size", "256", "--lr", "1e30", "--epochs", "1")
    code = main([*args, "--save", str(ck), "--metrics-json", str(metrics)])
    out, err = capsys.readouterr()
    assert code == 3
    assert "Done!" not in out
    assert "Avg loss: nan" not in out
    assert "diverged" in err
    assert "still holds the last good epoch" not in err
    assert ck.read_bytes() == before  # the good checkpoint was not overwritten
    assert metrics.read_text() == ""  # no epoch was recorded


@pytest.mark.parametrize("what", ["nan_weights", "nan_momentum"])
def test_nan_at_an_epochs_last_batch_keeps_the_last_good_epoch(
    tiny_root, tmp_path, bomb_dir, capsys, what
):
    ck, metrics = tmp_path / "ck.pt", tmp_path / "m.jsonl"
    code = main(
        common(tiny_root, "--plugin-dir", str(bomb_dir), "--optimizer", f"bomb_{what}")
        + ["--opt-param", f"blow_at={2 * BATCHES}", "--batch-size", "16", "--lr", "0.01"]
        + ["--epochs", "3", "--save", str(ck), "--metrics-json", str(metrics)]
    )
    out, err = capsys.readouterr()
    assert code == 3
    assert "Done!" not in out
    assert "end of epoch 2" in err
    assert f"{ck} still holds the last good epoch" in err
    lines = metrics_lines(metrics)
    assert [m["epoch"] for m in lines] == [1]
    assert all(math.isfinite(v) for m in lines for v in m.values())
    state = saved_state(ck)
    assert state["position"]["epochs_done"] == 1
    assert all(bool(torch.isfinite(t).all()) for t in state["model"].values())


def test_rollback_trains_on_with_the_lr_halved(tiny_root, tmp_path, bomb_dir, capsys):
    ck, metrics = tmp_path / "ck.pt", tmp_path / "m.jsonl"
    code = main(
        common(tiny_root, "--plugin-dir", str(bomb_dir), "--optimizer", "bomb_nan_weights")
        + ["--opt-param", "blow_at=20", "--batch-size", "16", "--lr", "0.01", "--epochs", "3"]
        + ["--on-divergence", "rollback", "--save", str(ck), "--metrics-json", str(metrics)]
    )
    out, err = capsys.readouterr()
    assert code == 0
    assert out.rstrip().endswith("Done!")
    assert "rolled back from step 20" in err
    assert "halved to 0.005" in err
    assert [m["epoch"] for m in metrics_lines(metrics)] == [1, 2, 3]
    state = saved_state(ck)
    assert state["position"]["global_step"] == 3 * BATCHES
    assert state["optimizer"]["state_dict"]["param_groups"][0]["lr"] == 0.005
    assert all(bool(torch.isfinite(t).all()) for t in state["model"].values())


def test_bad_spike_factor_is_a_usage_error(tiny_root, capsys):
    assert main(common(tiny_root, "--spike-factor", "0.5")) == 2
    assert "--spike-factor" in capsys.readouterr().err
