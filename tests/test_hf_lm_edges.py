"""The language models off their tested path, as a user meets them: a plain Transformers
checkpoint given to the wrapper's ``from_pretrained``, settings from a config file (strings),
``Trainer.predict``, the logits in training and evaluation, a model loaded in bfloat16 and
autocast, labels of the wrong length or with nothing to learn, a resized vocabulary,
``num_items_in_batch`` as an int, left padding, ``torch.compile``."""

import pytest

transformers = pytest.importorskip("transformers")  # the [hf] extra

import torch  # noqa: E402
from huggingface_hub.errors import StrictDataclassError  # noqa: E402
from transformers import (AutoModelForCausalLM, AutoModelForSeq2SeqLM,  # noqa: E402
                          Seq2SeqTrainer, Seq2SeqTrainingArguments, Trainer,
                          TrainingArguments)

from labelemb.hf import (LabelEmbeddingCausalLMConfig,  # noqa: E402
                         LabelEmbeddingForCausalLM, LabelEmbeddingForSeq2SeqLM)
import test_hf_lm as causal  # noqa: E402
import test_hf_lm_seq2seq as seq2seq  # noqa: E402

V = causal.V


def eval_args(tmp_path, cls=TrainingArguments, **more):
    more.setdefault("per_device_eval_batch_size", 2)
    return cls(output_dir=str(tmp_path), report_to=[],
               use_cpu=True, disable_tqdm=True, **more)


# --- Trainer.predict and evaluate() with compute_metrics ------------------------------------

@pytest.mark.parametrize("logits_with_loss", [True, False])
def test_trainer_predict_gives_the_logits_or_nothing_and_the_loss(logits_with_loss, tmp_path):
    """The Trainer drops the config's ``keys_to_ignore_at_inference`` from the outputs it
    gathers; the KV cache must be among them (named ``cache`` in Transformers 5.x's outputs),
    or ``predict`` fails on it."""
    model = causal.tiny(logits_with_loss=logits_with_loss)
    ids, labels = causal.batch()
    data = [{"input_ids": i, "labels": y} for i, y in zip(ids, labels)]
    out = Trainer(model=model, args=eval_args(tmp_path)).predict(data)
    assert out.metrics["test_loss"] > 0
    if logits_with_loss:
        assert torch.as_tensor(out.predictions).shape == (*ids.shape, V)
    else:
        assert out.predictions is None or len(out.predictions) == 0


def test_seq2seq_trainer_predict_without_generate_gives_the_logits(tmp_path):
    model = seq2seq.tiny(logits_with_loss=True)
    ids, labels = seq2seq.batch()
    data = [{"input_ids": i, "labels": y} for i, y in zip(ids, labels)]
    out = Seq2SeqTrainer(model=model, args=eval_args(tmp_path, Seq2SeqTrainingArguments)
                         ).predict(data)
    logits, encoded = out.predictions  # as for a plain Marian: the encoder's states too
    assert logits.shape == (*labels.shape, V) and encoded.shape[:2] == ids.shape


# --- settings as they come from a config file or a command line -----------------------------

@pytest.mark.parametrize("settings, match", [
    (dict(loss="ls", smoothing="0.1"), "smoothing must be a number in"),
    (dict(loss="ls", smoothing=True), "smoothing must be a number in"),
    (dict(loss="ls", smoothing=1.0), "smoothing must be a number in"),
    (dict(label_dim="100"), "label_dim must be a positive int"),
    (dict(label_dim=0), "label_dim must be a positive int"),
    (dict(chunk_size=64.0), "chunk_size must be a positive int"),
    (dict(loss="cross_entropy"), "loss must be one of"),
    (dict(logits_with_loss="no"), "logits_with_loss must be"),
    (dict(loss_options="warmup_steps=0"), "loss_options must be a dict"),
    (dict(loss_options={"bogus": 1}), "unknown loss option 'bogus'"),
    (dict(label_dims=50), "unknown loss option 'label_dims'"),
    (dict(mask_wrong="no"), "mask_wrong must be a bool"),
    (dict(warmup_steps="10"), "warmup_steps must be an int"),
])
def test_a_bad_setting_is_one_value_error_naming_it(settings, match):
    inner = AutoModelForCausalLM.from_config(causal.CONFIGS["gpt2"]())
    with pytest.raises(ValueError, match=match) as raised:
        LabelEmbeddingForCausalLM.from_model(inner, **settings)
    assert "\n" not in str(raised.value)  # one line, not the strict dataclass's report


def test_a_bad_setting_in_a_config_is_a_value_error_naming_it():
    """Built directly (or read from a config.json), the config raises as every strict
    Transformers config does (huggingface_hub's error around the validator's): the validator's
    is a ValueError naming the field, not a comparison's TypeError."""
    with pytest.raises(StrictDataclassError, match="smoothing must be a number in") as raised:
        LabelEmbeddingCausalLMConfig(loss="ls", smoothing="0.1")
    assert isinstance(raised.value.__cause__, ValueError)


# --- from_pretrained of a plain Transformers checkpoint ------------------------------------

PLAIN = {  # wrapper class, the Auto class of the plain model, its tiny config
    "causal": (LabelEmbeddingForCausalLM, AutoModelForCausalLM, causal.CONFIGS["llama"]),
    "seq2seq": (LabelEmbeddingForSeq2SeqLM, AutoModelForSeq2SeqLM, seq2seq.CONFIGS["marian"]),
}


@pytest.mark.parametrize("kind", list(PLAIN))
def test_from_pretrained_of_a_plain_checkpoint_wraps_it(kind, tmp_path):
    """As ``BertForSequenceClassification.from_pretrained(a BERT)``: the checkpoint's model
    with its weights (here shifted away from any initialisation), the new parts initialised
    and reported missing, the keywords that are labelemb settings taken as ``from_model``'s,
    the others (``dtype``) as the plain model's loader's."""
    wrapper_class, auto_class, config = PLAIN[kind]
    plain = auto_class.from_config(config())
    with torch.no_grad():
        for p in plain.parameters():
            p.add_(0.75)
    plain.save_pretrained(tmp_path)
    model, info = wrapper_class.from_pretrained(tmp_path, loss="emb", label_dim=6,
                                                warmup_steps=7, dtype=torch.float64,
                                                output_loading_info=True)
    assert type(model.model) is type(plain) and not model.training
    assert model.config.label_dim == 6 and model.config.loss_options == {"warmup_steps": 7}
    recipe = auto_class.from_pretrained(tmp_path, dtype=torch.float64).state_dict()
    for name, value in recipe.items():  # loaded as the plain model loads itself
        assert torch.equal(model.model.state_dict()[name], value), name
    weight = plain.get_input_embeddings().weight.double()  # loaded, not initialised
    assert torch.equal(model.get_input_embeddings().weight, weight)
    assert model.label_embedding.A.weight.dtype == torch.float64  # follows the loaded model
    new = {k for k in model.state_dict() if not k.startswith("model.")}
    assert new and set(info["missing_keys"]) == new
    assert not info["unexpected_keys"] and not info["mismatched_keys"]


def test_from_pretrained_of_the_other_label_embedding_model_names_its_class(tmp_path):
    seq2seq.tiny().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="LabelEmbeddingForSeq2SeqLM"):
        LabelEmbeddingForCausalLM.from_pretrained(tmp_path)


# --- dtypes ----------------------------------------------------------------------------------

@pytest.mark.parametrize("loss", ["emb", "ce"])
def test_a_bfloat16_model_wrapped_trains(loss):
    """A model loaded in bfloat16 (``from_pretrained(..., dtype=torch.bfloat16)``): the second
    head and the label embedding are made in its dtype, and a step runs."""
    inner = AutoModelForCausalLM.from_config(causal.CONFIGS["gpt2"]()).to(torch.bfloat16)
    settings = {"warmup_steps": 0} if loss == "emb" else {}
    model = LabelEmbeddingForCausalLM.from_model(inner, loss=loss, **settings)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    ids, labels = causal.batch()
    loss_value = model.train()(input_ids=ids, labels=labels).loss
    loss_value.backward()
    assert torch.isfinite(loss_value) and inner.lm_head.weight.grad is not None


def test_bfloat16_autocast_on_cpu_gives_the_float32_loss_closely():
    """Under ``torch.autocast("cpu", torch.bfloat16)`` the step runs and its loss is the
    float32 one to bfloat16's precision."""
    model = causal.tiny().train()
    ids, labels = causal.batch()
    exact = model(input_ids=ids, labels=labels).loss
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model(input_ids=ids, labels=labels).loss
    mixed.backward()
    torch.testing.assert_close(mixed.float(), exact, rtol=2e-2, atol=0.0)


# --- the logits beside the loss ---------------------------------------------------------------

def test_by_default_a_training_forward_makes_no_logits_and_evaluation_returns_them():
    """``logits_with_loss=None`` (the default): a forward given labels in training mode (the
    Trainer's training step, which reads only the loss) makes no tokens x vocab tensor; in
    eval mode it returns the logits, as Transformers' own models do."""
    model = causal.tiny(chunk_size=4).train()
    assert model.config.logits_with_loss is None
    ids = torch.randint(3, V, (24, 30))
    with causal.WidestRows() as rows:
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
    assert out.logits is None and 0 < rows.largest <= 512 < ids.numel()
    assert model(input_ids=ids, labels=ids, return_logits=True).logits.shape == (24, 30, V)
    model.eval()
    torch.testing.assert_close(model(input_ids=ids, labels=ids).logits,
                               model(input_ids=ids).logits)


def test_trainer_evaluation_of_the_loss_alone_makes_no_logits_with_logits_with_loss_false(
        tmp_path):
    """``Trainer.evaluate()`` without ``compute_metrics`` (``prediction_loss_only``) and
    ``logits_with_loss=False``: no V-wide tensor larger than one chunk's block."""
    model = causal.tiny(chunk_size=4, logits_with_loss=False)
    ids = torch.randint(3, V, (24, 30))
    data = [{"input_ids": i, "labels": i} for i in ids]
    trainer = Trainer(model=model, args=eval_args(tmp_path, per_device_eval_batch_size=24))
    with causal.WidestRows() as rows:
        metrics = trainer.evaluate(data)
    assert metrics["eval_loss"] > 0 and 0 < rows.largest <= 512 < ids.numel()


# --- labels ------------------------------------------------------------------------------------

@pytest.mark.parametrize("length", [7, 11])
def test_labels_of_another_length_than_the_inputs_are_refused_in_the_user_s_terms(length):
    """The causal LM shifts the labels itself: they must be the inputs' shape, and the
    message says so in those terms (not the shifted tensors' shapes of the loss inside)."""
    model = causal.tiny()
    ids, _ = causal.batch()  # (4, 9)
    expected = r"labels must have input_ids' shape \(4, 9\), got \(4, %d\)" % length
    with pytest.raises(ValueError, match=expected):
        model(input_ids=ids, labels=torch.randint(3, V, (4, length)))


def test_seq2seq_labels_of_another_length_than_the_decoder_inputs_are_refused():
    model = seq2seq.tiny()
    ids, labels = seq2seq.batch()  # labels (4, 6)
    with pytest.raises(ValueError, match=r"decoder_input_ids' shape \(4, 5\), got \(4, 6\)"):
        model(input_ids=ids, decoder_input_ids=labels[:, :5].clamp(min=0), labels=labels)


@pytest.mark.parametrize("loss", ["emb", "ce", "ls"])
def test_a_batch_with_nothing_to_learn_gives_a_zero_loss_and_no_gradient(loss):
    """Labels all -100, or one token (nothing left after the shift): loss 0 and zero
    gradients, where Transformers' own mean over no tokens is NaN (a NaN step would spoil the
    model); with the Trainer's ``num_items_in_batch`` of 0 too."""
    model = causal.tiny(loss=loss).train()
    ids, _ = causal.batch()
    for inputs, labels, count in [(ids, torch.full_like(ids, -100), None),
                                  (ids, torch.full_like(ids, -100), 0),
                                  (ids[:1, :1], ids[:1, :1], None)]:
        model.zero_grad()
        out = model(input_ids=inputs, labels=labels, num_items_in_batch=count)
        out.loss.backward()
        assert out.loss.item() == 0.0
        assert all(p.grad is None or not p.grad.any() for p in model.parameters())


# --- resizing the vocabulary ---------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["causal", "seq2seq"])
def test_resize_token_embeddings_resizes_the_second_head_and_the_label_embedding(kind,
                                                                                 tmp_path):
    """Adding tokens (a pad token to GPT-2, say) to a trained model: the wrapped model resizes
    as Transformers does, and the second head's and the label embedding's rows follow, the
    kept tokens' rows unchanged; the new tokens train and the model saves and loads."""
    settings = {"mask_wrong": False}  # the embedding learns from every token
    model = (causal.tiny("gpt2", **settings) if kind == "causal"
             else seq2seq.tiny(**settings)).train()
    before = {k: v.clone() for k, v in model.lm_loss.state_dict().items()}
    embeddings = model.resize_token_embeddings(V + 5)
    assert embeddings.num_embeddings == V + 5 and model.config.lm.vocab_size == V + 5
    for name, value in model.lm_loss.state_dict().items():
        if value.dim():
            assert value.shape[0] == V + 5, name
            assert torch.equal(value[:V], before[name]), name
    ids = torch.randint(3, V + 5, (4, 7))
    labels = torch.full_like(ids, V + 4)  # a new token
    model(input_ids=ids, labels=labels).loss.backward()
    assert model.label_embedding.A.weight.grad[V + 4].any()
    model.save_pretrained(tmp_path)
    loaded = type(model).from_pretrained(tmp_path)
    assert torch.equal(loaded.label_embedding.A.weight, model.label_embedding.A.weight)
    shrunk = model.resize_token_embeddings(V - 4)
    assert shrunk.num_embeddings == model.lm_loss.aux_head.out_features == V - 4


def test_a_resize_to_the_same_size_keeps_the_parameters_an_optimizer_holds():
    """``resize_token_embeddings()`` (no size, or the current one) changes nothing in
    Transformers; the second head and the label embedding must stay the same objects, or an
    optimizer built before would silently stop training them. A frozen part stays frozen when
    the size does change."""
    model = causal.tiny("gpt2")
    held = {id(p) for p in model.parameters()}
    model.resize_token_embeddings()
    model.resize_token_embeddings(V)
    assert {id(p) for p in model.parameters()} == held
    model.label_embedding.requires_grad_(False)
    model.resize_token_embeddings(V + 2)
    assert not any(p.requires_grad for p in model.label_embedding.parameters())
    assert model.lm_loss.aux_head.weight.requires_grad


def test_a_model_resized_before_wrapping_is_wrapped_at_its_new_size():
    """Marian's resize ties the new weight into its LM head but leaves the head's
    ``out_features`` at the old size: the wrapper sizes its parts by the weight."""
    inner = AutoModelForSeq2SeqLM.from_config(seq2seq.CONFIGS["marian"]())
    inner.resize_token_embeddings(V + 5)
    model = LabelEmbeddingForSeq2SeqLM.from_model(inner, warmup_steps=0)
    assert model.label_embedding.num_classes == V + 5
    ids = torch.randint(3, V + 5, (2, 6))
    assert torch.isfinite(model(input_ids=ids, labels=ids).loss)


# --- num_items_in_batch, padding, torch.compile ------------------------------------------------

def test_num_items_in_batch_as_an_int_is_the_tensor_s():
    """The Trainer passes a tensor; a custom loop may pass an int."""
    model = causal.tiny(dtype=torch.float64)
    ids, labels = causal.batch()
    as_int = model(input_ids=ids, labels=labels, num_items_in_batch=50).loss
    as_tensor = model(input_ids=ids, labels=labels, num_items_in_batch=torch.tensor(50)).loss
    torch.testing.assert_close(as_int, as_tensor)
    counted = (labels[:, 1:] != -100).sum().item()
    ce = causal.tiny(loss="ce", dtype=torch.float64)
    torch.testing.assert_close(ce(input_ids=ids, labels=labels, num_items_in_batch=50).loss,
                               ce(input_ids=ids, labels=labels).loss * counted / 50)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_left_padding_gives_the_wrapped_model_s_own_loss(kind):
    """A left-padded batch (padding masked and labelled -100): ``loss="ce"`` is the wrapped
    model's own loss on the same inputs, whatever positions the model gives the padding."""
    model = causal.tiny(kind, loss="ce", dtype=torch.float64)
    ids, _ = causal.batch()
    mask = torch.ones_like(ids)
    mask[0, :3] = mask[2, :5] = 0
    ids = ids.masked_fill(mask == 0, 0)
    labels = ids.masked_fill(mask == 0, -100)
    own = model.model(input_ids=ids, attention_mask=mask, labels=labels).loss
    ours = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    torch.testing.assert_close(ours, own.double(), rtol=1e-6, atol=0.0)  # own: in float32


@pytest.mark.slow
def test_a_compiled_training_step_gives_the_eager_loss_and_gradients():
    """``torch.compile(model)`` (aot_eager: the graphs, without compiling kernels; about 35 s
    here, most of it dynamo's first start): one training step of ``emb``, every term on."""
    import torch._dynamo

    torch._dynamo.reset()
    model = causal.fitted("emb").train()
    ids, labels = causal.batch()
    eager_loss = model(input_ids=ids, labels=labels).loss
    eager = causal.grads(model, eager_loss)
    compiled = torch.compile(model, backend="aot_eager")
    loss = compiled(input_ids=ids, labels=labels).loss
    torch.testing.assert_close(loss, eager_loss)
    for name, grad in causal.grads(model, loss).items():
        if eager[name] is None:
            assert grad is None, name
        else:
            torch.testing.assert_close(grad, eager[name], msg=name)
    torch._dynamo.reset()


def test_from_pretrained_of_a_saved_model_takes_loss_options_as_keywords(tmp_path):
    """As ``from_model`` does: ``from_pretrained(DIR, warmup_steps=3)`` sets that option over
    the saved ones (the config's own fields override as for any Transformers config)."""
    causal.tiny(tau=1.5).save_pretrained(tmp_path)
    loaded = LabelEmbeddingForCausalLM.from_pretrained(tmp_path, warmup_steps=3, smoothing=0.2)
    assert loaded.config.loss_options == {"tau": 1.5, "warmup_steps": 3}
    assert loaded.lm_loss.criterion.options.warmup_steps == 3 and loaded.config.smoothing == 0.2
