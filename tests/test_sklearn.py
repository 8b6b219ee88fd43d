"""fastnn.sklearn against scikit-learn's own MLPs: the same trajectory (float64, no shuffling),
partial_fit, sample weights, multi-label and multi-output targets, and the scikit-learn tools
(clone, Pipeline, GridSearchCV with processes, cross_val_score). The estimator checks are in
test_sklearn_checks.py."""
import pickle
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
from sklearn import neural_network as sk  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import fastnn as fn  # noqa: E402
from fastnn.sklearn import (MLPClassifier, MLPRegressor, NeuralNetClassifier,  # noqa: E402
                            NeuralNetRegressor)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def data(n=60, d=5, kind="multiclass", seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    score = X @ rng.normal(size=(d, 3))
    if kind == "multiclass":
        return X, score.argmax(axis=1)
    if kind == "binary":
        return X, np.where(score[:, 0] > 0, "yes", "no")
    if kind == "multilabel":
        return X, (score > 0).astype(int)
    return X, score[:, :2] if kind == "multioutput" else score[:, 0]


def assert_same_fit(ours, theirs, rtol=1e-9):
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=rtol)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)
    assert ours.n_iter_ == theirs.n_iter_ and ours.t_ == theirs.t_


COMMON = dict(hidden_layer_sizes=(7, 4), max_iter=6, shuffle=False, random_state=3,
              batch_size=16)
SGD_CASES = {
    "invscaling-nesterov-l2": dict(solver="sgd", learning_rate="invscaling", power_t=0.3,
                                   learning_rate_init=0.2, alpha=0.1, activation="tanh"),
    "constant-momentum": dict(solver="sgd", momentum=0.5, nesterovs_momentum=False,
                              learning_rate_init=0.1, alpha=0.0, activation="logistic"),
    "adaptive": dict(solver="sgd", learning_rate="adaptive", learning_rate_init=0.05,
                     tol=10.0, n_iter_no_change=1, max_iter=8, alpha=1e-3),
}


@pytest.mark.parametrize("case", sorted(SGD_CASES))
@pytest.mark.parametrize("kind", ["multiclass", "binary", "multilabel"])
def test_classifier_sgd_follows_scikit_learn(case, kind):
    """Same initial weights, loss, L2 term, momentum and schedules: the same numbers."""
    X, y = data(kind=kind)
    params = {**COMMON, **SGD_CASES[case]}
    ours = MLPClassifier(**params, dtype="float64", backend="numpy").fit(X, y)
    theirs = sk.MLPClassifier(**params).fit(X, y)
    assert_same_fit(ours, theirs)
    assert ours.out_activation_ == theirs.out_activation_
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-9)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


def test_adaptive_schedule_divides_the_rate():
    X, y = data()
    params = {**COMMON, **SGD_CASES["adaptive"]}
    ours = MLPClassifier(**params, dtype="float64").fit(X, y)
    assert ours._optimizer.lr < params["learning_rate_init"] / 4      # divided by 5 at least once


@pytest.mark.parametrize("kind", ["regression", "multioutput"])
def test_regressor_sgd_follows_scikit_learn(kind, backend):
    X, y = data(kind=kind)
    params = {**COMMON, **SGD_CASES["invscaling-nesterov-l2"], "learning_rate_init": 0.02}
    ours = MLPRegressor(**params, dtype="float64", backend=backend).fit(X, y)
    theirs = sk.MLPRegressor(**params).fit(X, y)
    assert_same_fit(ours, theirs, rtol=1e-8)
    assert ours.predict(X).shape == y.shape


def test_adam_and_sample_weight_follow_scikit_learn():
    """Adam with scikit-learn's epsilon (see the module doc), and
    sample weights take the weighted loss and the L2 term over the batch's weight sum."""
    X, y = data()
    w = np.random.default_rng(1).integers(0, 4, len(y)).astype(float)
    params = dict(COMMON, solver="adam", learning_rate_init=0.05, alpha=0.01)
    ours = MLPClassifier(**params, dtype="float64").fit(X, y)
    theirs = sk.MLPClassifier(**params).fit(X, y)
    assert_same_fit(ours, theirs, rtol=1e-9)
    params = dict(COMMON, **SGD_CASES["invscaling-nesterov-l2"])
    ours = MLPClassifier(**params, dtype="float64").fit(X, y, sample_weight=w)
    theirs = sk.MLPClassifier(**params).fit(X, y, sample_weight=w)
    assert_same_fit(ours, theirs)


def test_early_stopping_as_scikit_learn():
    X, y = data(n=80)
    params = dict(COMMON, solver="sgd", learning_rate_init=0.1, early_stopping=True,
                  validation_fraction=0.25, n_iter_no_change=2, max_iter=30, tol=0.05)
    ours = MLPClassifier(**params, dtype="float64").fit(X, y)
    theirs = sk.MLPClassifier(**params).fit(X, y)
    assert ours.validation_scores_ == theirs.validation_scores_
    assert ours.best_validation_score_ == theirs.best_validation_score_
    assert ours.best_loss_ is None and ours.n_iter_ == theirs.n_iter_ < 30
    for a, b in zip(ours.coefs_, theirs.coefs_):      # the best epoch's weights restored
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_lbfgs_reaches_scikit_learns_loss():
    X, y = data(n=80)
    params = dict(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=300, random_state=0,
                  alpha=1e-2)
    ours = MLPClassifier(**params, dtype="float64").fit(X, y)
    theirs = sk.MLPClassifier(**params).fit(X, y)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=0.2, abs=1e-3)
    assert ours.score(X, y) >= theirs.score(X, y) - 0.05
    assert not hasattr(ours, "loss_curve_")


def test_partial_fit_is_one_epoch_keeping_the_optimizer_state():
    X, y = data()
    params = dict(COMMON, solver="sgd", momentum=0.9, learning_rate_init=0.05)
    with pytest.raises(ValueError, match="classes"):
        MLPClassifier(**params).partial_fit(X, y)
    inc = MLPClassifier(**params, dtype="float64")
    for i in range(3):
        inc.partial_fit(X[y != 2] if i == 0 else X, y[y != 2] if i == 0 else y,
                        classes=[0, 1, 2] if i == 0 else None)
        assert inc.n_iter_ == 1 and len(inc.loss_curve_) == i + 1
    assert list(inc.classes_) == [0, 1, 2] and inc.t_ == (y != 2).sum() + 2 * len(y)
    # two partial_fit calls are the two epochs of one fit: the momentum buffer is carried over
    ref = MLPClassifier(**params, dtype="float64")
    ref.partial_fit(X, y, classes=[0, 1, 2]).partial_fit(X, y)
    again = MLPClassifier(**{**params, "max_iter": 2}, dtype="float64").fit(X, y)
    np.testing.assert_allclose(ref.loss_curve_, again.loss_curve_, rtol=1e-9)
    for a, b in zip(ref.coefs_, again.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-9)
    with pytest.raises(ValueError, match="classes"):
        inc.partial_fit(X, y + 5)
    with pytest.raises(AttributeError, match="partial_fit"):
        MLPClassifier(solver="lbfgs").partial_fit(X, y, classes=[0, 1, 2])


def test_multilabel_and_multioutput_shapes():
    X, Y = data(kind="multilabel")
    clf = MLPClassifier((8,), max_iter=30, learning_rate_init=0.05, random_state=0).fit(X, Y)
    assert clf.predict(X).shape == Y.shape and clf.predict_proba(X).shape == Y.shape
    assert clf.out_activation_ == "logistic" and clf.score(X, Y) > 0.5
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X)), clf.predict_proba(X),
                               rtol=1e-6)
    X, Y = data(kind="multioutput")
    reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=200, learning_rate_init=0.05,
                       random_state=0).fit(X, Y)
    assert reg.predict(X).shape == Y.shape and reg.score(X, Y) > 0.8


def test_fitted_model_is_a_fastnn_sequential_and_pickles():
    X, y = data(kind="binary")
    clf = MLPClassifier((6,), max_iter=5, random_state=0, backend="numpy").fit(X, y)
    assert isinstance(clf.model_, fn.Sequential) and clf.model_.backend == "numpy"
    assert [c.shape for c in clf.coefs_] == [(5, 6), (6, 1)]
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))


def test_clone_pipeline_cross_val_score_and_grid_search_in_processes():
    X, y = load_digits(return_X_y=True)
    X, y = X[:300], y[:300]
    est = MLPClassifier((16,), max_iter=15, learning_rate_init=0.01, random_state=0,
                        n_threads=1)
    twin = clone(est)
    assert twin.get_params() == est.get_params() and not hasattr(twin, "model_")
    pipe = make_pipeline(StandardScaler(), est)
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.mean() > 0.7
    search = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1e-1]}, cv=2, n_jobs=2)
    search.fit(X, y)
    assert len(search.cv_results_["mean_test_score"]) == 2
    assert search.best_estimator_.score(X, y) > 0.8


def _small_cnn(input_shape, n_outputs):
    c, h, w = input_shape
    return [fn.Conv2D(c, 4, 3), fn.ReLU(), fn.MaxPool2D(2), fn.Flatten(),
            fn.Dense(4 * ((h - 2) // 2) * ((w - 2) // 2), n_outputs)]


def test_neural_net_classifier_runs_a_cnn_in_a_pipeline():
    X, y = load_digits(return_X_y=True)
    X, y = X[:300] / 16, y[:300]
    net = NeuralNetClassifier(_small_cnn, input_shape=(1, 8, 8), max_epochs=8, lr=0.01,
                              random_state=0, backend="cpu")
    pipe = make_pipeline(StandardScaler(), net).fit(X, y)
    assert pipe.score(X, y) > 0.8 and pipe.predict_proba(X).shape == (300, 10)
    assert len(net.loss_curve_) == 8 and net.loss_curve_[-1] < net.loss_curve_[0]
    net.partial_fit(StandardScaler().fit_transform(X), y)
    assert len(net.loss_curve_) == 9 and net.n_iter_ == 1


def test_neural_net_regressor_with_callbacks_and_optimizer_class():
    X, y = data(n=80, kind="regression")
    net = NeuralNetRegressor(optimizer=fn.optim.SGD, lr=0.05, max_epochs=50, random_state=0,
                             callbacks=[fn.EarlyStopping(monitor="loss", patience=2)])
    net.fit(X, y)
    assert isinstance(net.optimizer_, fn.optim.SGD) and net.score(X, y) > 0.8
    assert net.n_iter_ == len(net.history_.epoch) <= 50


def test_parameter_errors_say_what_is_wrong():
    X, y = data()
    with pytest.raises(ValueError, match="solver"):
        MLPClassifier(solver="newton").fit(X, y)
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        MLPClassifier(hidden_layer_sizes=(0,)).fit(X, y)
    with pytest.raises(ValueError, match="poisson"):
        MLPRegressor(loss="poisson").fit(X, y.astype(float))
    with pytest.raises(ValueError, match="input_shape"):
        NeuralNetClassifier(input_shape=(2, 2)).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        with pytest.raises(ConvergenceWarning):
            MLPClassifier((4,), max_iter=2, random_state=0).fit(X, y)
