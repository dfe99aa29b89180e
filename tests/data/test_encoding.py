import math

import numpy as np
import pytest

from eventax_lab.data import intensity_to_latency, latency_decode, latency_encode


def test_latency_encode_known_values():
    times = latency_encode(np.array([0.0, 0.25, 1.0]), t_early=0.0, t_late=30.0)
    np.testing.assert_array_equal(times, [0.0, 7.5, 30.0])


def test_latency_encode_reversed_window():
    times = latency_encode(np.array([0.0, 0.5, 1.0]), t_early=20.0, t_late=10.0)
    np.testing.assert_array_equal(times, [20.0, 15.0, 10.0])


@pytest.mark.parametrize("t_early, t_late", [(0.0, 30.0), (5.0, 25.0), (12.0, 2.0)])
def test_latency_roundtrip(t_early, t_late):
    values = np.linspace(0.0, 1.0, 101).reshape(101, 1)
    decoded = latency_decode(latency_encode(values, t_early, t_late), t_early, t_late)
    np.testing.assert_allclose(decoded, values, rtol=0, atol=1e-12)


def test_latency_decode_outside_window():
    np.testing.assert_allclose(latency_decode(np.array([40.0, -10.0]), 0.0, 20.0), [2.0, -0.5])
    assert latency_decode(np.array([np.inf]), 0.0, 20.0)[0] == np.inf


@pytest.mark.parametrize("bad_value", [-0.1, 1.0001, np.nan])
def test_latency_encode_rejects_out_of_range(bad_value):
    with pytest.raises(ValueError, match=r"latency_encode values must lie in \[0, 1\]"):
        latency_encode(np.array([0.5, bad_value]), 0.0, 30.0)


def test_latency_window_must_be_valid():
    with pytest.raises(ValueError, match="t_early and t_late must differ"):
        latency_encode(np.array([0.5]), 10.0, 10.0)
    with pytest.raises(ValueError, match="t_early must be a finite time >= 0 ms"):
        latency_encode(np.array([0.5]), -1.0, 10.0)
    with pytest.raises(ValueError, match="NaN"):
        latency_decode(np.array([np.nan]), 0.0, 10.0)


def test_linear_intensity_known_values():
    intensity = np.array([1.0, 0.5, 0.25, 0.2, 0.0])
    times = intensity_to_latency(intensity, t_max=40.0, threshold=0.2)
    np.testing.assert_array_equal(times, [0.0, 20.0, 30.0, np.inf, np.inf])


def test_log_intensity_known_values():
    threshold = 0.01
    # ln(sqrt(theta)) / ln(theta) = 1/2 and ln(theta^(1/4)) / ln(theta) = 1/4.
    intensity = np.array([1.0, math.sqrt(threshold), threshold**0.25, threshold, 0.0])
    times = intensity_to_latency(intensity, t_max=40.0, threshold=threshold, mode="log")
    np.testing.assert_allclose(times[:3], [0.0, 20.0, 10.0], rtol=1e-12, atol=1e-12)
    assert math.copysign(1.0, times[0]) == 1.0
    assert np.isinf(times[3:]).all()


@pytest.mark.parametrize("mode, threshold", [("linear", 0.0), ("log", 1e-9)])
def test_intensity_times_inside_window(mode, threshold):
    # The intensity just above the threshold rounds to exactly t_max before the clamp.
    intensity = np.array([np.nextafter(threshold, 1.0), 0.3, 1.0])
    times = intensity_to_latency(intensity, t_max=10.0, threshold=threshold, mode=mode)
    assert times[0] == np.nextafter(10.0, 0.0)
    assert np.isfinite(times).all()
    assert (times >= 0).all()
    assert (times < 10.0).all()


def test_intensity_brighter_spikes_earlier():
    intensity = np.linspace(0.05, 1.0, 50)
    for mode in ("linear", "log"):
        times = intensity_to_latency(intensity, t_max=25.0, threshold=0.01, mode=mode)
        assert (np.diff(times) < 0).all(), mode


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(threshold=0.0, mode="log"), r"threshold must lie in \(0, 1\) for mode='log'"),
        (dict(threshold=1.0), r"threshold must lie in \[0, 1\) for mode='linear'"),
        (dict(threshold=0.1, mode="exp"), "mode must be 'linear' or 'log'"),
        (dict(threshold=0.1, t_max=0.0), "t_max must be a finite time > 0 ms"),
    ],
)
def test_intensity_rejects_bad_settings(kwargs, fragment):
    arguments = dict(t_max=10.0) | kwargs
    with pytest.raises(ValueError, match=fragment):
        intensity_to_latency(np.array([0.5]), **arguments)


def test_intensity_rejects_out_of_range_pixels():
    with pytest.raises(ValueError, match=r"intensity must lie in \[0, 1\].*first 255.0"):
        intensity_to_latency(np.array([0.0, 255.0]), t_max=10.0, threshold=0.1)
