"""Loading a saved model directory gives back exactly the tokenizer that was saved."""

from verifrl.models import load_tokenizer

TEXTS = ["Question: Compute 12 + 345.\nSolution:\n12 + 345 = 357\nAnswer: 357",
         "Tom has 7 pens and buys 15 more, 1,000 x (9)"]


def test_saved_embedded_directory_loads_the_saved_tokenizer(tmp_path, tiny_model, tiny_tokenizer):
    tiny_model.save_pretrained(tmp_path)  # config.json says qwen2, so AutoTokenizer picks Qwen2's class
    tiny_tokenizer.save_pretrained(tmp_path)
    loaded = load_tokenizer(str(tmp_path))
    for text in TEXTS:
        assert loaded(text)["input_ids"] == tiny_tokenizer(text)["input_ids"]
    assert loaded.padding_side == "left" and loaded.pad_token_id is not None

