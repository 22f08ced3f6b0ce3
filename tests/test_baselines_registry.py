import pytest

from cryodiff.baselines import BASELINES, make_baseline
from cryodiff.errors import CryodiffError


@pytest.mark.parametrize("name", list(BASELINES))
def test_every_baseline_is_constructible_and_declares_its_target(name):
    # Construction imports no optional peer: they are needed only when fitting/denoising.
    baseline = make_baseline(name)
    assert baseline.name == name
    assert baseline.target in ("clean_ctf", "clean")


def test_unknown_baseline_and_target_are_user_errors():
    with pytest.raises(CryodiffError, match="unknown baseline"):
        make_baseline("median")
    with pytest.raises(CryodiffError, match="unknown denoising target"):
        make_baseline("lowpass", target="noisy")
