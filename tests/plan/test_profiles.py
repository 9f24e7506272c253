"""Profiles load, carry the published parameter counts, and bad names or files fail in one line."""

from __future__ import annotations

import json

import pytest

from gpudoctor.errors import BadInput
from gpudoctor.plan.memory import total_params
from gpudoctor.profiles import list_gpus, list_models, load_gpu, load_model, match_gpu

# Parameter counts the model cards state (billions).
PUBLISHED_PARAMS_B = {
    "mistral-7b": 7.24,
    "llama-2-7b": 6.74,
    "llama-2-13b": 13.02,
    "llama-2-70b": 68.98,
    "llama-3.1-8b": 8.03,
    "llama-3.1-70b": 70.55,
    "qwen2.5-7b": 7.62,
    "phi-3-mini": 3.82,
    "gemma-2-9b": 9.24,
    "yi-34b": 34.39,
}


def test_the_issue_s_models_and_cards_ship():
    assert set(PUBLISHED_PARAMS_B) <= set(list_models())
    cards = {"rtx-3090", "rtx-3090-ti", "rtx-4080", "rtx-4090", "rtx-a6000", "rtx-6000-ada", "a100-40gb", "a100-80gb", "h100-80gb", "l40s", "rx-7900-xt", "rx-7900-xtx", "radeon-pro-w7900"}
    assert cards <= set(list_gpus())


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS_B))
def test_profile_numbers_give_the_published_parameter_count(name):
    model = load_model(name)
    assert model.hub_id and model.licence
    assert total_params(model) / 1e9 == pytest.approx(PUBLISHED_PARAMS_B[name], rel=0.01)


def test_hub_id_names_the_profile():
    assert load_model("meta-llama/Llama-3.1-8B").name == "llama-3.1-8b"


def test_unknown_model_lists_profiles_and_says_a_folder_works():
    with pytest.raises(BadInput) as err:
        load_model("mistral-8b")
    message = str(err.value)
    assert "mistral-7b" in message and "config.json" in message and "\n" not in message


def _config(**overrides):
    config = {
        "model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100, "max_position_embeddings": 512,
        "tie_word_embeddings": False,
    }  # fmt: skip
    config.update(overrides)
    return config


def test_local_folder_and_config_path(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(_config()))
    from_folder = load_model(str(tmp_path))
    from_file = load_model(str(tmp_path / "config.json"))
    assert from_folder == from_file
    assert (from_folder.hidden_size, from_folder.num_key_value_heads, from_folder.local_path) == (64, 2, str(tmp_path))


def test_multimodal_config_uses_its_text_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava", "text_config": _config()}))
    assert load_model(str(tmp_path)).vocab_size == 100


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps(_config(hidden_size=None)), "key 'hidden_size'"),
        (json.dumps(_config(num_attention_heads="32")), "key 'num_attention_heads'"),
        (json.dumps(_config(num_key_value_heads=-1)), "key 'num_key_value_heads'"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_malformed_config_names_file_and_key(tmp_path, text, needle):
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(BadInput) as err:
        load_model(str(path))
    assert needle in str(err.value) and str(path) in str(err.value)


def test_folder_without_config(tmp_path):
    with pytest.raises(BadInput, match="no config.json"):
        load_model(str(tmp_path))


@pytest.mark.parametrize(
    ("probed", "profile"),
    [
        ("NVIDIA GeForce RTX 3090 Ti", "rtx-3090-ti"),
        ("NVIDIA GeForce RTX 3090", "rtx-3090"),
        ("AMD Radeon RX 7900 XTX", "rx-7900-xtx"),
        ("Radeon RX 7900 XT", "rx-7900-xt"),
        ("NVIDIA RTX 6000 Ada Generation", "rtx-6000-ada"),
        ("NVIDIA A100-SXM4-80GB", "a100-80gb"),
        ("AMD Radeon PRO W7900", "radeon-pro-w7900"),
    ],
)
def test_match_gpu_takes_the_longest_match(probed, profile):
    assert match_gpu(probed).name == profile


def test_unknown_gpu():
    assert match_gpu("Matrox G200") is None
    with pytest.raises(BadInput, match="--vram-gib"):
        load_gpu("rtx-9999")


def test_every_gpu_profile_is_complete():
    for name in list_gpus():
        spec = load_gpu(name)
        assert spec.vendor in ("nvidia", "amd") and spec.vram_gib >= 16 and spec.peak_bf16_tflops > 0 and spec.match


def test_tie_word_embeddings_defaults_follow_the_architecture(tmp_path):
    import json

    from gpudoctor.profiles import load_model

    base = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100}
    for model_type, tied in (("mistral", False), ("llama", False), ("gemma2", True), ("something-new", True)):
        path = tmp_path / f"{model_type}.json"
        path.write_text(json.dumps({**base, "model_type": model_type}))
        assert load_model(str(path)).tie_word_embeddings is tied, model_type
