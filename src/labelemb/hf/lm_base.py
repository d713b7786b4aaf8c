"""What :class:`~labelemb.hf.LabelEmbeddingForCausalLM` and
:class:`~labelemb.hf.LabelEmbeddingForSeq2SeqLM` share: a Transformers model (``model``)
wrapped with :class:`~labelemb.hf.lm.LMLoss`, built ``from_model`` or ``from_pretrained``;
inference and ``generate()`` are the wrapped model's."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from torch import Tensor, nn
from transformers import GenerationConfig, PreTrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput, logging

from ..loss import LabelEmbeddingLoss
from .autoload import write_loader
from .lm import LMLoss, check_logits_are_the_head_s, lm_head_layer
from .settings import LOSS_OPTIONS
from .lm_config import LM_SETTINGS, LabelEmbeddingLMConfig, build_config

__all__ = ["LabelEmbeddingLMBase"]

logger = logging.get_logger(__name__)

#: the special tokens' ids, copied from the wrapped model's config to the wrapper's
_TOKEN_IDS = ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id")
#: ``from_pretrained``'s keywords that say where a folder is (for reading its config alone)
_HUB = ("cache_dir", "force_download", "proxies", "local_files_only", "token", "revision",
        "subfolder")


class LabelEmbeddingLMBase(PreTrainedModel):
    """The wrapped model ``model``, built from ``config.lm`` by ``auto_class`` unless given,
    and the loss ``lm_loss`` (second head and label embedding for ``emb``)."""

    base_model_prefix = "model"
    main_input_name = "input_ids"
    # The wrapped model computes the attention: any implementation it supports.
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    # forward takes num_items_in_batch: the Trainer passes it and does not divide the loss.
    accepts_loss_kwargs = True
    # the wrapped model's layers checkpoint (ours are one layer each)
    supports_gradient_checkpointing = True
    #: the Transformers Auto class that builds the wrapped model from ``config.lm``
    auto_class: Any = None

    def __init__(self, config: LabelEmbeddingLMConfig, model: PreTrainedModel | None = None
                 ) -> None:
        super().__init__(config)
        config.validate_labelemb()
        self.model = model if model is not None else self.auto_class.from_config(config.lm)
        config.lm = self.model.config  # one object: what is saved is what runs
        for name in _TOKEN_IDS:  # read from the top-level config (Seq2SeqTrainer's padding)
            if getattr(config, name, None) is None:
                setattr(config, name, getattr(config.lm, name, None))
        check_logits_are_the_head_s(self.model.config)
        # The wrapped model's tied weights, under this model's names (as Transformers'
        # composite models list their sub-models'): saving writes each once.
        tied = self.model._tied_weights_keys or {}
        self._tied_weights_keys = ({f"model.{k}": f"model.{v}" for k, v in tied.items()}
                                   if isinstance(tied, dict) else [f"model.{k}" for k in tied])
        head = lm_head_layer(self.model)
        vocab_size, hidden_size = head.weight.shape  # a resized tied head's out_features is stale
        self.lm_loss = LMLoss(config, hidden_size, vocab_size)
        self.post_init()
        if model is not None:  # a built (maybe bfloat16, on a GPU) model: ours follow it
            self.lm_loss.to(head.weight.device, head.weight.dtype)

    @classmethod
    def from_model(cls, model: PreTrainedModel, loss: str = "emb", label_dim: int = 100,
                   **settings: Any) -> "LabelEmbeddingLMBase":
        """Wrap a built model (its weights kept). ``settings``: the other config fields
        (``chunk_size``, ``logits_with_loss``, ...) and, as keywords, the
        :class:`labelemb.LossOptions` fields (``warmup_steps=0``, ``tau=...``)."""
        config = build_config(cls.config_class, model, loss=loss, label_dim=label_dim,
                              **settings)
        return cls(config, model=model)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike | None,
                        *model_args: Any, **kwargs: Any) -> Any:
        """``PreTrainedModel.from_pretrained`` of a folder (or Hub name) this class saved.

        One that holds a plain Transformers LM (``GPT2LMHeadModel.save_pretrained(DIR)``, a
        Hub checkpoint) is wrapped, as a ``...ForSequenceClassification`` is built on its base
        model's checkpoint: ``from_model(auto_class.from_pretrained(DIR, **rest), **settings)``,
        where ``settings`` are the keywords that are labelemb settings (``loss``,
        ``label_dim``, ``logits_with_loss``, ..., the ``LossOptions`` fields) and ``rest``
        the others (``dtype``, ``device_map``, ...). The second head and the label embedding
        start from their initialisation and are the ``missing_keys`` of
        ``output_loading_info``. A folder this class saved takes the ``LossOptions`` fields as
        keywords too, over its saved ``loss_options``."""
        if kwargs.get("config") is None and pretrained_model_name_or_path is not None:
            saved = _saved_config(pretrained_model_name_or_path, kwargs)
            model_type = saved.get("model_type")
            if model_type is not None and model_type != cls.config_class.model_type:
                _refuse_other_labelemb_model(cls, model_type)
                return cls._wrap_pretrained(pretrained_model_name_or_path, *model_args,
                                            **kwargs)
            options = {k: kwargs.pop(k) for k in list(kwargs) if k in LOSS_OPTIONS}
            if options:  # a config override, as loss_options=... is
                kwargs["loss_options"] = {**(kwargs.get("loss_options") or
                                             saved.get("loss_options") or {}), **options}
        return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)

    @classmethod
    def _wrap_pretrained(cls, path: str | os.PathLike, *model_args: Any, **kwargs: Any) -> Any:
        """:meth:`from_pretrained` of a plain model's checkpoint."""
        settings = {k: kwargs.pop(k) for k in list(kwargs)
                    if k in LM_SETTINGS or k in LOSS_OPTIONS}
        with_info = kwargs.get("output_loading_info", False)
        loaded = cls.auto_class.from_pretrained(path, *model_args, **kwargs)
        model, info = loaded if with_info else (loaded, None)
        wrapper = cls.from_model(model, **settings).eval()  # eval, as from_pretrained's
        new = [k for k in wrapper.state_dict() if not k.startswith(f"{cls.base_model_prefix}.")]
        logger.warning(f"{cls.__name__}: {path} holds a plain {type(model).__name__}: wrapped "
                       f"it; newly initialised: {', '.join(new)}")
        if info is None:
            return wrapper
        prefix = f"{cls.base_model_prefix}."
        return wrapper, {
            "missing_keys": {prefix + k for k in info["missing_keys"]} | set(new),
            "unexpected_keys": {prefix + k for k in info["unexpected_keys"]},
            "mismatched_keys": {(prefix + k, *rest) for k, *rest in info["mismatched_keys"]},
            "error_msgs": info["error_msgs"]}

    @staticmethod
    def _check_labels(labels: Tensor, hidden: Tensor, inputs: str) -> None:
        """``labels`` must be the (decoder) inputs' ``(N, T)``: the loss shifts or aligns them
        itself, and its own message would give the shifted shapes."""
        if labels.shape != hidden.shape[:-1]:
            raise ValueError(f"labels must have {inputs}' shape {tuple(hidden.shape[:-1])}, got "
                             f"{tuple(labels.shape)}")

    def _output(self, output_class: type[ModelOutput], out: ModelOutput, loss: Tensor,
                head: nn.Module, return_logits: bool | None, tuples: bool) -> ModelOutput | tuple:
        """The standard ``output_class`` of a forward given labels: the ``loss``, the logits
        ``head(out.last_hidden_state)`` when wanted (``return_logits``, else
        ``config.logits_with_loss``, else in eval mode only), and the base model's other
        outputs (its cache, hidden states, attentions) under the names ``output_class`` gives
        them in the installed Transformers (the cache is ``past_key_values`` or ``cache``)."""
        fields = {f.name for f in dataclasses.fields(output_class)} - {"loss", "logits"}
        wanted = next((w for w in (return_logits, self.config.logits_with_loss)
                       if w is not None), not self.training)
        output = output_class(loss=loss, logits=head(out.last_hidden_state) if wanted else None,
                              **{k: v for k, v in out.items() if k in fields})
        return output.to_tuple() if tuples else output

    def _init_weights(self, module: nn.Module) -> None:
        """The wrapped model initialises its own modules (Transformers dispatches them to its
        ``_init_weights``; pre-trained ones are left alone). Ours: the second head and ``B``
        as ``nn.Linear`` draws, ``A`` N(0, 1) as the authors' code, the warm-up clock 0."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.reset_parameters()
        elif isinstance(module, LabelEmbeddingLoss):
            module.num_updates.zero_()

    def resize_token_embeddings(self, *args: Any, **kwargs: Any) -> nn.Embedding:
        """The wrapped model's ``resize_token_embeddings`` (its LM head, tied or not, and
        BART's and Marian's ``final_logits_bias`` follow, as Transformers resizes them); the
        second head and the label embedding follow the LM head's new size, their kept tokens'
        rows unchanged (:meth:`LMLoss.resize`)."""
        embeddings = self.model.resize_token_embeddings(*args, **kwargs)
        # the head's weight: a tied head (Marian's) gets the new weight, its out_features stays
        self.lm_loss.resize(lm_head_layer(self.model).weight.shape[0])
        return embeddings

    @property
    def vocab_size(self) -> int:
        """The wrapped model's vocabulary (its config's, which resizing updates), as
        Transformers' LMs (``LlamaForCausalLM.vocab_size``) have it."""
        return self.config.get_text_config().vocab_size

    @property
    def label_embedding(self) -> nn.Module | None:
        """The learned ``ReLU(A[y] B)`` label embedding (``loss="emb"``), else ``None``."""
        return self.lm_loss.label_embedding

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.model.get_output_embeddings()

    def get_encoder(self, *args: Any, **kwargs: Any) -> nn.Module:
        return self.model.get_encoder(*args, **kwargs)

    @property
    def generation_config(self) -> GenerationConfig:
        """The wrapped model's (``Seq2SeqTrainer`` reads it); setting it sets the model's."""
        return self.model.generation_config

    @generation_config.setter
    def generation_config(self, value: GenerationConfig) -> None:
        if "model" in self._modules:  # PreTrainedModel sets one before the model is built
            self.model.generation_config = value

    def adjust_generation_fn(self, generation_config: GenerationConfig | None,
                             from_auto_class: bool, from_pipeline: Any,
                             pretrained_model_name_or_path: Any, **kwargs: Any) -> None:
        """``from_pretrained``'s hook (``GenerationMixin``'s, which the wrapper is not): the
        saved ``generation_config.json`` goes to the wrapped model."""
        if generation_config is not None:
            self.generation_config = generation_config
            return
        if pretrained_model_name_or_path is None:
            return
        try:
            self.generation_config = GenerationConfig.from_pretrained(
                pretrained_model_name_or_path, **{k: kwargs[k] for k in _HUB if k in kwargs})
        except OSError:
            pass  # saved without one: the wrapped model's own stays

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any
                        ) -> None:
        """``PreTrainedModel.save_pretrained``; ``config.json`` names the loader module it
        writes beside, so the Auto classes load the folder without ``import labelemb.hf``
        (with ``trust_remote_code=True``)."""
        if kwargs.get("is_main_process", True):
            self.config.auto_map = write_loader(save_directory, {
                "AutoConfig": self.config_class, self.auto_class.__name__: type(self)})
        super().save_pretrained(save_directory, *args, **kwargs)

    def gradient_checkpointing_enable(self, *args: Any, **kwargs: Any) -> None:
        """The wrapped model's layers checkpoint; refused, naming it, where they cannot."""
        if not getattr(self.model, "supports_gradient_checkpointing", False):
            raise ValueError(f"gradient checkpointing: {type(self.model).__name__} does not "
                             "support it")
        super().gradient_checkpointing_enable(*args, **kwargs)

    @classmethod
    def can_generate(cls) -> bool:
        """Yes (by the wrapped model): ``save_pretrained`` then writes its generation config,
        and pipelines and ``Seq2SeqTrainer`` treat the wrapper as a generating model."""
        return True

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """The wrapped model's ``generate()``, unchanged: the second head and the label
        embedding only train."""
        return self.model.generate(*args, **kwargs)


def _saved_config(path: str | os.PathLike, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The folder's ``config.json`` as a dict (empty where there is none: ``from_pretrained``
    then says what is missing)."""
    try:
        config, _ = PreTrainedConfig.get_config_dict(
            path, **{k: kwargs[k] for k in _HUB if k in kwargs})
    except OSError:
        return {}
    return config


def _refuse_other_labelemb_model(cls: type[LabelEmbeddingLMBase], model_type: str) -> None:
    """A folder another labelemb class saved is that class's to load, not a plain model."""
    if not model_type.startswith("labelemb"):
        return
    owners = [c.__name__ for c in LabelEmbeddingLMBase.__subclasses__()
              if c.config_class.model_type == model_type]
    raise ValueError(f"the folder holds a {model_type!r} model, not a "
                     f"{cls.config_class.model_type!r} one: load it with "
                     f"{owners[0] if owners else 'its own labelemb class'}")
