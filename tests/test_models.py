"""Backbone and config unit tests (no checkpoints). Run: pytest tests/test_models.py"""

import mlx.core as mx
import numpy as np
import pytest

from mlx_jina.models import BACKBONES, detect_backbone
from mlx_jina.models.base import ModelArgs, rope_theta, sanitize
from mlx_jina.models.decoder import Model

qwen3, eurobert = BACKBONES["qwen3"], BACKBONES["eurobert"]

TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    intermediate_size=48,
    num_attention_heads=4,
    num_key_value_heads=2,
    rms_norm_eps=1e-6,
    vocab_size=64,
    rope_theta=10000.0,
)


def tiny_model(backbone, **overrides):
    mx.random.seed(0)
    model = Model(ModelArgs.from_dict({**TINY, **overrides}), backbone)
    mx.eval(model.parameters())
    return model


def run(model, rows: list[list[int]], width: int | None = None) -> np.ndarray:
    """Hidden states of right-padded `rows` (padded with 0 to `width`)."""
    width = width or max(map(len, rows))
    ids = mx.array([row + [0] * (width - len(row)) for row in rows])
    return np.array(model(ids, np.array([len(row) for row in rows])))


def test_rope_theta_both_config_styles():
    """transformers 4.x (top level) and 5.x (rope_parameters) configs give the same theta."""
    assert rope_theta({"rope_theta": 3.5e6, "rope_scaling": None}) == 3.5e6
    assert rope_theta({"rope_parameters": {"rope_theta": 1e6, "rope_type": "default"}}) == 1e6
    assert rope_theta({"rope_theta": 1e6, "rope_parameters": {"rope_theta": 1e6}}) == 1e6
    # EuroBERT's remote code writes the default RoPE as linear with factor 1.
    assert rope_theta({"rope_theta": 1e6, "rope_scaling": {"type": "linear", "factor": 1.0}}) == 1e6


@pytest.mark.parametrize(
    "config, words",
    [
        ({}, "neither rope_theta"),
        ({"rope_theta": 1e6, "rope_parameters": {"rope_theta": 5e5}}, "must agree"),
        ({"rope_parameters": {"rope_theta": 1e6, "rope_type": "yarn", "factor": 4.0}}, "Unsupported"),
        ({"rope_theta": 1e6, "rope_scaling": {"type": "linear", "factor": 2.0}}, "Unsupported"),
    ],
)
def test_rope_theta_errors(config, words):
    """A missing or conflicting theta never silently falls back to a default."""
    with pytest.raises(ValueError, match=words):
        rope_theta(config)


def test_model_args_defaults_and_theta():
    """head_dim and num_key_value_heads default as in HF; theta is read from rope_parameters."""
    cfg = {k: v for k, v in TINY.items() if k not in ("num_key_value_heads", "rope_theta")}
    args = ModelArgs.from_dict({**cfg, "rope_parameters": {"rope_theta": 3.5e6}, "extra": 1})
    assert (args.head_dim, args.num_key_value_heads, args.rope_theta) == (8, 4, 3.5e6)
    with pytest.raises(ValueError, match="lacks hidden_size"):
        ModelArgs.from_dict({k: v for k, v in TINY.items() if k != "hidden_size"})


def test_sanitize_is_idempotent():
    """One leading `model.` is stripped and LM heads dropped; a second pass changes nothing."""
    w = {"model.layers.0.mlp.up_proj.weight": 1, "norm.weight": 2, "lm_head.weight": 3}
    once = sanitize(w)
    assert once == {"layers.0.mlp.up_proj.weight": 1, "norm.weight": 2}
    assert sanitize(once) == once


def test_qwen3_is_causal_eurobert_is_not():
    """Changing the last token leaves Qwen3's earlier states alone and moves EuroBERT's."""
    a, b = [[5, 9, 3, 7, 11]], [[5, 9, 3, 7, 12]]
    q = tiny_model(qwen3, head_dim=8)
    assert np.allclose(run(q, a)[:, :4], run(q, b)[:, :4], atol=1e-6)
    assert not np.allclose(run(q, a)[:, 4], run(q, b)[:, 4], atol=1e-3)
    e = tiny_model(eurobert)
    assert not np.allclose(run(e, a)[:, :4], run(e, b)[:, :4], atol=1e-3)


@pytest.mark.parametrize("backbone", [qwen3, eurobert])
def test_right_padding_leaves_real_tokens_alone(backbone):
    """A padded row's real positions equal the same row run alone."""
    model = tiny_model(backbone)
    row = [5, 9, 3]
    np.testing.assert_allclose(run(model, [row], width=5)[:, :3], run(model, [row]), atol=1e-5)


def test_qwen3_shapes_with_odd_heads():
    """3 query heads over 1 KV head with head_dim 16: q_proj is wider than hidden."""
    model = tiny_model(qwen3, num_attention_heads=3, num_key_value_heads=1, head_dim=16)
    assert model.layers[0].self_attn.q_proj.weight.shape == (48, 32)
    assert run(model, [[1, 2, 3]]).shape == (1, 3, 32)


@pytest.mark.parametrize(
    "config, keys, expected",
    [
        ({"model_type": "qwen3"}, {"layers.0.self_attn.q_norm.weight"}, "qwen3"),
        ({"model_type": "eurobert"}, {"layers.0.self_attn.q_proj.weight"}, "eurobert"),
        ({"model_type": "jina_embeddings_v5"}, {"layers.0.self_attn.q_norm.weight"}, "qwen3"),
        ({"model_type": "jina_embeddings_v5"}, {"layers.0.self_attn.q_proj.weight"}, "eurobert"),
        (
            {"model_type": "jina_embeddings_v5", "architectures": ["EuroBertModel"]},
            {"layers.0.self_attn.q_proj.weight"},
            "eurobert",
        ),
    ],
)
def test_detect_backbone(config, keys, expected):
    """Backbone is told from model_type, architectures and the q_norm weights."""
    assert detect_backbone(config, keys).model_type == expected


@pytest.mark.parametrize(
    "config, keys, words",
    [
        ({"model_type": "bert"}, set(), "Unsupported model_type 'bert'"),
        ({"model_type": "jina_embeddings_v5"}, {"embed_tokens.weight"}, "Can't tell the backbone"),
        ({"model_type": "eurobert"}, {"layers.0.self_attn.q_norm.weight"}, "disagree"),
    ],
)
def test_detect_backbone_errors(config, keys, words):
    """Unsure or contradictory sources raise instead of guessing."""
    with pytest.raises(ValueError, match=words):
        detect_backbone(config, keys)


# The two published backbone configs' values for the keys that pick a layer variant,
# and null (the default) for each: accepted as they are.
PUBLISHED_VARIANTS = [
    dict(hidden_act="silu", attention_bias=False, use_sliding_window=False, sliding_window=None,
         max_window_layers=28, layer_types=["full_attention"] * 2, tie_word_embeddings=True,
         rope_parameters={"rope_theta": 1e4, "rope_type": "default"}),  # small (Qwen3)
    dict(hidden_act="silu", attention_bias=False, mlp_bias=False, is_decoder=False,
         tie_word_embeddings=False, rope_scaling={"type": "linear", "factor": 1.0}),  # nano
    dict(hidden_act=None, attention_bias=None, mlp_bias=None, use_sliding_window=None,
         layer_types=None, partial_rotary_factor=None, rope_scaling=None),
    # transformers ignores sliding_window unless use_sliding_window (Qwen2.5 configs carry one)
    dict(use_sliding_window=False, sliding_window=4096),
]


@pytest.mark.parametrize("variant", PUBLISHED_VARIANTS)
def test_published_layer_variants_are_accepted(variant):
    """The values the published configs hold (or null) load; the refusals below are exact."""
    args = ModelArgs.from_dict({**TINY, **variant})
    assert args.hidden_size == TINY["hidden_size"]
    for backbone in (qwen3, eurobert):
        detect_backbone({"model_type": backbone.model_type, **variant}, set())


@pytest.mark.parametrize(
    "variant, words",
    [
        ({"hidden_act": "gelu"}, 'hidden_act="gelu" (supported: "silu")'),
        ({"hidden_act": "SiLU"}, 'hidden_act="SiLU"'),
        ({"attention_bias": 0}, "attention_bias=0"),  # not false: a number
        ({"mlp_bias": True}, "mlp_bias=true (supported: false)"),
        ({"use_sliding_window": True, "sliding_window": 8}, "use_sliding_window=true"),
        ({"layer_types": ["full_attention", "sliding_attention"]}, "layer_types="),
        ({"layer_types": "full_attention"}, "layer_types="),
        ({"layer_norm_eps": 1e-12}, "layer_norm_eps=1e-12 (not supported)"),
        ({"partial_rotary_factor": True}, "partial_rotary_factor=true"),
        ({"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}}, "Unsupported RoPE"),
        ({"rope_parameters": {"rope_theta": 1e4, "original_max_position_embeddings": 8}},
         "RoPE settings hold original_max_position_embeddings"),
        ({"rms_norm_eps": 1e-30}, "rms_norm_eps=1e-30; it must be a positive number from 1e-12"),
        ({"rope_theta": 1.0}, "rope_theta=1.0; it must be a positive number from 10 to 1e+12"),
    ],
)
def test_unimplemented_config_values_are_refused_by_name(variant, words):
    """hidden_act "gelu" in a Qwen3 config ran as SiLU; every value of a layer variant the
    decoder lacks is now refused, naming the key and what is supported."""
    with pytest.raises(ValueError) as info:
        ModelArgs.from_dict({**TINY, **variant})
    assert words in str(info.value)


def test_is_decoder_refused_for_the_bidirectional_backbone_only():
    """EuroBERT attends both ways: is_decoder=true asks for a causal model it isn't."""
    with pytest.raises(ValueError, match="is_decoder=true, but eurobert attends both ways"):
        detect_backbone({"model_type": "eurobert", "is_decoder": True}, set())
    assert detect_backbone({"model_type": "qwen3", "is_decoder": True}, set()) is qwen3
