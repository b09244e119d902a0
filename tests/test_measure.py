"""Tests of explorer.evaluation.latency on tiny random T5, BART and BERT2BERT models."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import (BartConfig, BartForConditionalGeneration, BertConfig, BertModel, EncoderDecoderConfig,
                          EncoderDecoderModel, T5Config, T5ForConditionalGeneration)

from explorer.evaluation.latency import (LatencyResult, device_description, machine_description, measure_latency,
                                        paired_speedups, paused)
from explorer.evaluation.latency import all_cores, speedup_interval
from explorer.evaluation.costs import count_macs, count_params

BERT_MINI = Path(__file__).resolve().parents[2] / "shared" / "models" / "bert-mini" / "config.json"
FAMILIES = ("t5", "t5-gated", "bart", "bert2bert")
# BERT2BERT on the real bert-mini config (30k vocabulary) takes ~10 s to time or count a whole generation.
FAMILIES_BERT2BERT_SLOW = [pytest.param(f, marks=pytest.mark.slow) if f == "bert2bert" else f for f in FAMILIES]
SMALL = {"batch_size": 1, "input_tokens": 8, "new_tokens": 4}


def tiny_t5(decoder_layers: int = 2, d_model: int = 32, d_ff: int = 64, gated: bool = False) -> T5ForConditionalGeneration:
    """T5 (ReLU FFN) or, with ``gated``, T5 v1.1 / FLAN-T5 style (gated-GELU FFN).

    Transformers 5's T5Config ties the LM head to the shared embedding whatever
    ``tie_word_embeddings`` says (it only switches the output scaling)."""
    torch.manual_seed(0)
    config = T5Config(vocab_size=128, d_model=d_model, d_kv=8, d_ff=d_ff, num_layers=2,
                      num_decoder_layers=decoder_layers, num_heads=4, decoder_start_token_id=0,
                      pad_token_id=0, eos_token_id=1, feed_forward_proj="gated-gelu" if gated else "relu",
                      tie_word_embeddings=not gated)
    return T5ForConditionalGeneration(config).eval()


def tiny_bart(decoder_layers: int = 2) -> BartForConditionalGeneration:
    torch.manual_seed(0)
    config = BartConfig(vocab_size=128, d_model=32, encoder_layers=2, decoder_layers=decoder_layers,
                        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
                        decoder_ffn_dim=64, max_position_embeddings=64)
    return BartForConditionalGeneration(config).eval()


def tiny_bert2bert(decoder_layers: int = 2) -> EncoderDecoderModel:
    """BERT2BERT from the real bert-mini config when present (shrunk to 2 layers), else a tiny BertConfig."""
    torch.manual_seed(0)
    if BERT_MINI.exists():
        encoder = BertConfig.from_json_file(str(BERT_MINI))
        decoder = BertConfig.from_json_file(str(BERT_MINI))
    else:
        encoder, decoder = (BertConfig(vocab_size=128, hidden_size=32, num_attention_heads=4, intermediate_size=64)
                            for _ in range(2))
    encoder.num_hidden_layers, decoder.num_hidden_layers = 2, decoder_layers
    config = EncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = 101, 0, 102
    return EncoderDecoderModel(config=config).eval()


BUILDERS = {"t5": tiny_t5, "t5-gated": lambda decoder_layers=2: tiny_t5(decoder_layers, gated=True),
            "bart": tiny_bart, "bert2bert": tiny_bert2bert}


@pytest.fixture(scope="module", params=FAMILIES)
def family_model(request):
    return request.param, BUILDERS[request.param]()


@pytest.mark.parametrize("family", FAMILIES_BERT2BERT_SLOW)
def test_latency_result_is_positive_finite_ms(family):
    model = BUILDERS[family]()
    # Medians of 9 runs, so that a busy machine cannot push the encoder median above generate's.
    result = measure_latency(model, **SMALL, repeats=9, warmup=1)
    assert isinstance(result, LatencyResult)
    for value in (result.encoder_ms, result.decode_ms_per_token, result.latency_ms):
        assert math.isfinite(value) and value > 0
    # Milliseconds, not seconds: a tiny model's generate is above 0.01 ms and below a minute.
    assert 0.01 < result.latency_ms < 60_000
    assert result.latency_ms > result.encoder_ms
    assert result.decode_ms_per_token == pytest.approx((result.latency_ms - result.encoder_ms) / SMALL["new_tokens"])
    assert (result.batch_size, result.input_tokens, result.new_tokens, result.num_beams, result.repeats) == (1, 8, 4, 1, 9)
    assert result.device.startswith("cpu (") and f"{torch.get_num_threads()} threads" in result.device


def test_measure_latency_restores_training_flag_and_supports_beams():
    model = tiny_t5().train()
    result = measure_latency(model, batch_size=2, input_tokens=6, new_tokens=3, num_beams=2, repeats=1, warmup=0)
    assert model.training
    assert result.num_beams == 2 and result.batch_size == 2 and result.latency_ms > 0


def test_paired_speedups_time_every_model_in_each_round_against_the_reference():
    reference, shallow = tiny_t5(decoder_layers=4).train(), tiny_t5(decoder_layers=1)
    timed = paired_speedups(reference, {"shallow": shallow, "same": reference}, input_tokens=8, new_tokens=4, rounds=3)
    assert list(timed) == ["shallow", "same"]
    for result in timed.values():
        assert len(result.ratios) == 3 and all(r > 0 for r in result.ratios)
        assert result.speedup == pytest.approx(sorted(result.ratios)[1])  # the median of the rounds
        assert result.model_ms > 0 and result.reference_ms > 0
    assert timed["same"].reference_ms == timed["shallow"].reference_ms  # one reference median for all
    assert reference.training  # flags restored
    with pytest.raises(ValueError, match="rounds"):
        paired_speedups(reference, {"shallow": shallow}, rounds=0)
    with pytest.raises(ValueError):
        paired_speedups(reference, {"shallow": shallow}, input_tokens=0)


def test_paired_speedups_cancel_drift_within_a_round_of_many_models(monkeypatch):
    from explorer.evaluation import latency

    reference = tiny_t5(decoder_layers=1)
    calls = []

    def drifting_clock(fn, *, repeats, warmup, device):  # every call 10% slower than the one before
        calls.append(fn)
        return 10.0 * (1 + 0.1 * len(calls))

    monkeypatch.setattr(latency, "median_ms", drifting_clock)
    same = {f"copy {i}": reference for i in range(5)}  # all as fast as the reference
    timed = latency.paired_speedups(reference, same, input_tokens=4, new_tokens=2, rounds=2)
    assert len(calls) == 2 * (2 * 5 + 1)  # per round: the reference around each model
    for result in timed.values():  # with one reference timing per round the fifth copy would read 11/16
        assert result.ratios == pytest.approx([1.0, 1.0])
    low, high = speedup_interval([1.3, 1.5, 1.4, 1.6, 1.2, 1.45, 1.35])
    assert low <= 1.4 <= high and high - low < 0.4
    assert speedup_interval([1.5, 1.5]) == (1.5, 1.5)
    with pytest.raises(ValueError, match="at least 2"):
        speedup_interval([1.5])


def test_paused_stops_a_process_group_under_a_lock_and_continues_it(tmp_path):
    import fcntl
    import subprocess

    def state(pid: int) -> str:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]

    job = subprocess.Popen(["sleep", "60"], start_new_session=True)  # its own process group
    lock = tmp_path / "timing.lock"
    try:
        with paused([-job.pid, 999_999_999], lock=lock) as stopped:  # an unknown PID is skipped
            assert stopped == [-job.pid]
            for _ in range(100):
                if state(job.pid) == "T":
                    break
                time.sleep(0.01)
            assert state(job.pid) == "T"
            with open(lock, "a") as other, pytest.raises(BlockingIOError):  # a second timer would wait
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for _ in range(100):
            if state(job.pid) != "T":
                break
            time.sleep(0.01)
        assert state(job.pid) != "T"
        with open(lock, "a") as other:
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released
    finally:
        job.kill()
        job.wait()


def test_eos_cannot_stop_generation_early():
    model = tiny_bart()
    with torch.no_grad():
        model.final_logits_bias[0, model.config.eos_token_id] = 1e4  # greedy would emit EOS at once
    result = measure_latency(model, **SMALL, repeats=1, warmup=0)  # raises RuntimeError on a short output
    assert result.new_tokens == SMALL["new_tokens"]
    assert count_macs(model, **SMALL)["decoder_gmacs"] > 0


def test_encoder_macs_match_the_analytic_count_in_gmacs():
    model = tiny_t5()
    tokens, d_model, d_ff, inner, layers = 8, 32, 64, 4 * 8, 2
    projections = tokens * (4 * d_model * inner + 2 * d_model * d_ff)  # Q, K, V, O and the two FFN matrices
    attention = 2 * tokens * tokens * inner  # scores Q K^T and the weighted sum of V
    macs = count_macs(model, batch_size=1, input_tokens=tokens, new_tokens=2)
    assert macs["encoder_gmacs"] == pytest.approx(layers * (projections + attention) / 1e9)
    assert macs["gmacs"] == pytest.approx(macs["encoder_gmacs"] + macs["decoder_gmacs"])


def test_macs_scale_with_batch_size():
    model = tiny_t5()
    one = count_macs(model, batch_size=1, input_tokens=8, new_tokens=3)
    three = count_macs(model, batch_size=3, input_tokens=8, new_tokens=3)
    for key in one:
        assert three[key] == pytest.approx(3 * one[key])


@pytest.mark.parametrize("family", FAMILIES)
def test_fewer_decoder_layers_give_fewer_macs(family):
    dense = count_macs(BUILDERS[family](decoder_layers=2), **SMALL)
    short = count_macs(BUILDERS[family](decoder_layers=1), **SMALL)
    assert short["decoder_gmacs"] < dense["decoder_gmacs"]
    assert short["gmacs"] < dense["gmacs"]
    assert short["encoder_gmacs"] == pytest.approx(dense["encoder_gmacs"])


def test_t5_encoder_macs_grow_about_linearly_with_input_tokens():
    model = tiny_t5(d_model=64, d_ff=256)  # attention's quadratic term is ~4% at these lengths
    short = count_macs(model, input_tokens=8, new_tokens=1)["encoder_gmacs"]
    long = count_macs(model, input_tokens=16, new_tokens=1)["encoder_gmacs"]
    assert 2.0 <= long / short < 2.1


def test_non_uniform_encoder_widths_are_measured_from_the_modules():
    """A layer narrowed by hand (as pruning surgery does) costs fewer MACs; nothing is read from the config."""
    model = tiny_t5()
    before_macs, before_params = count_macs(model, **SMALL), count_params(model)
    ffn = model.encoder.block[0].layer[1].DenseReluDense
    kept = 16
    ffn.wi = nn.Linear(ffn.wi.in_features, kept, bias=False)
    ffn.wo = nn.Linear(kept, ffn.wo.out_features, bias=False)
    after_macs, after_params = count_macs(model, **SMALL), count_params(model)
    removed = (64 - kept) * 2 * 32  # neurons x (wi row + wo column) x d_model
    assert (before_macs["encoder_gmacs"] - after_macs["encoder_gmacs"]) * 1e9 == pytest.approx(SMALL["input_tokens"] * removed)
    assert (before_params["params_m"] - after_params["params_m"]) * 1e6 == pytest.approx(removed)
    assert measure_latency(model, **SMALL, repeats=1, warmup=0).latency_ms > 0


def test_decoder_deeper_than_encoder_generates():
    """T5 maps num_hidden_layers to the encoder depth; generation must not size its cache from it."""
    model = tiny_t5(decoder_layers=4)
    assert len(model.decoder.block) > len(model.encoder.block)
    assert measure_latency(model, **SMALL, repeats=1, warmup=0).latency_ms > 0
    assert count_macs(model, **SMALL)["decoder_gmacs"] > count_macs(tiny_t5(decoder_layers=2), **SMALL)["decoder_gmacs"]


def test_count_params_matches_numel(family_model):
    _, model = family_model
    params = count_params(model)
    assert params["params_m"] * 1e6 == pytest.approx(sum(p.numel() for p in model.parameters()))
    assert params["encoder_params_m"] * 1e6 == pytest.approx(sum(p.numel() for p in model.get_encoder().parameters()))
    assert params["decoder_params_m"] * 1e6 == pytest.approx(sum(p.numel() for p in model.get_decoder().parameters()))
    assert 0 < params["encoder_params_m"] < params["params_m"]
    assert 0 < params["decoder_params_m"] < params["params_m"]


def test_count_params_counts_a_shared_embedding_once_in_the_total():
    model = tiny_t5()
    params = count_params(model)
    shared = model.shared.weight.numel() / 1e6
    assert model.encoder.embed_tokens.weight is model.decoder.embed_tokens.weight
    assert params["encoder_params_m"] + params["decoder_params_m"] - shared <= params["params_m"] + 1e-9


@pytest.mark.parametrize("kwargs", [
    {"batch_size": 0}, {"input_tokens": -1}, {"new_tokens": 0}, {"num_beams": 0}, {"repeats": 0},
    {"warmup": -1}, {"batch_size": 1.5}, {"device": "tpu"}, {"device": "not a device"},
])
def test_measure_latency_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        measure_latency(tiny_t5(), **kwargs)


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"input_tokens": 0}, {"new_tokens": -2}])
def test_count_macs_rejects_bad_sizes(kwargs):
    with pytest.raises(ValueError):
        count_macs(tiny_t5(), **kwargs)


def test_cuda_without_cuda_is_a_clear_value_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        measure_latency(tiny_t5(), device="cuda")
    with pytest.raises(ValueError, match="CUDA is not available"):
        device_description("cuda")


def test_encoder_only_model_is_rejected():
    encoder = BertModel(BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=32))
    for fn in (measure_latency, count_macs, count_params):
        with pytest.raises(ValueError, match="not an encoder-decoder"):
            fn(encoder)


def test_bert2bert_without_decoder_start_is_rejected():
    model = tiny_bert2bert()
    model.config.decoder_start_token_id = None
    model.generation_config.decoder_start_token_id = None
    model.generation_config.bos_token_id = None
    model.config.bos_token_id = None
    with pytest.raises(ValueError, match="decoder_start_token_id"):
        count_macs(model, **SMALL)


def test_device_description_names_the_cpu():
    text = device_description("cpu")
    assert text.startswith("cpu (") and "threads" in text


def test_machine_description_adds_the_vector_width_the_kernels_use():
    """Two machines both named "AMD EPYC" gave different dense fine-tunes (README): the record must say more."""
    text = machine_description("cpu")
    assert text.startswith(device_description("cpu")[:-1] + ", ") and text.endswith(")")
    assert torch.backends.cpu.get_cpu_capability() in text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_measure_latency_on_cuda_moves_the_model():
    model = tiny_t5()
    result = measure_latency(model, **SMALL, device="cuda", repeats=2)
    assert result.device.startswith("cuda (") and result.latency_ms > 0
    assert next(model.parameters()).device.type == "cuda"
    assert count_macs(model, **SMALL)["gmacs"] > 0


@pytest.mark.parametrize("family", FAMILIES_BERT2BERT_SLOW)
def test_extrapolated_generation_macs_equal_a_direct_count(family):
    """count_macs counts 1, 2 and 3 new tokens and extrapolates the quadratic; a pruned decoder
    (one layer) and batch 2 included. Must equal counting the whole generation."""
    for model in (BUILDERS[family](decoder_layers=2), BUILDERS[family](decoder_layers=1)):
        fast = count_macs(model, batch_size=2, input_tokens=8, new_tokens=9)
        slow = count_macs(model, batch_size=2, input_tokens=8, new_tokens=9, direct=True)
        assert fast == slow


def test_padded_lengths_batch_like_group_by_length():
    from explorer.evaluation.step_time import padded_lengths

    lengths = [(10, 2), (3, 5), (9, 1), (4, 4)]
    assert padded_lengths(lengths, 2) == (7.0, 3.5)  # sorted by source: (10, 9) -> 10, 2; (4, 3) -> 4, 5
    assert padded_lengths(lengths, 4) == (10.0, 5.0)
    many = [(i % 7 + 1, 1) for i in range(200)]  # 2 mega-batches of 50 x 2: each sorted on its own
    assert padded_lengths(many, 2) < (7.0, 1.0)
    with pytest.raises(ValueError):
        padded_lengths([], 2)


def test_all_cores_uses_every_core_inside_and_restores_the_thread_count():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with all_cores():
            assert torch.get_num_threads() == (os.cpu_count() or 1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
