"""scikit-learn's estimator checks (``parametrize_with_checks``) on the fastnn.sklearn
estimators: small networks and few epochs (the checks' data sets are tiny), the default backend."""
import pytest

pytest.importorskip("sklearn")
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from fastnn.sklearn import (MLPClassifier, MLPRegressor, NeuralNetClassifier,  # noqa: E402
                            NeuralNetRegressor)

ESTIMATORS = [
    MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=50, random_state=0),
    MLPClassifier(hidden_layer_sizes=(16,), solver="sgd", learning_rate_init=0.1, max_iter=50,
                  random_state=0),
    MLPClassifier(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=200, random_state=0,
                  dtype="float64"),
    MLPRegressor(hidden_layer_sizes=(16,), max_iter=50, learning_rate_init=0.01, random_state=0),
    NeuralNetClassifier(max_epochs=20, lr=0.01, random_state=0),
    NeuralNetRegressor(max_epochs=20, lr=0.01, random_state=0),
]

MINI_BATCH_WEIGHTS = (
    "mini-batch training: a sample weight of k is not k repeated samples, because the repeated "
    "data set is cut into other batches and shuffled otherwise (scikit-learn's own MLPs pass "
    "this check only with solver='lbfgs'; fastnn's lbfgs passes it too, in float64)")


def expected_failures(estimator):
    """The checks each estimator is known to fail, with the reason."""
    if isinstance(estimator, (MLPClassifier, MLPRegressor)) and estimator.solver != "lbfgs":
        return {"check_sample_weight_equivalence_on_dense_data": MINI_BATCH_WEIGHTS,
                "check_sample_weight_equivalence_on_sparse_data": MINI_BATCH_WEIGHTS}
    return {}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failures, xfail_strict=True)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
