"""Where the base model comes from: a local folder, or the Hugging Face cache (never downloaded); safetensors only."""

from __future__ import annotations

import pytest

from gpudoctor.errors import BadInput, ProblemFound
from gpudoctor.train.model import check_weights, resolve_model_dir


def test_a_local_folder_or_its_config_json(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model_dir(str(tmp_path)) == tmp_path.resolve()
    assert resolve_model_dir(str(tmp_path / "config.json")) == tmp_path.resolve()


def test_a_hub_id_is_found_in_the_local_cache(cli_env, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cli_env / "hf-home" / "hub"))  # read once at import otherwise
    snapshot = cli_env / "hf-home" / "hub" / "models--acme--tiny" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0123abcd")
    assert resolve_model_dir("acme/tiny") == snapshot


def test_a_profile_not_in_the_cache_says_how_to_download_it(cli_env):
    with pytest.raises(ProblemFound, match=r"is not in the Hugging Face cache; download it first with `hf download "):
        resolve_model_dir("mistral-7b")


def test_pickle_weights_are_refused(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(BadInput, match="safetensors only"):
        check_weights(tmp_path)
