import pytest

from sibyl.errors import InvalidArgument
from sibyl.models.predictor import ModelRef, PredictorConfig
from sibyl.serving.routing import choose
from sibyl.v1.predict_pb2 import Role


def test_experiment_split_is_close_to_share_and_stable() -> None:
    config = PredictorConfig(name="p", primary="a@1", experiments=[{"name": "b", "model": "b@1", "traffic": 0.2}])
    arms = [choose(config, {"consumer_id": str(i)}).arm for i in range(10_000)]
    share = arms.count("b") / len(arms)
    assert 0.18 < share < 0.22
    again = [choose(config, {"consumer_id": str(i)}).arm for i in range(10_000)]
    assert arms == again


def test_route_roles() -> None:
    config = PredictorConfig(name="p", primary="a@1", experiments=[{"name": "b", "model": "b@1", "traffic": 1.0}])
    assert choose(config, {}).role == Role.ROLE_PRIMARY  # no unit id: primary
    assert choose(config, {"consumer_id": "1"}).role == Role.ROLE_EXPERIMENT
    assert choose(config, {"consumer_id": "1"}, "c@2").model == ModelRef("c", "2")


def test_refs_are_checked() -> None:
    with pytest.raises(InvalidArgument):
        ModelRef.parse("a/../b")
    with pytest.raises(ValueError, match="must name a version"):
        PredictorConfig(name="p", primary="a")
