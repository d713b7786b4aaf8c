"""A saved LabelEmbeddingForSequenceClassification with Transformers' standard loaders:
``pipeline`` and the Auto classes (also in a process that never imported labelemb), on real
long fortunes texts; missing weights initialised as a fresh model's; the Transformers
conventions (return_dict, resize_token_embeddings, gradient checkpointing, attention
implementations, problem_type)."""

import json
import subprocess
import sys
import warnings

import pytest

pytest.importorskip("transformers")  # the [hf] extra

import torch  # noqa: E402
from transformers import (AutoModel, AutoModelForSequenceClassification,  # noqa: E402
                          BertConfig, BertModel, Trainer)

from cli_process import env  # noqa: E402
from labelemb.data.fortunes import FORTUNES_DIR, prepare_fortunes  # noqa: E402
from labelemb.data.text_classification import load_text_classification  # noqa: E402
from labelemb.hf import (LabelEmbeddingConfig,  # noqa: E402
                         LabelEmbeddingForSequenceClassification,
                         OnlineLabelSmoothingCallback, max_tokens)
from labelemb.hf.text import train_tokenizer  # noqa: E402
from test_hf import (C, GradsAtStep, examples, tiny_model, trainer_args,  # noqa: E402
                     trainer_grads)

#: the pipeline's texts: this many test texts longer than the model's positions
LONG_TEXTS = 40
POSITIONS = 32

#: run in a fresh process: the saved folder with the standard loaders, before and after
#: trusting its code (the loader module in the folder imports the installed labelemb)
LOADERS = r"""
import json, sys
from transformers import AutoModelForSequenceClassification, pipeline
folder, texts = sys.argv[1], json.load(open(sys.argv[2]))
try:
    pipeline("text-classification", model=folder)
    refused = None
except ValueError as error:
    refused = str(error)
imported_before = "labelemb" in sys.modules
model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)
clf = pipeline("text-classification", model=folder, trust_remote_code=True, top_k=None)
print("\nRESULT", json.dumps({"refused": refused, "imported_before": imported_before,
                  "class": type(model).__name__, "cut": clf(texts),
                  "truncated": clf(texts, truncation=True)}))
"""


def scores(model, tokenizer, text: str, truncation: bool) -> dict[str, float]:
    """The probabilities of ``text``'s first ``POSITIONS`` tokens (tokenizer truncation keeps
    the final ``[SEP]``), by label name."""
    ids = tokenizer(text, truncation=truncation)["input_ids"][:POSITIONS]
    with torch.no_grad():
        p = model(input_ids=torch.tensor([ids])).logits.softmax(-1)[0]
    return {model.config.id2label[i]: float(v) for i, v in enumerate(p)}


@pytest.mark.skipif(not (FORTUNES_DIR / "computers").is_file(),
                    reason="needs Debian's fortunes (scripts/setup.sh --dev)")
def test_pipeline_and_auto_classes_load_a_saved_model_without_import_on_long_texts(tmp_path):
    """The issue: 771 of 1,502 fortunes test texts crashed the pipeline (longer than the
    positions) and the folder did not load without ``import labelemb.hf``."""
    prepare_fortunes(tmp_path / "fortunes")
    data = load_text_classification(tmp_path / "fortunes")
    tokenizer = train_tokenizer(data.texts["train"][:3000], vocab_size=1000,
                                model_max_length=POSITIONS)
    torch.manual_seed(0)
    encoder = BertConfig(vocab_size=1000, hidden_size=16, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=32,
                         max_position_embeddings=POSITIONS)
    model = LabelEmbeddingForSequenceClassification(LabelEmbeddingConfig(
        encoder=encoder, num_labels=data.num_classes, id2label=dict(enumerate(data.names))))
    assert max_tokens(model.encoder) == POSITIONS
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    texts = [t for t in data.texts["test"] if len(tokenizer(t)["input_ids"]) > POSITIONS]
    assert len(texts) > len(data.texts["test"]) // 3  # the 771 of 1,502
    texts = texts[:LONG_TEXTS]
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    done = subprocess.run([sys.executable, "-c", LOADERS, str(tmp_path / "model"),
                           str(tmp_path / "texts.json")], env=env(), capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    # (stdout also holds Transformers' prompt for the refused load: stdin is empty)
    (got,) = [json.loads(line[7:]) for line in done.stdout.splitlines()
              if line.startswith("RESULT ")]
    assert "trust_remote_code=True" in got["refused"] and not got["imported_before"]
    assert got["class"] == "LabelEmbeddingForSequenceClassification"
    assert "labelemb: inputs of" in done.stderr  # the model said it cut
    model.eval()
    for key, truncation in (("cut", False), ("truncated", True)):
        for text, rows in zip(texts, got[key]):
            want = scores(model, tokenizer, text, truncation)
            assert {r["label"]: r["score"] for r in rows} == pytest.approx(want, abs=1e-5)
    # In this process labelemb.hf is imported: the Auto classes need no trust_remote_code.
    for auto in (AutoModel, AutoModelForSequenceClassification):
        assert type(auto.from_pretrained(tmp_path / "model")) is type(model)


def test_inputs_longer_than_the_positions_are_cut_with_a_warning():
    model = tiny_model("emb").eval()  # 16 positions
    ids = torch.randint(5, 50, (2, 40))
    with pytest.warns(UserWarning, match="inputs of 40 tokens cut to the encoder's 16"):
        long = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    torch.testing.assert_close(long, model(input_ids=ids[:, :16]).logits)


def assert_fresh(model: LabelEmbeddingForSequenceClassification, num_labels: int) -> None:
    """A fresh model's values: nn.Linear's init (|w|, |b| <= 1/sqrt(fan_in)), the identity
    embedding, counters 0, and a finite loss."""
    bound = model.config.encoder.hidden_size ** -0.5
    for layer in (model.head.fc, model.head.aux_fc):
        assert layer.weight.abs().max() <= bound and layer.bias.abs().max() <= bound
        assert layer.weight.std() > bound / 4  # drawn, not zeros
    torch.testing.assert_close(model.label_embedding.weight, torch.eye(num_labels))
    assert model.criterion.num_updates.item() == 0
    ids = torch.randint(5, 50, (4, 6))
    assert torch.isfinite(model(input_ids=ids, labels=torch.arange(4) % num_labels).loss)


def test_missing_weights_load_as_a_fresh_models(tmp_path):
    """The issue: head weights up to 1.9e38, a non-identity embedding, num_updates ~1.4e14."""
    model = tiny_model("emb")
    model.save_pretrained(tmp_path / "m")
    resized = LabelEmbeddingForSequenceClassification.from_pretrained(
        tmp_path / "m", id2label=dict(enumerate("abcdefg")), ignore_mismatched_sizes=True)
    assert_fresh(resized, 7)
    torch.testing.assert_close(resized.encoder.state_dict(), model.encoder.state_dict())
    # An encoder checkpoint: its config becomes the encoder's, its weights load.
    model.encoder.save_pretrained(tmp_path / "bert")
    for how in ({"num_labels": C},
                {"config": LabelEmbeddingConfig(encoder=model.config.encoder, num_labels=C)}):
        loaded = LabelEmbeddingForSequenceClassification.from_pretrained(tmp_path / "bert", **how)
        assert loaded.config.encoder.hidden_size == 16 and loaded.config.loss == "emb"
        torch.testing.assert_close(loaded.encoder.state_dict(), model.encoder.state_dict())
        assert_fresh(loaded, C)


def test_resize_token_embeddings_saves_and_reloads(tmp_path):
    model = tiny_model("ce")
    model.resize_token_embeddings(64)
    assert model.config.encoder.vocab_size == 64 and model.config.get_text_config() \
        is model.config.encoder
    model.save_pretrained(tmp_path / "m")
    loaded = LabelEmbeddingForSequenceClassification.from_pretrained(tmp_path / "m")
    assert loaded.encoder.get_input_embeddings().weight.shape == (64, 16)
    torch.testing.assert_close(loaded.state_dict(), model.state_dict())


def test_return_dict_false_gives_the_tuple():
    model = tiny_model("emb").eval()
    ids, labels = torch.randint(5, 50, (3, 6)), torch.tensor([0, 3, 4])
    out = model(input_ids=ids, labels=labels)
    loss, logits = model(input_ids=ids, labels=labels, return_dict=False)
    torch.testing.assert_close((loss, logits), (out.loss, out.logits))
    model.config.return_dict = False
    assert isinstance(model(input_ids=ids), tuple)


def test_gradient_checkpointing_reaches_the_encoder_with_the_same_gradients(tmp_path):
    """The issue: "does not support activation checkpointing"."""
    want = trainer_grads(tiny_model("emb"), 32, 1, tmp_path)
    model, grab = tiny_model("emb"), GradsAtStep()
    args = trainer_args(tmp_path / "gc", 32, 1, gradient_checkpointing=True)
    Trainer(model=model, args=args, train_dataset=examples(), callbacks=[grab]).train()
    assert model.encoder.is_gradient_checkpointing
    assert grab.grads.keys() == want.keys()
    for name, grad in want.items():
        torch.testing.assert_close(grab.grads[name], grad, msg=name)


def test_attn_implementation_reaches_the_encoder(tmp_path):
    tiny_model("emb").save_pretrained(tmp_path / "m")
    ids = torch.randint(5, 50, (2, 6))
    logits = {}
    for implementation in ("eager", "sdpa"):
        model = LabelEmbeddingForSequenceClassification.from_pretrained(
            tmp_path / "m", attn_implementation=implementation).eval()
        assert model.encoder.config._attn_implementation == implementation
        logits[implementation] = model(input_ids=ids).logits
    torch.testing.assert_close(logits["eager"], logits["sdpa"])


def test_unsupported_problem_type_is_refused():
    for problem in ("multi_label_classification", "regression"):
        with pytest.raises(Exception, match=f"problem_type must be one of .*{problem}"):
            tiny_model("emb", problem_type=problem)
    tiny_model("emb", problem_type="single_label_classification")


def test_ols_without_its_callback_warns_at_the_first_step(tmp_path):
    def train(callbacks) -> list[str]:
        args = trainer_args(tmp_path / "ols", 8, 1)
        args.max_steps = 2
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            Trainer(model=tiny_model("ols"), args=args, train_dataset=examples(16),
                    callbacks=callbacks).train()
        return [str(w.message) for w in seen if "OnlineLabelSmoothingCallback" in str(w.message)]

    assert len(train([])) == 1  # once, not at every step
    assert train([OnlineLabelSmoothingCallback()]) == []
