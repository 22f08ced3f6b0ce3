"""``cryodiff benchmark`` refuses bad input with one line naming the problem (no run starts)."""

from __future__ import annotations

import pytest

from cryodiff.cli import main


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert err.startswith("cryodiff: error:")
    return err


def test_unknown_preset(tmp_path, capsys):
    assert main(["benchmark", "--preset", "laptop", "--out", str(tmp_path)]) == 2
    assert "unknown preset 'laptop'" in _error(capsys)
    assert not (tmp_path / "results.json").exists()


def test_missing_map(tmp_path, capsys):
    missing = tmp_path / "nope.mrc"
    assert main(["benchmark", "--map", str(missing), "--out", str(tmp_path / "o")]) == 2
    assert f"{missing}: map not found" in _error(capsys)


def test_map_that_is_not_an_mrc(tmp_path, capsys):
    text = tmp_path / "notes.mrc"
    text.write_text("not a map")
    assert main(["benchmark", "--map", str(text), "--out", str(tmp_path / "o"),
                 "--skip", "lowpass", "wiener", "bm3d", "topaz", "noise2noise", "supervised",
                 "cwf", "sr3"]) == 2
    assert str(text) in _error(capsys)


@pytest.mark.parametrize("argv, message", [
    (["--skip", "magic"], "unknown method(s) for --skip: magic"),
    (["--only", "sr3", "magic"], "unknown method(s) for --only: magic"),
    (["--snr", "0"], "SNRs must be positive"),
    (["--pixel-size", "-1"], "--pixel-size must be positive"),
    (["--train-steps", "0"], "--train-steps must be positive"),
    (["--pm-draws", "0"], "--pm-draws"),
])
def test_bad_options(tmp_path, capsys, argv, message):
    assert main(["benchmark", "--out", str(tmp_path / "o"), *argv]) == 2
    assert message in _error(capsys)


def test_missing_checkpoint(tmp_path, capsys):
    assert main(["benchmark", "--checkpoint", str(tmp_path / "run"), "--out",
                 str(tmp_path / "o")]) == 2
    assert "checkpoint not found" in _error(capsys)


def test_pose_search_is_on_by_default_and_can_be_turned_off():
    import argparse

    from cryodiff.cli.benchmark import add_args, config_from_args

    parser = argparse.ArgumentParser()
    add_args(parser)
    assert config_from_args(parser.parse_args([])).pose_search is True
    assert config_from_args(parser.parse_args(["--no-pose-search"])).pose_search is False


def test_self_ensemble_and_pm_draws_flags():
    import argparse

    from cryodiff.cli.benchmark import add_args, config_from_args

    parser = argparse.ArgumentParser()
    add_args(parser)
    default = config_from_args(parser.parse_args([]))
    assert default.self_ensemble is True and default.pm_draws == 4
    chosen = config_from_args(parser.parse_args(["--no-self-ensemble", "--pm-draws", "8"]))
    assert chosen.self_ensemble is False and chosen.pm_draws == 8


def test_only_runs_the_named_methods_and_excludes_skip():
    import argparse

    from cryodiff.benchmark.config import ALL_METHODS, DEFAULT_METHODS, OPT_IN_METHODS
    from cryodiff.cli.benchmark import add_args, config_from_args

    parser = argparse.ArgumentParser()
    add_args(parser)
    assert config_from_args(parser.parse_args([])).methods == DEFAULT_METHODS
    assert set(DEFAULT_METHODS) == set(ALL_METHODS) - set(OPT_IN_METHODS)
    assert {"sr3-x0ft", "sr3-x0ft-ssim", "supervised-large-2x", "supervised-2x-ssim",
            "supervised-large-2x-ssim", "supervised-large-direct-2x",
            "supervised-large-direct-2x-ssim", "sr3-joint"} == set(OPT_IN_METHODS)
    assert config_from_args(parser.parse_args(["--only", "sr3", "wiener"])).methods == (
        "wiener", "sr3")  # in the preset's order
    # the opt-in methods run when named
    assert config_from_args(parser.parse_args(
        ["--only", "sr3-x0ft", "sr3", "supervised-large-2x"])).methods == (
        "supervised-large-2x", "sr3", "sr3-x0ft")
    skipped = config_from_args(parser.parse_args(["--skip", "sr3", "wiener"])).methods
    assert set(skipped) == set(DEFAULT_METHODS) - {"sr3", "wiener"}
    with pytest.raises(SystemExit):  # argparse: not allowed together
        parser.parse_args(["--only", "sr3", "--skip", "wiener"])


def test_training_seeds_flag_sets_the_seeds_and_keeps_the_data_seed():
    import argparse

    from cryodiff.cli.benchmark import add_args, config_from_args

    parser = argparse.ArgumentParser()
    add_args(parser)
    assert config_from_args(parser.parse_args([])).training_seeds == (0,)  # ci preset
    assert config_from_args(parser.parse_args(["--preset", "cpu-small"])).training_seeds == (
        0, 1, 2)
    config = config_from_args(parser.parse_args(["--training-seeds", "3", "1", "--seed", "7"]))
    assert config.training_seeds == (3, 1) and config.seed == 7


def test_repeated_training_seeds_are_refused(tmp_path, capsys):
    assert main(["benchmark", "--out", str(tmp_path / "o"), "--training-seeds", "1", "1"]) == 2
    assert "training seeds must be distinct" in _error(capsys)
    assert not (tmp_path / "o").exists()
