from tests.registry.conftest import *  # noqa

def test_smoke(reg, sklearn_model_dir):
    create_model(reg)
    body = registered_ready(reg, sklearn_model_dir, input_example=EXAMPLE)
    print(body)
    assert body["status"] == "ready", body
