"""labelemb.hf.LabelEmbeddingForSeq2SeqLM: Marian and BART configs, the chunked loss equals its
definition (float64), save/load, generate() and Seq2SeqTrainer's predict_with_generate."""

import pytest

transformers = pytest.importorskip("transformers")  # the [hf] extra

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from transformers import (AutoModelForSeq2SeqLM, BartConfig, MarianConfig,  # noqa: E402
                          Seq2SeqTrainer, Seq2SeqTrainingArguments, T5Config)
from transformers.modeling_outputs import Seq2SeqLMOutput  # noqa: E402

from labelemb import label_embedding_loss  # noqa: E402
from labelemb.hf import LabelEmbeddingForSeq2SeqLM  # noqa: E402
from labelemb.hf.lm import lm_options  # noqa: E402

V = 40
SIZES = dict(vocab_size=V, d_model=16, encoder_layers=1, decoder_layers=1,
             encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
             decoder_ffn_dim=32, max_position_embeddings=32, dropout=0.0,
             attention_dropout=0.0, activation_dropout=0.0, pad_token_id=0, eos_token_id=2)
CONFIGS = {
    "marian": lambda: MarianConfig(**SIZES, decoder_start_token_id=0),
    "bart": lambda: BartConfig(**SIZES, bos_token_id=1, decoder_start_token_id=2,
                               forced_eos_token_id=None),
}


def tiny(kind="marian", loss="emb", dtype=torch.float32, **settings):
    torch.manual_seed(0)
    inner = AutoModelForSeq2SeqLM.from_config(CONFIGS[kind]())
    with torch.no_grad():  # a bias the logits must include
        inner.final_logits_bias.normal_()
    if loss == "emb":
        settings.setdefault("warmup_steps", 0)
    model = LabelEmbeddingForSeq2SeqLM.from_model(inner, loss=loss, label_dim=6, **settings)
    return model.to(dtype).eval()


def batch(n=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, V, (n, 7), generator=g)
    labels = torch.randint(3, V, (n, 6), generator=g)
    labels[1, -2:] = -100  # padding
    return ids, labels


def plain_loss(model, ids, labels):
    """The unchunked definition: the decoder's states through the full logits."""
    decoder_ids = model.model.prepare_decoder_input_ids_from_labels(labels=labels)
    hidden = model.model.base_model(input_ids=ids,
                                    decoder_input_ids=decoder_ids).last_hidden_state
    logits = (model.model.lm_head(hidden) + model.model.final_logits_bias).reshape(-1, V)
    target = labels.reshape(-1)
    if model.config.loss == "ce":
        return F.cross_entropy(logits, target)
    aux = model.lm_loss.aux_head(hidden.detach()).reshape(-1, V)
    return label_embedding_loss(logits, aux, target, model.label_embedding,
                                **vars(lm_options(model.config))).loss


@pytest.mark.parametrize("kind", list(CONFIGS))
@pytest.mark.parametrize("loss", ["emb", "ce"])
def test_loss_and_every_gradient_equal_the_unchunked_definition(kind, loss):
    settings = dict(mask_wrong=False) if loss == "emb" else {}
    model = tiny(kind, loss, dtype=torch.float64, chunk_size=3, **settings)
    ids, labels = batch()
    got = model(input_ids=ids, labels=labels).loss
    want = plain_loss(model, ids, labels)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    params = [p for p in model.parameters() if p.requires_grad]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    got_grads = torch.autograd.grad(got, params, allow_unused=True)
    want_grads = torch.autograd.grad(want, params, allow_unused=True)
    for name, g, w in zip(names, got_grads, want_grads):
        if w is None:
            assert g is None or not g.any(), name
        else:
            torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-10, msg=name)


def test_cross_entropy_is_transformers_own_loss_final_logits_bias_included():
    model = tiny("bart", "ce", dtype=torch.float64)
    ids, labels = batch()
    own = model.model(input_ids=ids, labels=labels).loss
    out = model(input_ids=ids, labels=labels)
    assert isinstance(out, Seq2SeqLMOutput)
    torch.testing.assert_close(out.loss, own)
    torch.testing.assert_close(out.logits, model.model(input_ids=ids, labels=labels).logits)


def test_save_pretrained_round_trip_and_generate_unchanged(tmp_path):
    model = tiny("marian")
    model.save_pretrained(tmp_path)
    loaded = LabelEmbeddingForSeq2SeqLM.from_pretrained(tmp_path).eval()
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    ids, labels = batch()
    torch.testing.assert_close(loaded(input_ids=ids, labels=labels).loss,
                               model(input_ids=ids, labels=labels).loss)
    kwargs = dict(max_new_tokens=4, num_beams=2, do_sample=False)
    assert torch.equal(loaded.generate(ids, **kwargs), model.model.generate(ids, **kwargs))


def test_seq2seq_trainer_trains_and_predicts_with_generate(tmp_path):
    # mask_wrong=False: the embedding learns from every token, not only those the second
    # head gets right (none, at first)
    model = tiny("marian", logits_with_loss=False, mask_wrong=False)
    ids, labels = batch(n=8)
    data = [{"input_ids": i, "attention_mask": torch.ones_like(i), "labels": y}
            for i, y in zip(ids, labels)]
    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path), max_steps=2, report_to=[],
                                    per_device_train_batch_size=4,
                                    per_device_eval_batch_size=4, predict_with_generate=True,
                                    generation_max_length=5, generation_num_beams=2,
                                    save_strategy="no", use_cpu=True, disable_tqdm=True)
    trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=data, eval_dataset=data)
    before = model.label_embedding.A.weight.detach().clone()
    trainer.train()
    assert not torch.equal(model.label_embedding.A.weight, before)  # the embedding learned
    predicted = trainer.predict(data)
    tokens = torch.as_tensor(predicted.predictions)
    assert tokens.shape[0] == 8 and not tokens[:, 5:].any()  # generated 5, padded with 0s
    assert torch.isfinite(torch.tensor(predicted.metrics["test_loss"]))


def test_a_model_without_a_base_returning_decoder_states_is_refused():
    inner = AutoModelForSeq2SeqLM.from_config(T5Config(vocab_size=V, d_model=16, d_ff=32,
                                                       num_layers=1, num_heads=2, d_kv=8))
    with pytest.raises(ValueError, match="T5"):
        LabelEmbeddingForSeq2SeqLM.from_model(inner)


def test_accumulation_gives_the_big_batch_gradients(tmp_path):
    """Seq2SeqTrainer, 4 micro-batches of 2 against one batch of 8: num_items_in_batch
    (every label of an encoder-decoder counts, none is shifted out) makes them the same."""
    from transformers import TrainerCallback

    class Grads(TrainerCallback):
        grads = None

        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            Grads.grads = {n: p.grad.clone() for n, p in model.named_parameters()
                           if p.grad is not None}

    ids, labels = batch(n=8, seed=3)
    for i in range(8):  # micro-batches with different numbers of labels
        labels[i, 6 - i % 4:] = -100
    data = [{"input_ids": i, "labels": y} for i, y in zip(ids, labels)]
    found = []
    for size, steps in ((8, 1), (2, 4)):
        args = Seq2SeqTrainingArguments(output_dir=str(tmp_path / str(size)), max_steps=1,
                                        per_device_train_batch_size=size,
                                        gradient_accumulation_steps=steps, max_grad_norm=0.0,
                                        train_sampling_strategy="sequential", report_to=[],
                                        save_strategy="no", use_cpu=True, disable_tqdm=True)
        Seq2SeqTrainer(model=tiny(mask_wrong=False), args=args, train_dataset=data,
                       callbacks=[Grads()]).train()
        found.append(Grads.grads)
    big, small = found
    assert big.keys() == small.keys() and any("label_embedding" in n or "criterion" in n
                                               for n in big)
    for name, g in big.items():
        torch.testing.assert_close(small[name], g, rtol=1e-5, atol=1e-6, msg=name)
