"""Temperature scaling and the calibration measures, against direct computations."""

import pytest
import torch
from torchmetrics.functional.classification import multiclass_calibration_error

from labelemb.calibration import (
    TemperatureScaling, adaptive_calibration_error, brier_score, calibration_metrics,
    expected_calibration_error, fit_temperature, reliability_bins,
)


def _sample(n: int, c: int, true_t: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits z and labels drawn from softmax(z / true_t): the NLL-optimal T is true_t."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g, dtype=torch.float64) * 4
    y = torch.multinomial((z / true_t).softmax(1), 1, generator=g).squeeze(1)
    return z.float(), y


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_fit_temperature_recovers_the_temperature_that_generated_the_labels(true_t):
    z, y = _sample(20000, 10, true_t)
    assert fit_temperature(z, y) == pytest.approx(true_t, rel=0.05)


def test_scaling_keeps_every_prediction_and_lowers_the_nll_it_was_fitted_on():
    z, y = _sample(3000, 7, 0.4, seed=1)
    scaler = TemperatureScaling().fit(z, y)
    assert torch.equal(scaler(z).argmax(1), z.argmax(1))
    raw, cal = (calibration_metrics(z, y, temperature=t) for t in (1.0, scaler.temperature.item()))
    assert raw["error"] == cal["error"]
    assert cal["nll"] < raw["nll"] and cal["ece"] < raw["ece"]


def test_temperature_is_saved_in_the_state_dict():
    scaler = TemperatureScaling(0.3)
    other = TemperatureScaling()
    other.load_state_dict(scaler.state_dict())
    assert other.temperature.item() == pytest.approx(0.3)
    assert "temperature=0.3000" in repr(other)


def test_ece_is_torchmetrics_and_the_reliability_bins_add_up_to_it():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(500, 4, generator=g, dtype=torch.float64) * 3, 1)
    target = torch.randint(0, 4, (500,), generator=g)
    ece = expected_calibration_error(probs, target)
    assert ece == pytest.approx(float(multiclass_calibration_error(
        probs, target, num_classes=4, n_bins=15, norm="l1")), abs=1e-6)
    bins = reliability_bins(probs, target)
    assert sum(bins["count"]) == 500 and len(bins["count"]) == 15
    from_bins = sum(n * abs(a - c) for n, a, c in
                    zip(bins["count"], bins["accuracy"], bins["confidence"])) / 500
    assert from_bins == pytest.approx(ece, abs=1e-6)
    assert expected_calibration_error(torch.eye(3), torch.arange(3)) == pytest.approx(0.0)
    # calibration_metrics' bins are those of the temperature-scaled probabilities
    logits = torch.randn(200, 4, generator=g)
    target = target[:200]
    both = calibration_metrics(logits, target, temperature=0.5, bins=True)
    assert both["reliability"] == reliability_bins((logits.double() / 0.5).softmax(1), target)
    assert "reliability" not in calibration_metrics(logits, target)


def test_adaptive_ece_matches_a_direct_loop_over_equal_mass_bins():
    g = torch.Generator().manual_seed(2)
    probs = torch.softmax(torch.randn(301, 5, generator=g, dtype=torch.float64) * 2, 1)
    target = torch.randint(0, 5, (301,), generator=g)
    conf, pred = probs.max(1)
    order = sorted(range(301), key=lambda i: conf[i].item())
    sizes = [301 // 15 + (b < 301 % 15) for b in range(15)]  # the first bins hold one more
    bounds = [sum(sizes[:b]) for b in range(16)]
    total = 0.0
    for lo, hi in zip(bounds, bounds[1:]):
        idx = order[lo:hi]
        acc = sum(float(pred[i] == target[i]) for i in idx) / len(idx)
        total += len(idx) * abs(acc - sum(conf[i].item() for i in idx) / len(idx))
    assert adaptive_calibration_error(probs, target) == pytest.approx(total / 301, abs=1e-9)


def test_brier_score_of_certain_and_of_uniform_predictions():
    y = torch.tensor([0, 2, 1])
    assert brier_score(torch.eye(3)[y], y) == 0.0
    assert brier_score(torch.full((3, 4), 0.25), y) == pytest.approx(0.75)


@pytest.mark.parametrize("logits, target, match", [
    (torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), "empty"),
    (torch.tensor([[0.0, float("nan")]]), torch.tensor([0]), "nan"),
    (torch.zeros(4, 3), torch.zeros(5, dtype=torch.long), "expected logits"),
])
def test_bad_inputs_are_one_clear_error(logits, target, match):
    with pytest.raises(ValueError, match=match):
        fit_temperature(logits, target)
    with pytest.raises(ValueError, match=match):
        calibration_metrics(logits, target)


def test_a_temperature_must_be_positive():
    with pytest.raises(ValueError, match="> 0"):
        TemperatureScaling(0.0)
