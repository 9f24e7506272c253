"""Prompt formatting and response-only labels: the Alpaca prompt, a chat template, masks and lengths."""

from __future__ import annotations

import pytest

from gpudoctor.data.records import AlpacaFields, Dataset, Message, Record
from gpudoctor.errors import BadInput
from gpudoctor.train.demo import ASSETS
from gpudoctor.train.formatting import alpaca_prompt, segments_for
from gpudoctor.train.tokenize import IGNORE, tokenize_dataset

TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant: {% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(ASSETS))


def alpaca_record(index: int, instruction: str, output: str, input_text: str = "") -> Record:
    messages = [Message("user", f"{instruction}\n\n{input_text}".strip()), Message("assistant", output)]
    return Record(index, messages, alpaca=AlpacaFields(instruction, input_text, output))


def decoded_labels(tokenizer, labels: list[int]) -> str:
    return tokenizer.decode([t for t in labels if t != IGNORE])


def test_alpaca_prompt_matches_stanford_alpaca():
    assert alpaca_prompt("Say hi.") == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nSay hi.\n\n### Response:\n"
    )
    assert "### Input:\nabc\n\n### Response:\n" in alpaca_prompt("Say hi.", "abc")


def test_labels_cover_only_the_response_and_eos(tokenizer):
    dataset = Dataset("d.json", "alpaca", "json", [alpaca_record(0, "Fix my lamp.", "Thanks for reaching out. — Sam")])
    (sample,) = tokenize_dataset(dataset, tokenizer, 256).samples
    assert decoded_labels(tokenizer, sample.labels) == "Thanks for reaching out. — Sam</s>"
    assert tokenizer.decode(sample.input_ids).startswith("Below is an instruction")
    assert len(sample.labels) == len(sample.input_ids)


def test_chat_template_masks_every_non_assistant_turn(tokenizer):
    tokenizer = tokenizer.__class__.from_pretrained(str(ASSETS))
    tokenizer.chat_template = TEMPLATE
    record = Record(0, [Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello"), Message("user", "Bye"), Message("assistant", "See you")])
    segments = segments_for(record, tokenizer, "d.json")
    assert [text for text, trainable in segments if trainable] == ["Hello</s>", "See you</s>"]
    (sample,) = tokenize_dataset(Dataset("d.json", "messages", "json", [record]), tokenizer, 256).samples
    # " H" straddles "assistant: " and "Hello": a token whose last character is in the reply is trained on.
    assert decoded_labels(tokenizer, sample.labels) == " Hello</s> See you</s>"


def test_too_long_sample_names_file_record_and_length(tokenizer):
    records = [alpaca_record(0, "Short.", "Ok."), alpaca_record(1, "word " * 300, "Ok.")]
    with pytest.raises(BadInput) as err:
        tokenize_dataset(Dataset("data.json", "alpaca", "json", records), tokenizer, 128)
    message = str(err.value)
    assert message.startswith("data.json: record 2 is ") and "longer than seq_len 128" in message and "--truncate" in message
    assert "\n" not in message


def test_truncate_cuts_and_counts(tokenizer):
    records = [alpaca_record(0, "Short.", "Ok."), alpaca_record(1, "Short.", "word " * 300)]
    result = tokenize_dataset(Dataset("data.json", "alpaca", "json", records), tokenizer, 128, truncate=True)
    assert result.truncated == 1 and max(len(s.input_ids) for s in result.samples) == 128


def test_record_without_reply_is_bad_input(tokenizer):
    record = Record(0, [Message("user", "Hi")])
    with pytest.raises(BadInput, match=r"^d.json: record 1 has no assistant reply"):
        tokenize_dataset(Dataset("d.json", "messages", "json", [record]), tokenizer, 128)


def test_sharegpt_tool_calls_without_a_template_use_alpaca_blocks(tokenizer, shipped_datasets):
    from gpudoctor.data.load import load_dataset

    dataset = load_dataset(shipped_datasets / "glaive_toolcall_en_demo.json")
    dataset.records = dataset.records[:20]
    result = tokenize_dataset(dataset, tokenizer, 4096)
    assert len(result.samples) == 20
    record = dataset.records[0]
    replies = [m.content for m in record.messages if m.role == "assistant"]
    learned = decoded_labels(tokenizer, result.samples[0].labels)
    assert learned == "".join(reply + "</s>" for reply in replies)  # every assistant turn, nothing else
