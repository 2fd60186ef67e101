"""Evidence for PyTorch models: Integrated Gradients with its completeness check, FGSM/PGD
through ART with adversarial training, DP-SGD through Opacus, and a torch-mlp audited and
carded like a LightGBM model."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("captum")
pytest.importorskip("opacus")

from keel.audit import audit, gate, model_card  # noqa: E402
from keel.audit._attacks_torch import eps_key, tensor_attacks  # noqa: E402
from keel.audit._explain_torch import (  # noqa: E402
    integrated_gradients,
    plot_attributions,
    torch_explanation_evidence,
)
from keel.audit.gates import Policy, evidence_values  # noqa: E402
from keel.data import ingest  # noqa: E402
from keel.datasets import adult, digits, write_digits_npz  # noqa: E402
from keel.errors import InvalidInput  # noqa: E402
from keel.models import TorchModel  # noqa: E402
from keel.train import get_run, train  # noqa: E402
from keel.train._torch import TorchEstimator  # noqa: E402

IMG = {"name": "X", "type": "tensor", "dtype": "float32", "shape": [1, 8, 8]}
SMALL_CNN = {"epochs": 8, "batch_size": 64, "lr": 3e-3, "channels": (8, 16), "dropout": 0.1}


@pytest.fixture(autouse=True, scope="module")
def _threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _policy(*rules: str) -> Policy:
    return Policy.from_settings({"audit": {"policy": list(rules)}})


def _split() -> tuple[np.ndarray, ...]:
    X, y = digits()
    idx = np.random.default_rng(0).permutation(len(X))
    return X[idx[:1300]], y[idx[:1300]], X[idx[1300:]], y[idx[1300:]]


def _cnn(X: np.ndarray, y: np.ndarray, **kw) -> TorchModel:
    est = TorchEstimator("cnn", **{**SMALL_CNN, **kw}).fit(X, y)
    return TorchModel.from_estimator(est, "classification", [IMG])


@pytest.fixture(scope="module")
def cnn():
    Xtr, ytr, Xte, yte = _split()
    return _cnn(Xtr, ytr), Xtr, ytr, Xte, yte


def test_integrated_gradients_are_complete_on_images(cnn):
    model, Xtr, _, Xte, _ = cnn
    res = integrated_gradients(model, model.inputs(Xte[:20]))
    assert res["values"].shape == (20, 1, 8, 8)
    # sum of attributions = f(x) - f(baseline): within 1e-3 relative on nearly every row,
    # and within 2 % on all of them (ReLU kinks are where the path integral is hardest)
    assert np.median(res["gap"]) <= 1e-3 and res["gap"].max() < 0.02
    np.testing.assert_array_equal(res["targets"], model.forward(model.inputs(Xte[:20])).argmax(1))


def test_image_explanations_summarise_pixels_and_plot(cnn, tmp_path):
    model, _, _, Xte, _ = cnn
    ev = torch_explanation_evidence(model, Xte, n_rows=30)
    assert ev["method"] == "integrated_gradients" and ev["space"] == "log_odds"
    m = np.asarray(ev["global"]["mean_abs_map"])
    assert m.shape == (1, 8, 8) and (m >= 0).all()
    assert ev["global"]["top_positions"][0]["mean_abs"] == pytest.approx(m.max())
    comp = ev["completeness"]
    assert comp["rows"] == 30 and comp["tolerance"] == 1e-3
    assert 0 <= comp["max_relative_gap"] < 0.02
    # gateable: explanations.completeness.max_relative_gap
    assert "explanations.completeness.max_relative_gap" in evidence_values({"explanations": ev})
    png = plot_attributions(ev, tmp_path / "ig.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_fgsm_and_pgd_accuracy_fall_with_epsilon_and_are_gateable(cnn):
    model, Xtr, _, Xte, yte = cnn
    rep = tensor_attacks(model, Xte, yte, Xtr, n_rows=100, pgd_iter=10)
    pgd, fgsm = rep["pgd"], rep["fgsm"]
    accs = [pgd[eps_key(e)]["accuracy"] for e in (0.0, 0.05, 0.1, 0.2)]
    assert accs[0] == rep["clean_accuracy"] > 0.9
    assert accs == sorted(accs, reverse=True) and accs[-1] < accs[0]
    assert pgd[eps_key(0.1)]["accuracy"] <= fgsm[eps_key(0.1)]["accuracy"] + 0.02
    assert max(r["max_linf"] for r in pgd["by_eps"]) <= 0.2 + 1e-6
    values = evidence_values({"robustness": rep})
    assert values["robustness.pgd.eps_0_1.accuracy"] == pgd["eps_0_1"]["accuracy"]
    assert _policy("robustness.pgd.eps_0_1.accuracy >= 0.0").rules


@pytest.mark.slow
def test_adversarial_training_raises_pgd_accuracy(cnn):
    plain, Xtr, ytr, Xte, yte = cnn
    hard = _cnn(Xtr, ytr, adv_epsilon=0.1, adv_steps=3, epochs=12)
    before = tensor_attacks(plain, Xte, yte, Xtr, n_rows=150, pgd_iter=10)
    after = tensor_attacks(hard, Xte, yte, Xtr, n_rows=150, pgd_iter=10)
    b, a = before["pgd"]["eps_0_1"]["accuracy"], after["pgd"]["eps_0_1"]["accuracy"]
    print(f"PGD eps 0.1 accuracy: plain {b:.3f}, adversarially trained {a:.3f}")
    assert a >= b + 0.2
    assert after["clean_accuracy"] > 0.9


def test_adversarial_and_dp_parameters_are_checked():
    X, y = digits()
    for bad, name in [
        ({"dp_epsilon": 0}, "dp_epsilon"),
        ({"dp_epsilon": -1.0}, "dp_epsilon"),
        ({"dp_delta": 1.5}, "dp_delta"),
        ({"adv_epsilon": -0.1}, "adv_epsilon"),
        ({"adv_steps": 0}, "adv_steps"),
        ({"adv_epsilon": 0.1, "dp_epsilon": 3.0}, "adv_epsilon"),
    ]:
        with pytest.raises(InvalidInput, match=name):
            TorchEstimator("cnn", epochs=1, **bad).fit(X[:50], y[:50])


def test_an_epsilon_at_or_below_zero_leaves_the_store_unchanged(store, tmp_path):
    ingest(store, write_digits_npz(tmp_path), name="digits")
    with pytest.raises(InvalidInput, match="dp_epsilon"):
        train(store, "digits", "y", model="torch-cnn", params={"dp_epsilon": 0.0})
    from keel.train import list_runs

    assert list_runs(store) == []


def test_dp_sgd_spends_at_most_its_epsilon_and_says_so():
    X, y = digits()
    est = TorchEstimator("mlp", epochs=3, batch_size=64, dp_epsilon=2.0, hidden=(32,))
    est.fit(X[:600].reshape(600, -1), y[:600])
    assert 0 < est.dp_["epsilon"] <= 2.0 + 1e-6 and est.dp_["delta"] == 1e-5
    assert [r["dp_epsilon"] for r in est.history_] == sorted(r["dp_epsilon"] for r in est.history_)
    # the wrapped network is a plain module again, and its weights load into a TorchModel
    assert not any(k.startswith("_module.") for k in est.net_.state_dict())


@pytest.fixture(scope="module")
def adult_store(tmp_path_factory):
    from keel.store import Store

    root = tmp_path_factory.mktemp("torch_audit")
    s = Store.open(f"sqlite:///{root}/store.db", root / "blobs")
    adult("train").sample(2500, random_state=1).to_csv(root / "adult.csv", index=False)
    ingest(s, root / "adult.csv", name="adult")
    yield s, root
    s.close()


@pytest.mark.slow
def test_a_registered_torch_mlp_is_audited_and_carded_like_lightgbm(adult_store):
    store, root = adult_store
    params = {"epochs": 6, "hidden": [32], "dp_epsilon": 4.0}
    res = train(store, "adult", "income", model="torch-mlp", params=params, seed=0)
    mv = res.register(store, "adult")
    run = get_run(store, mv.run_id)
    assert 0 < run["metrics"]["dp_epsilon"] <= 4.0  # the spent ε, recorded on the run
    ev = audit(
        store,
        mv.ref,
        sections=["performance", "fairness", "explanations", "privacy"],
        sensitive=["sex"],
        n_boot=20,
        sample=200,
    )
    doc = ev.doc
    assert doc["performance"]["roc_auc"]["value"] > 0.6
    assert "calibration" in doc["performance"] and "slices" in doc["performance"]
    assert "demographic_parity_difference" in doc["fairness"]["sex"]
    ex = doc["explanations"]
    assert ex["method"] == "integrated_gradients"
    raw = set(ex["global"]["mean_abs_attribution"])
    assert raw <= {c["name"] for c in mv.input_schema} and "age" in raw  # raw columns
    assert ex["completeness"]["rows_within_tolerance"] >= 0.9 * ex["completeness"]["rows"]
    assert ex["surrogate"]["fidelity"]["holdout"] > 0.5 and ex["pdp"]
    dp = doc["privacy"]["dp"]
    assert dp["differentially_private"] and dp["epsilon"] == run["metrics"]["dp_epsilon"]
    assert 0.3 <= doc["privacy"]["mia"]["auc"] <= 0.7
    policy = _policy("privacy.dp.epsilon <= 4", "performance.roc_auc >= 0.6")
    assert gate(store, mv.ref, policy).passed
    assert not gate(store, mv.ref, _policy("privacy.dp.epsilon <= 1")).passed
    card = model_card(store, mv.ref)
    paths = card.write(root / "card")
    text = (root / "card" / "card.md").read_text()
    assert paths and "mean |attribution|" in text and "completeness" in text
