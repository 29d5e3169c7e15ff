"""local/grpc_api.py: the local server answers hand-written gRPC calls as TF Serving does.

Requests are built from tensorflow-serving-api protos only (no package code);
each status-code case cites the TF Serving source it follows. The server
(conftest ``two_version_server``) serves versions 1 and 2 of one tiny export.
"""

import grpc
import numpy as np
import pandas as pd
import pytest
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

MODEL = "purchase_intent"
OUTPUT = "purchase_probability"


def shape_proto(shape) -> tensor_shape_pb2.TensorShapeProto:
    return tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in shape])


def string_tensor(rows, events: bool = False, width: int | None = None) -> tensor_pb2.TensorProto:
    """A DT_STRING tensor: strings ``[batch]``, or event lists ``[batch, events]`` right-padded with ""
    (to ``width``, keeping the most recent ``width`` events; default the longest list)."""
    if events:
        width = width or max([len(r) for r in rows] + [1])
        rows = [r[-width:] + [""] * (width - len(r[-width:])) for r in rows]
        shape, flat = [len(rows), width], [v for r in rows for v in r]
    else:
        shape, flat = [len(rows)], list(rows)
    return tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[str(v).encode("utf-8") for v in flat],
                                  tensor_shape=shape_proto(shape))


def float_tensor(values, shape=None) -> tensor_pb2.TensorProto:
    """A DT_FLOAT tensor in ``float_val``, shape ``[len(values)]`` unless given."""
    return tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[float(v) for v in values],
                                  tensor_shape=shape_proto(shape or [len(values)]))


def raw_rows(exported):
    """The fixture's sample plus an empty event inside a session and a float-looking category.

    Returns the frame and the in-memory model's probabilities of exactly these raw values.
    """
    from purchase_intent.preprocessing import raw_batch

    sample = pd.concat([exported["sample"], exported["sample"].iloc[[5]]], ignore_index=True)
    row = len(sample) - 1
    sample.at[row, "item_id"] = ["sku1", "", "sku2"]
    sample.at[row, "event_type"] = ["view", "", "cart"]
    sample.at[row, "item_title"] = ["red mug", "", "blue mug"]
    sample.at[row, "country"] = "3.0"
    schema = exported["schema"]
    expected = exported["model"](exported["pre"](raw_batch(sample, schema)), training=False)
    return sample, np.asarray(expected).reshape(-1)


def predict_request(sample, schema, **spec) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = spec.pop("name", MODEL)
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    for name in schema.text + schema.categorical:
        request.inputs[name].CopyFrom(string_tensor(list(sample[name])))
    for name in schema.sequence_like:
        request.inputs[name].CopyFrom(string_tensor([list(v) for v in sample[name]], events=True))
    for name in schema.numeric:
        request.inputs[name].CopyFrom(float_tensor(list(sample[name])))
    return request


@pytest.fixture(scope="module")
def stubs(two_version_server):
    with grpc.insecure_channel(two_version_server.target) as channel:
        yield (prediction_service_pb2_grpc.PredictionServiceStub(channel),
               model_service_pb2_grpc.ModelServiceStub(channel))


def call_error(fn, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        fn(request, timeout=30)
    return info.value


def test_predict_equals_in_memory_model(stubs, exported):
    predict, _ = stubs
    sample, expected = raw_rows(exported)
    for spec in ({}, {"version": 1}, {"version_label": "canary"}):
        response = predict.Predict(predict_request(sample, exported["schema"], **spec), timeout=30)
        out = response.outputs[OUTPUT]
        assert out.dtype == types_pb2.DT_FLOAT and [d.size for d in out.tensor_shape.dim] == [len(sample)]
        np.testing.assert_allclose(np.array(out.float_val, np.float32), expected, atol=1e-5)
        assert response.model_spec.version.value == spec.get("version", 2)


def test_empty_batch_is_ok_with_shape_0(stubs, exported):
    """TF Serving runs the signature on zero rows; the answer has shape [0]."""
    predict, _ = stubs
    response = predict.Predict(predict_request(exported["sample"].head(0), exported["schema"]), timeout=30)
    assert [d.size for d in response.outputs[OUTPUT].tensor_shape.dim] == [0]
    assert list(response.outputs[OUTPUT].float_val) == []


def test_unknown_version_label_is_invalid_argument(stubs, exported):
    """server_core.cc: "Unrecognized servable version label" is INVALID_ARGUMENT, not NOT_FOUND."""
    predict, _ = stubs
    error = call_error(predict.Predict, predict_request(exported["sample"], exported["schema"],
                                                        version_label="beta"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Unrecognized servable version label: beta" in error.details()


def test_status_ignores_the_label_and_lists_versions_newest_first(stubs):
    """get_model_status_impl.cc reads model_spec.version only; VersionMap is std::greater-ordered."""
    _, model = stubs
    for spec in ({}, {"version_label": "stable"}, {"version_label": "no-such-label"}):
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = MODEL
        for key, value in spec.items():
            setattr(request.model_spec, key, value)
        response = model.GetModelStatus(request, timeout=30)
        assert [(s.version, s.state) for s in response.model_version_status] == [
            (2, get_model_status_pb2.ModelVersionStatus.AVAILABLE),
            (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)], spec
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL
    request.model_spec.version.value = 7
    error = call_error(model.GetModelStatus, request)
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "Could not find version 7 of model purchase_intent" in error.details()


def test_duplicate_output_filter_is_invalid_argument(stubs, exported):
    """predict_util.cc: a repeated alias is "duplicate output tensor alias"; an unknown one is refused too."""
    predict, _ = stubs
    request = predict_request(exported["sample"], exported["schema"])
    request.output_filter.extend([OUTPUT, OUTPUT])
    error = call_error(predict.Predict, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"duplicate output tensor alias: {OUTPUT}" in error.details()
    del request.output_filter[:]
    request.output_filter.append("logits")
    error = call_error(predict.Predict, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "output tensor alias not found in signature: logits" in error.details()


def test_metadata_lists_every_signature_including_the_init_op(stubs, exported):
    """get_model_metadata_impl.cc copies every SignatureDef of the MetaGraph, __saved_model_init_op too."""
    predict, _ = stubs
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = MODEL
    request.model_spec.version_label = "stable"
    response = predict.GetModelMetadata(request, timeout=30)
    assert response.model_spec.version.value == 1
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    assert set(signatures.signature_def) == {"serving_default", "__saved_model_init_op"}
    serving = signatures.signature_def["serving_default"]
    assert set(serving.inputs) == set(exported["schema"].feature_names)
    assert serving.method_name == "tensorflow/serving/predict"


@pytest.mark.parametrize("method", ["Classify", "Regress"])
def test_classify_and_regress_answer_as_tf_serving(stubs, method):
    """classifier.cc / regressor.cc: a signature with several inputs is INVALID_ARGUMENT; a model
    that does not exist is NOT_FOUND first."""
    predict, _ = stubs
    request = (classification_pb2.ClassificationRequest() if method == "Classify"
               else regression_pb2.RegressionRequest())
    request.model_spec.name = MODEL
    request.input.example_list.examples.add()
    error = call_error(getattr(predict, method), request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Expected one input Tensor." in error.details()
    request.model_spec.name = "nope"
    assert call_error(getattr(predict, method), request).code() == grpc.StatusCode.NOT_FOUND


def caller_table(exported):
    """A table as a caller holds it, raw: what a Java backend would put in a request as is.

    Rows 0-3 of the fixture's sample (an empty session, an unseen category, a
    missing number, 250 events), then interior empty events with trailing
    padding, an unseen item, float-looking categoricals, a last event empty in
    some sequence columns only and an over-long session with empty events inside.
    """
    table = exported["sample"].head(8).copy().reset_index(drop=True)
    table["country"] = table["country"].astype(object)
    table.at[4, "item_id"] = ["sku1", "", "sku2", ""]
    table.at[4, "event_type"] = ["view", "", "cart", ""]
    table.at[4, "item_title"] = ["red mug", "", "blue mug", ""]
    table.at[5, "item_id"] = ["", "never-seen-sku", "sku3"]
    table.at[5, "event_type"] = ["", "view", "view"]
    table.at[5, "item_title"] = ["", "a title never seen", "red mug"]
    table.at[5, "country"] = 3.0
    table.at[6, "country"] = "-2.000"
    table.at[6, "item_id"] = ["sku1", "sku2", ""]  # the last event has an item, no type
    table.at[6, "event_type"] = ["view", "", ""]
    table.at[6, "item_title"] = ["red mug", "", ""]
    table.at[7, "item_id"] = ["" if i % 7 == 3 else f"sku{i % 40}" for i in range(260)]
    table.at[7, "event_type"] = ["" if i % 7 == 3 else "view" for i in range(260)]
    table.at[7, "item_title"] = ["" if i % 7 == 3 else "red mug" for i in range(260)]
    return table


def test_raw_request_equals_the_python_predictor_on_the_same_table(stubs, exported):
    """One contract: a hand-written request of the raw values (no package code) and the
    Predictor (schema.validate + contract packing) give the same probabilities."""
    from purchase_intent.predict import Predictor

    predict, _ = stubs
    table = caller_table(exported)
    expected = Predictor(exported["vdir"]).predict(table)
    response = predict.Predict(predict_request(table, exported["schema"]), timeout=30)
    np.testing.assert_allclose(np.array(response.outputs[OUTPUT].float_val, np.float32), expected,
                               atol=1e-6)


def test_client_with_the_export_contract_equals_a_raw_request(stubs, exported, two_version_server):
    from purchase_intent.serving.client import PurchaseIntentClient

    predict, _ = stubs
    table = caller_table(exported)
    raw = np.array(predict.Predict(predict_request(table, exported["schema"]), timeout=30)
                   .outputs[OUTPUT].float_val, np.float32)
    with PurchaseIntentClient(two_version_server.target, contract=exported["vdir"]) as client:
        assert client.sequence_length == exported["pre"].wide_length
        np.testing.assert_allclose(client.predict(table), raw, atol=1e-6)


MULTI_INFERENCE_CASES = {
    # case: (tasks as (model, signature, method), code, text in the message)
    "no task": ([], grpc.StatusCode.INVALID_ARGUMENT, "name"),
    "unknown model": ([("nope", "", "tensorflow/serving/classify")], grpc.StatusCode.NOT_FOUND, "nope"),
    "unknown signature": ([(MODEL, "nope", "tensorflow/serving/classify")], grpc.StatusCode.INVALID_ARGUMENT,
                          "Requested signature not found in model graph: nope"),
    "classify": ([(MODEL, "", "tensorflow/serving/classify"), (MODEL, "other", "tensorflow/serving/regress")],
                 grpc.StatusCode.INVALID_ARGUMENT, "Expected one input Tensor."),
    "regress": ([(MODEL, "", "tensorflow/serving/regress")], grpc.StatusCode.INVALID_ARGUMENT,
                "Expected one input Tensor."),
    "predict method": ([(MODEL, "", "tensorflow/serving/predict")], grpc.StatusCode.UNIMPLEMENTED,
                       "Unsupported signature method_name: tensorflow/serving/predict"),
}


@pytest.mark.parametrize("case", list(MULTI_INFERENCE_CASES))
def test_multi_inference_answers_as_tf_serving(stubs, case):
    """multi_inference_helper.cc resolves the first task's model spec; multi_inference.cc then fails the
    first task: unknown signature INVALID_ARGUMENT, classify/regress on a several-input signature
    INVALID_ARGUMENT, another method UNIMPLEMENTED."""
    from tensorflow_serving.apis import inference_pb2

    predict, _ = stubs
    tasks, code, text = MULTI_INFERENCE_CASES[case]
    request = inference_pb2.MultiInferenceRequest()
    for model, signature, method in tasks:
        task = request.tasks.add(method_name=method)
        task.model_spec.name = model
        task.model_spec.signature_name = signature
    request.input.example_list.examples.add()
    error = call_error(predict.MultiInference, request)
    assert error.code() == code, error.details()
    assert text in error.details()


def test_answers_are_the_session_paths_bit_for_bit(stubs, exported):
    """The server runs the export as TF Serving does (TF1 loader, Session, Grappler on): its answer is
    SessionModel's, to the bit, for the raw values it decoded."""
    from purchase_intent.serving.codec import tensor_proto_to_ndarray
    from purchase_intent.serving.session import SessionModel

    predict, _ = stubs
    sample, _ = raw_rows(exported)
    request = predict_request(sample, exported["schema"])
    got = np.array(predict.Predict(request, timeout=30).outputs[OUTPUT].float_val, np.float32)
    session = SessionModel(exported["vdir"])
    want = session({k: tensor_proto_to_ndarray(v) for k, v in request.inputs.items()})[OUTPUT]
    np.testing.assert_array_equal(got, want)


def test_numbers_shaped_n_by_1_are_accepted_with_the_n_answer(stubs, exported):
    """predict_util.cc checks no shapes and a Session feeds a [N, 1] tensor to a [?] placeholder: the
    graph flattens the numbers, so TF Serving answers the [N] request's probabilities. A string input
    sent [N, 1] is rejected by the graph: INVALID_ARGUMENT naming the input and its rank."""
    predict, _ = stubs
    sample, schema = exported["sample"], exported["schema"]
    request = predict_request(sample, schema)
    expected = np.array(predict.Predict(request, timeout=30).outputs[OUTPUT].float_val, np.float32)
    for name in schema.numeric:
        request.inputs[name].CopyFrom(float_tensor(list(sample[name]), shape=[len(sample), 1]))
    response = predict.Predict(request, timeout=30)
    assert [d.size for d in response.outputs[OUTPUT].tensor_shape.dim] == [len(sample)]
    np.testing.assert_array_equal(np.array(response.outputs[OUTPUT].float_val, np.float32), expected)
    request.inputs["country"].tensor_shape.CopyFrom(shape_proto([len(sample), 1]))
    error = call_error(predict.Predict, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input 'country' has rank 2 (shape [24, 1]), expected rank 1" in error.details()


def test_status_with_an_empty_or_unknown_model_name_is_not_found(stubs):
    """get_model_status_impl.cc looks the name up in the servable state monitor: the empty name has no
    versions (NOT_FOUND), like any unknown name; only a request without model_spec is INVALID_ARGUMENT."""
    _, model = stubs
    for name, version, text in (("", None, "Could not find any versions of model "),
                                ("", 1, "Could not find version 1 of model "),
                                ("nope", None, "Could not find any versions of model nope")):
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = name
        if version is not None:
            request.model_spec.version.value = version
        error = call_error(model.GetModelStatus, request)
        assert error.code() == grpc.StatusCode.NOT_FOUND, (name, version)
        assert text in error.details()
    error = call_error(model.GetModelStatus, get_model_status_pb2.GetModelStatusRequest())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Missing ModelSpec" in error.details()


def test_sequence_inputs_of_different_widths_are_told_to_pad_to_the_contract(stubs, exported):
    """The graph would read the padding, but batched TF Serving cannot join requests of different widths:
    the stand-in refuses them, naming the inputs and widths and the contract's max_events."""
    from purchase_intent.contract import read_contract

    predict, _ = stubs
    sample, schema = exported["sample"], exported["schema"]
    max_events = read_contract(exported["vdir"])["max_events"]
    request = predict_request(sample, schema)
    for name in schema.sequence_like:
        request.inputs[name].CopyFrom(string_tensor([list(v) for v in sample[name]], events=True,
                                                    width=max_events))
    at_contract_width = predict.Predict(request, timeout=30).outputs[OUTPUT].float_val
    np.testing.assert_allclose(np.array(at_contract_width, np.float32), exported["expected"], atol=1e-5)
    request.inputs["item_id"].CopyFrom(string_tensor([list(v) for v in sample["item_id"]], events=True,
                                                     width=max_events + 3))
    error = call_error(predict.Predict, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"'item_id' {max_events + 3}" in error.details() and f"'event_type' {max_events}" in error.details()
    assert f'pad with "" to {max_events} events (contract.json max_events)' in error.details()
