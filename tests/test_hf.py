"""labelemb.hf with the real transformers.Trainer: gradient accumulation, save/load, outputs."""

import subprocess
import sys
from pathlib import Path

import pytest

transformers = pytest.importorskip("transformers")  # the [hf] extra

import torch  # noqa: E402
from transformers import (BertConfig, Trainer, TrainerCallback,  # noqa: E402
                          TrainingArguments)
from transformers.modeling_outputs import SequenceClassifierOutput  # noqa: E402

from cli_process import env, labelemb  # noqa: E402
from labelemb.hf import (LabelEmbeddingConfig,  # noqa: E402
                         LabelEmbeddingForSequenceClassification, OnlineLabelSmoothingCallback)

C = 5
LOSSES = ("ce", "ls", "ols", "emb")
NAMES = ["art", "computers", "linux", "love", "people"]
#: the second head predicts label 3 (tiny_model), so a micro-batch's count of correct targets
#: is its count of 3s: 0, 1, 3 and 6 in the four micro-batches of 8 (different fractions right,
#: the case where a micro-batch cannot know embedding_ce's whole-batch divisor)
RIGHT = (0, 1, 3, 6)


def tiny_model(loss: str = "emb", seed: int = 0, **overrides) -> LabelEmbeddingForSequenceClassification:
    torch.manual_seed(seed)
    encoder = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=16,
                         hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    config = LabelEmbeddingConfig(encoder=encoder, num_labels=C, loss=loss,
                                  id2label=dict(enumerate(NAMES)),
                                  label2id={n: i for i, n in enumerate(NAMES)}, **overrides)
    model = LabelEmbeddingForSequenceClassification(config)
    if loss == "emb":  # the second head gets label 3 right: embedding_ce and the hinge are on
        with torch.no_grad():
            model.head.aux_fc.bias[3] = 10.0
    return model


def examples(n: int = 32, seed: int = 1) -> list[dict]:
    """``n`` examples; in each run of 8, ``RIGHT[i]`` are label 3 and a varying number are
    ignored (-100): the micro-batches differ in valid count and in fraction right."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 50, (n, 6), generator=g)
    labels = torch.tensor([0, 1, 2, 4])[torch.randint(0, 4, (n,), generator=g)]
    for i, right in enumerate(RIGHT[:(n + 7) // 8]):
        labels[8 * i:8 * i + right] = 3
        labels[8 * i + right:8 * i + right + i % 3] = -100  # 0, 1, 2, 0 ignored
    return [{"input_ids": i, "attention_mask": torch.ones_like(i), "labels": y}
            for i, y in zip(ids, labels)]


class GradsAtStep(TrainerCallback):
    """The accumulated gradients the optimiser is about to apply (after any clipping)."""

    def __init__(self):
        self.grads = None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def trainer_args(out, batch_size: int, accumulation: int, max_grad_norm: float = 0.0,
                 **kwargs) -> TrainingArguments:
    """One optimiser step over the examples in their order (0 = no clipping)."""
    return TrainingArguments(output_dir=str(out), max_steps=1,
                             per_device_train_batch_size=batch_size,
                             gradient_accumulation_steps=accumulation,
                             max_grad_norm=max_grad_norm, train_sampling_strategy="sequential",
                             report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True,
                             **kwargs)


def trainer_grads(model, batch_size: int, accumulation: int, tmp_path,
                  max_grad_norm: float = 0.0) -> dict:
    args = trainer_args(tmp_path / f"t{batch_size}", batch_size, accumulation, max_grad_norm)
    grab = GradsAtStep()
    Trainer(model=model, args=args, train_dataset=examples(),
            callbacks=[grab, OnlineLabelSmoothingCallback()]).train()
    return grab.grads


def assert_same_grads(got: dict, want: dict, loss: str) -> None:
    assert got.keys() == want.keys()
    for name in want:  # the label embedding's included
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-6,
                                   msg=lambda m: f"{loss}: {name}: {m}")
    if loss == "emb":  # every term is active: the second head's and the embedding's
        assert want["head.aux_fc.bias"][3] != 0 and want["criterion.embedding.weight"].any()


@pytest.mark.parametrize("max_grad_norm", [0.0, 1.0], ids=["unclipped", "clipped"])
@pytest.mark.parametrize("loss", LOSSES)
def test_accumulation_gives_the_big_batch_gradients(loss, max_grad_norm, tmp_path):
    """4 micro-batches of 8 and one batch of 32: the same gradients after clipping (the clip
    factor comes from every gradient, so the embedding's must be right before it)."""
    big = trainer_grads(tiny_model(loss), 32, 1, tmp_path, max_grad_norm)
    small = trainer_grads(tiny_model(loss), 8, 4, tmp_path, max_grad_norm)
    assert_same_grads(small, big, loss)
    if max_grad_norm:  # the step really was clipped
        unclipped = trainer_grads(tiny_model(loss), 32, 1, tmp_path)
        norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in unclipped.values()]))
        assert norm > max_grad_norm


def test_embedding_normalised_by_valid_targets_is_exact_too(tmp_path):
    """With embedding_normalizer="valid" every divisor is num_items_in_batch."""
    options = {"loss_options": {"embedding_normalizer": "valid"}}
    big = trainer_grads(tiny_model("emb", **options), 32, 1, tmp_path)
    small = trainer_grads(tiny_model("emb", **options), 8, 4, tmp_path)
    assert_same_grads(small, big, "emb")


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
def test_two_ddp_ranks_give_the_one_process_gradients(tmp_path):
    """A real `torchrun --nproc_per_node 2` (gloo): the Trainer wraps the model in DDP. Each
    rank runs 2 micro-batches of 8 (rank 0 gets 0 then 3 right, rank 1 gets 1 then 6), clipped
    and not: the gradients of one process's batch of 32."""
    out = tmp_path / "grads.pt"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(Path(__file__).with_name("hf_ddp_worker.py")), str(out)],
        env={**env(), "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = torch.load(out, weights_only=True)
    for (loss, max_grad_norm), grads in ranks.items():
        want = trainer_grads(tiny_model(loss), 32, 1, tmp_path, max_grad_norm)
        assert_same_grads(grads, want, f"{loss} max_grad_norm={max_grad_norm}")


def test_only_backpropagated_training_forwards_count():
    """The embedding's count of correct targets survives what the Trainer's loop does not do:
    eval and no_grad forwards, a training forward never backpropagated, gradients zeroed in
    place (not set to None) between steps. Each step is 4 micro-batches, the first with no
    correct target: both give one batch's gradients."""
    model = tiny_model("emb")
    data = {k: torch.stack([e[k] for e in examples()]) for k in examples()[0]}
    n_items = (data["labels"] != -100).sum()

    def grads() -> dict:
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    model(**data, num_items_in_batch=n_items).loss.backward()
    want = grads()
    for _ in range(2):
        model.zero_grad(set_to_none=False)
        for i in range(4):
            part = {k: v[8 * i:8 * i + 8] for k, v in data.items()}
            with torch.no_grad():
                model.eval()(**part, num_items_in_batch=n_items)
                model.train()(**part, num_items_in_batch=n_items)
            model(**part, num_items_in_batch=n_items)  # a graph never backpropagated
            model(**part, num_items_in_batch=n_items).loss.backward()
        assert_same_grads(grads(), want, "emb")


def test_without_num_items_in_batch_accumulation_differs(tmp_path):
    """The check above can fail: the Trainer's own per-micro-batch mean gives other gradients."""
    big = trainer_grads(tiny_model("ce"), 32, 1, tmp_path)
    model = tiny_model("ce")
    model.accepts_loss_kwargs = False  # the Trainer then averages the micro-batch means
    small = trainer_grads(model, 8, 4, tmp_path)
    assert not torch.allclose(small["head.fc.weight"], big["head.fc.weight"], rtol=1e-3)


def test_output_is_a_standard_classifier_output():
    model = tiny_model("emb").eval()
    batch = examples(4)
    ids = torch.stack([b["input_ids"] for b in batch])
    labels = torch.tensor([0, 1, 2, 3])
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels)
    assert isinstance(out, SequenceClassifierOutput)
    assert out.logits.shape == (4, C) and out.loss.dim() == 0
    features = model.encoder(input_ids=ids).last_hidden_state[:, 0]
    torch.testing.assert_close(out.logits, model.head.fc(features))  # the main head's logits
    assert model(input_ids=ids).loss is None
    # Without num_items_in_batch the loss is the criterion's own batch mean.
    main, aux = model.head(features)
    torch.testing.assert_close(out.loss, model.criterion(main, aux, labels).loss)
    # With it, for one whole batch, the same.
    torch.testing.assert_close(model.trainer_loss(main, aux, labels, 4), out.loss)


def test_save_pretrained_keeps_the_learned_embedding(tmp_path):
    model = tiny_model("emb")
    args = TrainingArguments(output_dir=str(tmp_path / "t"), max_steps=3, learning_rate=0.05,
                             per_device_train_batch_size=4, report_to=[], save_strategy="no",
                             use_cpu=True, disable_tqdm=True)
    Trainer(model=model, args=args, train_dataset=examples()).train()
    assert not torch.equal(model.label_embedding.weight, torch.eye(C))  # it has learned
    model.save_pretrained(tmp_path / "m")
    loaded = LabelEmbeddingForSequenceClassification.from_pretrained(tmp_path / "m")
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=name)
    assert loaded.label_embedding.class_names == NAMES
    assert loaded.config.loss == "emb" and loaded.config.encoder.hidden_size == 16
    torch.testing.assert_close(loaded.soft_targets(), model.soft_targets())
    # `labelemb inspect` reads the model folder itself and names the categories.
    shown = labelemb("inspect", tmp_path / "m", "--classes", "linux", "--top-k", "2")
    assert shown.returncode == 0, shown.stderr
    row = shown.stdout.splitlines()[2]
    assert row.startswith("| linux |") and len([n for n in NAMES if f" {n} (" in row]) == 2


def test_baseline_starts_from_the_same_weights():
    emb, ce = tiny_model("emb").state_dict(), tiny_model("ce").state_dict()
    assert "head.aux_fc.weight" not in ce and "criterion.embedding.weight" in emb
    for name, value in ce.items():
        torch.testing.assert_close(emb[name], value, rtol=0, atol=0, msg=name)


def test_bad_settings_name_the_field():
    # The config's strict validator wraps the ValueError in huggingface_hub's own error.
    with pytest.raises(Exception, match="loss must be one of"):
        tiny_model("focal")
    with pytest.raises(Exception, match="pooling must be one of"):
        tiny_model("ce", pooling="cls")
    model = tiny_model("ce", pooling="pooled")
    model.encoder.pooler = None  # an encoder without a pooler
    with pytest.raises(ValueError, match="pooling='pooled'"):
        model(input_ids=torch.ones(1, 3, dtype=torch.long))


@pytest.mark.parametrize("settings, named", [
    ({"loss": "ls", "smoothing": "0.1"}, "smoothing must be a number in \\[0, 1\\), got '0.1'"),
    ({"loss": "ls", "smoothing": 1.0}, "smoothing must be a number in"),
    ({"loss": "ols", "ols_alpha": "x"}, "ols_alpha must be a number in \\[0, 1\\]"),
    ({"classifier_dropout": -0.1}, "classifier_dropout must be a number"),
    ({"loss_options": "beta=1"}, "loss_options must be a dict"),
    ({"loss_options": {"temperature": 2}}, "unknown loss option 'temperature'"),
    ({"loss_options": {"beta": "x"}}, "beta must be in"),
    ({"loss_options": {"reduction": "sum"}}, "reduction must be 'mean'"),
])
def test_a_bad_value_from_a_config_file_is_named_not_compared(settings, named):
    # what a JSON or YAML file or a command line hands over: strings, unknown names
    with pytest.raises(Exception, match=named) as raised:
        LabelEmbeddingConfig(num_labels=3, **settings)
    assert isinstance(raised.value.__cause__ or raised.value, ValueError)


def test_importing_labelemb_does_not_import_transformers():
    code = ("import sys, labelemb, labelemb.cli; labelemb.cli.build_parser(); "
            "print('transformers' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
