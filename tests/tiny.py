"""Tiny random models of every supported family, built from configs (no weights, no Hub): the
encoder-decoders NASH prunes (T5, BART, BERT2BERT) and the BERT encoders and classifiers EFTNAS
searches. Every test builds its models here."""

import torch
from transformers import (BartConfig, BartForConditionalGeneration, BertConfig, EncoderDecoderConfig,
                          EncoderDecoderModel, T5Config, T5ForConditionalGeneration)

VOCAB = 120


def tiny_t5(gated: bool = False, decoder_layers: int = 4) -> T5ForConditionalGeneration:
    torch.manual_seed(0)
    config = T5Config(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=48, num_layers=3, num_decoder_layers=decoder_layers,
                      num_heads=4, feed_forward_proj="gated-gelu" if gated else "relu",
                      decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, dropout_rate=0.0,
                      tie_word_embeddings=not gated)
    return T5ForConditionalGeneration(config).eval()


def tiny_bart(decoder_layers: int = 4) -> BartForConditionalGeneration:
    torch.manual_seed(0)
    config = BartConfig(vocab_size=VOCAB, d_model=32, encoder_layers=3, decoder_layers=decoder_layers,
                        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=48,
                        decoder_ffn_dim=48, max_position_embeddings=64, pad_token_id=1, bos_token_id=0,
                        eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=None, dropout=0.0,
                        attention_dropout=0.0, activation_dropout=0.0)
    return BartForConditionalGeneration(config).eval()


def tiny_bert2bert(decoder_layers: int = 4) -> EncoderDecoderModel:
    torch.manual_seed(0)
    common = dict(vocab_size=VOCAB, hidden_size=32, num_attention_heads=4, intermediate_size=48,
                  max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    enc = BertConfig(num_hidden_layers=3, **common)
    dec = BertConfig(num_hidden_layers=decoder_layers, is_decoder=True, add_cross_attention=True, **common)
    config = EncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = 2, 0, 3
    return EncoderDecoderModel(config=config).eval()


FAMILIES = {"t5": tiny_t5, "t5-gated": lambda: tiny_t5(gated=True), "bart": tiny_bart, "bert2bert": tiny_bert2bert}


def batch(batch_size: int = 2, src_len: int = 9, tgt_len: int = 5, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, VOCAB, (batch_size, src_len), generator=g)
    mask = torch.ones_like(ids)
    mask[0, -2:] = 0  # some padding, so masks are exercised
    labels = torch.randint(4, VOCAB, (batch_size, tgt_len), generator=g)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def save_tiny_t5(folder, tokenizer_dir):
    """Save a tiny T5 (random weights) with a real T5 tokenizer as a ``save_pretrained`` folder,
    usable as a model spec (``--model <folder>``) by the CLI, the service and the app."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = tiny_t5()
    model.resize_token_embeddings(len(tokenizer))
    model.config.decoder_start_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_bert(layers: int = 3, heads: int = 4, hidden: int = 32, ffn: int = 64, *, classifier: bool = False,
              vocab: int = 100, positions: int = 64, weight_scale: float = 1.0, attn: str | None = "eager",
              seed: int = 0):
    """A tiny BERT encoder (``BertModel`` without pooler) or, with ``classifier``, a
    ``BertForSequenceClassification`` (2 labels), dropout off, in eval mode. ``weight_scale`` > 1
    makes Linear weights larger than BERT's init, so a wrong permutation of units shows at 1e-5."""
    from transformers import BertForSequenceClassification, BertModel

    torch.manual_seed(seed)
    options = {"attn_implementation": attn} if attn else {}
    config = BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=ffn, max_position_embeddings=positions, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, **options)
    model = (BertForSequenceClassification(config) if classifier else BertModel(config, add_pooling_layer=False)).eval()
    if weight_scale != 1.0:
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, torch.nn.Linear):
                    module.weight.mul_(weight_scale)
    return model
