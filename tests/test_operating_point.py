"""TAR at a fixed threshold and at a FAR, on constructed score sets whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from advface_fast.metrics import cross_identity_scores, operating_point, threshold_at_far


def test_threshold_lets_through_at_most_far_of_the_impostors():
    imp = np.arange(1000) / 1000.0  # 0.000 .. 0.999
    thr = threshold_at_far(imp, 1e-2)  # 10 impostors may pass: those above the 11th highest
    assert thr == pytest.approx(0.989) and (imp > thr).sum() == 10
    assert (imp > threshold_at_far(imp, 1e-3)).sum() == 1


def test_ties_at_the_threshold_are_rejected_so_far_never_exceeds_the_target():
    imp = np.array([0.9] * 5 + [0.1] * 995)
    op = operating_point(np.array([0.95, 0.9, 0.5]), imp, 1e-3)
    assert op.far == 0 and op.far <= 1e-3 and op.threshold == 0.9
    assert op.tar == pytest.approx(1 / 3)  # only the genuine score strictly above 0.9


def test_tar_at_a_fixed_threshold_and_at_a_fitted_one():
    rng = np.random.default_rng(0)
    imp = rng.normal(0, 0.1, 100_000)
    gen = np.concatenate([np.full(90, 0.8), np.full(10, 0.2)])
    fitted = operating_point(gen, imp, 1e-4)
    assert fitted.impostors == 100_000 and fitted.genuine == 100 and fitted.far <= 1e-4
    assert 0.2 < fitted.threshold < 0.8 and fitted.tar == 0.9
    fixed = operating_point(gen, imp, threshold=0.1)
    assert fixed.far_target is None and fixed.tar == 1.0 and fixed.far == pytest.approx((imp > 0.1).mean())
    with pytest.raises(ValueError, match="not both"):
        operating_point(gen, imp, 1e-3, threshold=0.5)


@pytest.mark.parametrize("n, far", [(999, 1e-3), (3000, 1e-4), (0, 1e-3)])
def test_a_far_the_impostors_cannot_measure_is_refused(n, far):
    with pytest.raises(ValueError, match=r"cannot measure|no impostor"):
        threshold_at_far(np.zeros(n), far)


def test_cross_identity_scores_are_every_pair():
    g = np.eye(3)
    p = np.array([[1.0, 0, 0], [0, 2.0, 0]])
    gen, imp = cross_identity_scores(p, np.array([0, 1]), g, np.array([0, 1, 2]))
    assert sorted(gen) == [1.0, 1.0] and len(imp) == 4 and (imp == 0).all()
    with pytest.raises(ValueError, match="zero template"):
        cross_identity_scores(np.zeros((1, 3)), np.array([0]), g, np.array([0, 1, 2]))


def test_a_protected_gallery_at_the_clean_threshold_and_refit():
    """Constructed: protection lowers every genuine score by 0.1 and leaves impostors alone; at the
    clean threshold TAR falls, a re-fitted threshold (impostors unchanged) is the same one."""
    from advface_fast.metrics.operating_point import protected_gallery_operating_points

    rng = np.random.default_rng(1)
    d, people = 64, 90
    clean = rng.standard_normal((people, d))
    clean /= np.linalg.norm(clean, axis=1, keepdims=True)
    probes = clean + 0.05 * rng.standard_normal((people, d))
    same = np.eye(people, dtype=bool)
    r = protected_gallery_operating_points(clean, clean, probes, same)
    assert r["impostors"] == people * (people - 1) and r["genuine"] == people
    op = r["0.001"]
    assert op["tar_clean"] == 1.0 and op["at_clean_threshold"]["tar"] == 1.0
    assert op["refit"]["threshold"] == op["clean_threshold"]
    assert r["0.0001"] is None  # 8,010 impostors cannot measure 1e-4
    far_away = rng.standard_normal((people, d))  # a "protection" that destroys recognition
    bad = protected_gallery_operating_points(far_away, clean, probes, same)["0.001"]
    assert bad["at_clean_threshold"]["tar"] < 0.05 and bad["refit"]["far"] <= 1e-3


def test_a_rotated_gallery_with_rotated_probes_costs_nothing_and_unrotated_probes_fail():
    """``protected_probes``: the probes as the matcher compares them with a rotated gallery. The
    rotation keeps every score, so TAR equals the clean TAR at both thresholds; scored with the
    unrotated probes (a matcher that forgot the key) the genuine scores collapse."""
    from advface_fast.metrics.operating_point import protected_gallery_operating_points
    from advface_fast.rotation import rotate

    rng = np.random.default_rng(0)
    people = rng.standard_normal((300, 32))
    gallery = people + 0.3 * rng.standard_normal(people.shape)
    probes = people + 0.3 * rng.standard_normal(people.shape)
    same = np.eye(300, dtype=bool)
    key = b"operating-point-rotation-key-000"
    g_rot, p_rot = rotate(gallery, key), rotate(probes, key)
    op = protected_gallery_operating_points(g_rot, gallery, probes, same, protected_probes=p_rot)["0.001"]
    assert op["at_clean_threshold"]["tar"] == pytest.approx(op["tar_clean"], abs=1e-9)
    assert op["refit"]["tar"] == pytest.approx(op["tar_clean"], abs=1e-9)
    assert op["tar_clean"] > 0.9
    forgot = protected_gallery_operating_points(g_rot, gallery, probes, same)["0.001"]
    assert forgot["at_clean_threshold"]["tar"] < 0.1


def test_the_threat_reports_cost_table_shows_tar_where_measured():
    from advface_fast.eval.threat.report import utility_table

    op = {"0.001": {"at_clean_threshold": {"tar": 0.9512}, "refit": {"tar": 0.97}}}
    rows = utility_table({"a": {"acc": 99.0, "acc_std": 0.5, "operating_point": op}, "b": {"acc": 98.0, "acc_std": 1}},
                         ["a", "b"])  # fmt: skip
    assert rows[2] == "| a | 99.00 ± 0.50 | 95.12 | 97.00 |"
    assert rows[3] == "| b | 98.00 ± 1.00 | n/a | n/a |"  # a committed run from before the operating point
