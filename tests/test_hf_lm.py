"""labelemb.hf.LabelEmbeddingForCausalLM: the chunked loss equals its definition (float64),
the Trainer's gradient accumulation is exact, save/load and generate() are the wrapped model's."""

import pytest

transformers = pytest.importorskip("transformers")  # the [hf] extra

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from transformers import (AutoModelForCausalLM, GPT2Config, LlamaConfig,  # noqa: E402
                          Qwen2Config, Trainer, TrainerCallback, TrainingArguments)
from transformers.modeling_outputs import CausalLMOutputWithPast  # noqa: E402

from labelemb import label_embedding_loss  # noqa: E402
from labelemb.hf import LabelEmbeddingCausalLMConfig, LabelEmbeddingForCausalLM  # noqa: E402
from labelemb.hf.lm import lm_options  # noqa: E402

V = 40
CONFIGS = {
    "gpt2": lambda: GPT2Config(vocab_size=V, n_positions=32, n_embd=16, n_layer=1, n_head=2,
                               bos_token_id=1, eos_token_id=2, pad_token_id=0,
                               resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0),
    "llama": lambda: LlamaConfig(vocab_size=V, hidden_size=16, intermediate_size=32,
                                 num_hidden_layers=1, num_attention_heads=2,
                                 num_key_value_heads=1, bos_token_id=1, eos_token_id=2,
                                 pad_token_id=0, tie_word_embeddings=False),
    "qwen2": lambda: Qwen2Config(vocab_size=V, hidden_size=16, intermediate_size=32,
                                 num_hidden_layers=1, num_attention_heads=2,
                                 num_key_value_heads=1, bos_token_id=1, eos_token_id=2,
                                 pad_token_id=0, tie_word_embeddings=True),
}


def tiny(kind="gpt2", loss="emb", seed=0, dtype=torch.float32, **settings):
    torch.manual_seed(seed)
    inner = AutoModelForCausalLM.from_config(CONFIGS[kind]())
    settings.setdefault("warmup_steps", 0)
    if loss != "emb":
        settings.pop("warmup_steps")
    model = LabelEmbeddingForCausalLM.from_model(inner, loss=loss, label_dim=6, **settings)
    return model.to(dtype).eval()  # eval: no dropout, so two paths see the same features


def fitted(loss):
    """``tiny(loss=loss)`` whose label embedding learns from every token (``mask_wrong=False``:
    at initialisation the second head gets none right), so its gradients are compared too."""
    return tiny(loss=loss, **({"mask_wrong": False} if loss == "emb" else {}))


def batch(n=4, t=9, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, V, (n, t), generator=g)
    labels = ids.clone()
    labels[0, :4] = -100  # a prompt that is not trained on
    labels[1, -2:] = -100  # padding
    return ids, labels


def plain_loss(model, ids, labels):
    """The unchunked definition: the full logits, shifted labels, label_embedding_loss."""
    hidden = model.model.base_model(input_ids=ids).last_hidden_state[:, :-1]
    head, aux = model.model.get_output_embeddings(), model.lm_loss.aux_head
    target = labels[:, 1:].reshape(-1)
    logits = head(hidden).reshape(-1, V)
    if model.config.loss != "emb":
        smoothing = model.config.smoothing if model.config.loss == "ls" else 0.0
        return F.cross_entropy(logits, target, label_smoothing=smoothing)
    options = vars(lm_options(model.config))
    aux_logits = aux(hidden.detach()).reshape(-1, V)
    return label_embedding_loss(logits, aux_logits, target, model.label_embedding,
                                **options).loss


def grads(model, loss):
    params = [p for p in model.parameters() if p.requires_grad]
    return dict(zip([n for n, p in model.named_parameters() if p.requires_grad],
                    torch.autograd.grad(loss, params, allow_unused=True)))


@pytest.mark.parametrize("kind", list(CONFIGS))
@pytest.mark.parametrize("loss", ["emb", "ce", "ls"])
def test_loss_and_every_gradient_equal_the_unchunked_definition(kind, loss):
    # mask_wrong=False: at random initialisation the second head gets no token right, and
    # the embedding would learn nothing
    settings = dict(mask_wrong=False) if loss == "emb" else {}
    model = tiny(kind, loss, dtype=torch.float64, chunk_size=5, **settings)
    ids, labels = batch()
    got = model(input_ids=ids, labels=labels)
    want = plain_loss(model, ids, labels)
    torch.testing.assert_close(got.loss, want, rtol=1e-10, atol=1e-10)
    got_grads, want_grads = grads(model, got.loss), grads(model, want)
    for name, g in want_grads.items():
        assert got_grads[name] is not None, name
        torch.testing.assert_close(got_grads[name], g, rtol=1e-9, atol=1e-10, msg=name)
    if loss == "emb":  # every part of the model learns something
        assert all(g is not None and g.abs().sum() > 0 for g in got_grads.values())


def test_cross_entropy_is_transformers_own_loss():
    model = tiny("llama", "ce", dtype=torch.float64)
    ids, labels = batch()
    own = model.model(input_ids=ids, labels=labels).loss
    torch.testing.assert_close(model(input_ids=ids, labels=labels).loss, own.double())


def test_ignored_labels_add_nothing():
    """-100 in the labels is ignored by every term: the loss is that of the other positions
    alone (cutting the ignored ones off gives the same), and un-ignoring them changes it."""
    model = tiny(dtype=torch.float64)
    ids, labels = batch()
    assert (labels[0, :4] == -100).all()
    first = model(input_ids=ids, labels=labels).loss
    labels_b = labels.clone()
    labels_b[0, :4] = 5  # were -100: now trained
    assert not torch.isclose(model(input_ids=ids, labels=labels_b).loss, first)
    # each row alone, weighted by the labels it counts, makes the batch's mean
    counted = (labels[:, 1:] != -100).sum()
    parts = [model(input_ids=ids[i:i + 1], labels=labels[i:i + 1]).loss
             * (labels[i, 1:] != -100).sum() for i in range(len(ids))]
    torch.testing.assert_close(sum(parts) / counted, first)


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_from_model_keeps_the_model_s_weights(kind):
    """Wrapping initialises only the new parts: a trained (here: shifted) model keeps every
    weight."""
    inner = AutoModelForCausalLM.from_config(CONFIGS[kind]())
    with torch.no_grad():
        for p in inner.parameters():
            p.add_(1.25)
    before = {k: v.clone() for k, v in inner.state_dict().items()}
    LabelEmbeddingForCausalLM.from_model(inner)
    for name, value in inner.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_tied_embeddings_stay_tied_and_get_both_gradients():
    model = tiny("gpt2")
    inner = model.model
    assert inner.lm_head.weight is inner.transformer.wte.weight
    ids, labels = batch()
    model.train()(input_ids=ids, labels=labels).loss.backward()
    assert inner.transformer.wte.weight.grad is not None


def test_output_is_the_standard_causal_lm_output():
    model = tiny()
    ids, labels = batch()
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels)
    assert isinstance(out, CausalLMOutputWithPast) and out.loss.dim() == 0
    assert out.logits.shape == (*ids.shape, V)
    torch.testing.assert_close(out.logits, model(input_ids=ids).logits)
    assert model(input_ids=ids, labels=labels, return_logits=False).logits is None
    assert model(input_ids=ids).loss is None


class WidestRows(TorchDispatchMode):
    """Watches every tensor made under it: ``largest`` is the most rows (all dimensions but
    the last) of one whose last dimension is the vocabulary."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and t.dim() >= 2 and t.shape[-1] == V:
                self.largest = max(self.largest, t.shape[:-1].numel())
        return out


def test_no_tokens_by_vocab_tensor_when_the_logits_are_not_asked_for():
    """Training and no-grad evaluation without the logits: no V-wide tensor has more rows
    than a chunk's block (the tokens here are 10x more)."""
    model = tiny(chunk_size=4, logits_with_loss=False).train()
    ids = torch.randint(3, V, (24, 30))
    with WidestRows() as rows:
        model(input_ids=ids, labels=ids).loss.backward()
        with torch.no_grad():
            model.eval()(input_ids=ids, labels=ids)
    assert 0 < rows.largest <= 512 < ids.numel()


def test_evaluation_loss_equals_the_training_forward_s():
    model = tiny()
    ids, labels = batch()
    with torch.no_grad():
        evaluated = model(input_ids=ids, labels=labels).loss
    torch.testing.assert_close(evaluated, model(input_ids=ids, labels=labels).loss)


def test_save_pretrained_round_trip_and_generate_unchanged(tmp_path):
    model = tiny("gpt2")
    with torch.no_grad():  # a learned embedding, not the initial one
        model.label_embedding.B.bias.add_(0.5)
    model.save_pretrained(tmp_path)
    loaded = LabelEmbeddingForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(loaded.config, LabelEmbeddingCausalLMConfig)
    assert loaded.model.lm_head.weight is loaded.model.transformer.wte.weight
    assert model.state_dict().keys() == loaded.state_dict().keys()
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    ids, labels = batch()
    torch.testing.assert_close(loaded(input_ids=ids, labels=labels).loss,
                               model(input_ids=ids, labels=labels).loss)
    prompt = ids[:, :3]
    generated = loaded.generate(prompt, max_new_tokens=5, do_sample=False)
    assert torch.equal(generated, model.model.generate(prompt, max_new_tokens=5,
                                                       do_sample=False))


class GradsAtStep(TrainerCallback):
    def __init__(self):
        self.grads = None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def trainer_grads(model, batch_size, accumulation, out, **settings):
    """The gradients of one Trainer step over 8 sequences with different numbers of trained
    tokens, in micro-batches of ``batch_size``."""
    ids = torch.randint(3, V, (8, 9), generator=torch.Generator().manual_seed(2))
    labels = ids.clone()
    for i in range(8):  # micro-batches with different numbers of trained tokens
        labels[i, : 1 + 2 * i % 7] = -100
    data = [{"input_ids": i, "labels": y} for i, y in zip(ids, labels)]
    args = TrainingArguments(output_dir=str(out), max_steps=1, report_to=[],
                             per_device_train_batch_size=batch_size,
                             gradient_accumulation_steps=accumulation, max_grad_norm=0.0,
                             train_sampling_strategy="sequential", save_strategy="no",
                             use_cpu=True, disable_tqdm=True, **settings)
    grab = GradsAtStep()
    Trainer(model=model, args=args, train_dataset=data, callbacks=[grab]).train()
    return grab.grads


@pytest.mark.parametrize("loss", ["emb", "ce", "ls"])
def test_accumulation_gives_the_big_batch_gradients(loss, tmp_path):
    """Micro-batches of 2 with 4 accumulation steps against one batch of 8: the Trainer's
    num_items_in_batch (counted over the shifted labels) makes them the same."""
    big = trainer_grads(fitted(loss), 8, 1, tmp_path / "big")
    small = trainer_grads(fitted(loss), 2, 4, tmp_path / "small")
    assert big.keys() == small.keys()
    if loss == "emb":
        assert big["lm_loss.criterion.embedding.A.weight"].any()
    for name, g in big.items():
        torch.testing.assert_close(small[name], g, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.slow
def test_two_ddp_ranks_give_the_one_process_gradients(tmp_path):
    """A real `torchrun --nproc_per_node 2` (gloo): each rank runs 2 micro-batches of 2; the
    Trainer's num_items_in_batch, gathered over the ranks, makes the step one batch of 8."""
    import subprocess
    import sys
    from pathlib import Path

    from cli_process import env

    out = tmp_path / "grads.pt"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(Path(__file__).with_name("hf_lm_ddp_worker.py")), str(out)],
        env={**env(), "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for loss, grads in torch.load(out, weights_only=True).items():
        want = trainer_grads(fitted(loss), 8, 1, tmp_path / loss)
        assert grads.keys() == want.keys()
        for name, g in want.items():
            torch.testing.assert_close(grads[name], g, rtol=1e-5, atol=1e-6,
                                       msg=f"{loss}: {name}")


@pytest.mark.parametrize("settings, match", [
    (dict(loss="focal"), "loss must be one of"),
    (dict(label_dim=0), "label_dim"),
    (dict(chunk_size=-1), "chunk_size"),
    (dict(reduction="sum"), "reduction"),
    (dict(embedding_normalizer="correct"), "embedding_normalizer"),
    (dict(tau=-1.0), "tau"),
    (dict(no_such_option=1), "no_such_option"),
])
def test_bad_settings_name_the_field(settings, match):
    inner = AutoModelForCausalLM.from_config(CONFIGS["gpt2"]())
    with pytest.raises(ValueError, match=match):
        LabelEmbeddingForCausalLM.from_model(inner, **settings)


def test_a_model_whose_logits_are_not_its_head_s_is_refused():
    config = CONFIGS["gpt2"]()
    inner = AutoModelForCausalLM.from_config(config)
    inner.config.final_logit_softcapping = 30.0
    with pytest.raises(ValueError, match="final_logit_softcapping"):
        LabelEmbeddingForCausalLM.from_model(inner)


@pytest.mark.slow
def test_lm_step_benchmark_quick_reports_each_variant(tmp_path):
    """benchmarks/lm_step.py --quick: each variant's time and memory (no timing asserted),
    and chunked cross-entropy's loss is Transformers' own on the same model."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from cli_process import env

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "lm_step.py"
    done = subprocess.run([sys.executable, str(script), "--quick", "--json",
                           str(tmp_path / "r.json")], env=env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert set(report["summary"]) == {"transformers", "emb", "ce"}
    for figures in report["summary"].values():
        assert figures["seconds"] > 0 and figures["peak_extra_mib"] >= 0
    runs = report["runs"]
    assert runs["ce"][0]["loss"] == pytest.approx(runs["transformers"][0]["loss"], rel=1e-5)
    assert runs["emb"][0]["loss"] > runs["ce"][0]["loss"]  # the extra terms are there


def test_a_head_with_more_layers_than_its_linear_is_refused():
    """BertLMHeadModel's logits pass a dense layer, GELU and LayerNorm before the Linear that
    get_output_embeddings() returns: a loss from the hidden states would not be its own."""
    from transformers import BertConfig

    bert = AutoModelForCausalLM.from_config(BertConfig(
        is_decoder=True, num_hidden_layers=1, hidden_size=32, num_attention_heads=2,
        intermediate_size=64, vocab_size=V))
    with pytest.raises(ValueError, match="BertLMHeadModel's logits are not its LM head's"):
        LabelEmbeddingForCausalLM.from_model(bert)


def test_the_generation_settings_survive_save_and_load(tmp_path):
    model = tiny()
    model.generation_config.max_new_tokens = 3
    model.generation_config.repetition_penalty = 1.7
    model.save_pretrained(tmp_path)
    loaded = LabelEmbeddingForCausalLM.from_pretrained(tmp_path)
    assert (loaded.generation_config.max_new_tokens,
            loaded.generation_config.repetition_penalty) == (3, 1.7)


def test_gradient_checkpointing_passes_through_and_gives_the_same_gradients():
    ids, labels = batch()
    grads = []
    for checkpointing in (False, True):
        model = tiny().train()
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        if checkpointing:
            model.gradient_checkpointing_enable()
            assert model.model.is_gradient_checkpointing
        model(input_ids=ids, labels=labels).loss.backward()
        grads.append({k: p.grad.clone() for k, p in model.named_parameters()
                      if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for k in grads[0]:
        torch.testing.assert_close(grads[1][k], grads[0][k], rtol=1e-5, atol=1e-6, msg=k)


def test_a_saved_folder_loads_in_a_process_that_never_imported_labelemb(tmp_path):
    import subprocess
    import sys

    from cli_process import env

    tiny().save_pretrained(tmp_path)
    code = ("import sys\nfrom transformers import AutoModelForCausalLM\n"
            f"m = AutoModelForCausalLM.from_pretrained({str(tmp_path)!r}, trust_remote_code=True)\n"
            "assert 'labelemb.hf' in sys.modules  # by the folder's loader, not by this code\n"
            "print(type(m).__name__, m.label_embedding is not None)")
    done = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["LabelEmbeddingForCausalLM", "True"]
