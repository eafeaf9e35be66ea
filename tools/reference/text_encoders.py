"""text_encoders.py - the PyTorch reference of the two text encoders of SD3: CLIP and T5.

Written from a reading of transformers' modeling_clip.py (CLIPTextModelWithProjection:
CLIPTextEmbeddings, CLIPAttention, CLIPMLP, CLIPEncoderLayer, CLIPTextTransformer) and
modeling_t5.py (T5EncoderModel: T5LayerNorm, T5Attention with its relative position bias,
T5DenseGatedActDense / T5DenseActDense, T5Stack), and of diffusers' StableDiffusion3Pipeline
(_get_clip_prompt_embeds takes hidden_states[-2] and the projected pooled output;
_get_t5_prompt_embeds takes last_hidden_state, with no attention mask).

Plain functions over a state dict whose names are exactly the ones transformers saves, and the
config.json dict. Everything runs in the dtype of the tensors handed in (the fixtures use float64
for the golden outputs), except the relative-position buckets, which transformers computes with a
float32 log and which therefore must be reproduced in float32 here too.

make_text_encoder_fixtures.py --check-transformers compares the outputs of this reference with
transformers' own classes (done with transformers 5.17.0: within 1e-6 relative).

Shapes: B = batch, N = tokens, C = hidden size, h = heads, d = head dim.
"""
import math

import torch

# ---- activations, as transformers' ACT2FN names them ----


def _gelu_tanh(x):
    # transformers' NewGELUActivation ("gelu_new"); "gelu_fast" and "gelu_pytorch_tanh" are the
    # same function written differently.
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


ACTS = {
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    "gelu": lambda x: 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0))),
    "gelu_new": _gelu_tanh,
    "gelu_fast": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "silu": lambda x: x * torch.sigmoid(x),
    "swish": lambda x: x * torch.sigmoid(x),
}


def _linear(x, w, b=None):
    y = x @ w.t()
    return y if b is None else y + b


def _layer_norm(x, w, b, eps):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def _attention(q, k, v, heads, scale, causal=False, bias=None):
    """q, k, v [B, N, h*d] -> [B, N, h*d]; bias [h, N, N] is added to the scores."""
    B, N, C = q.shape
    d = C // heads
    q = q.view(B, N, heads, d).transpose(1, 2)
    k = k.view(B, N, heads, d).transpose(1, 2)
    v = v.view(B, N, heads, d).transpose(1, 2)
    s = (q @ k.transpose(-1, -2)) * scale
    if bias is not None:
        s = s + bias.unsqueeze(0)
    if causal:
        mask = torch.triu(torch.ones(N, N, dtype=torch.bool), diagonal=1)
        s = s.masked_fill(mask, float("-inf"))
    p = torch.softmax(s, dim=-1)
    return (p @ v).transpose(1, 2).reshape(B, N, C)


# ---- CLIP text model with projection ----


class ClipConfig:
    """The CLIPTextConfig fields the text model uses, with transformers' defaults."""

    def __init__(self, d):
        self.vocab_size = d.get("vocab_size", 49408)
        self.hidden_size = d["hidden_size"]
        self.intermediate_size = d["intermediate_size"]
        self.projection_dim = d["projection_dim"]
        self.num_hidden_layers = d["num_hidden_layers"]
        self.num_attention_heads = d["num_attention_heads"]
        self.max_position_embeddings = d.get("max_position_embeddings", 77)
        self.hidden_act = d.get("hidden_act", "quick_gelu")
        self.layer_norm_eps = d.get("layer_norm_eps", 1e-5)
        self.eos_token_id = d.get("eos_token_id", 49407)


def clip_pool_positions(config, input_ids):
    """The token each row's pooled output is read from.

    transformers (since PR #24773) keeps the old rule for configs that carry the wrong
    eos_token_id 2 (OpenAI's, and SD3's files): the position of the largest input id, which is
    where the tokenizer's EOS 49407 sits because it is the largest id of the vocabulary.
    Otherwise it is the first position holding eos_token_id (0 when there is none). argmax returns
    the first of equal maxima.
    """
    if config.eos_token_id == 2:
        return input_ids.to(torch.int32).argmax(dim=-1)
    return (input_ids.to(torch.int32) == config.eos_token_id).int().argmax(dim=-1)


def clip_text_forward(w, config, input_ids):
    """CLIPTextModelWithProjection(input_ids, output_hidden_states=True).

    Returns a dict: hidden_states (a list of num_hidden_layers + 1 tensors [B, N, C]: the
    embeddings, then every layer's output, none of them final-layer-normed), last_hidden_state
    (final_layer_norm of the last layer), pooled [B, C], text_embeds [B, projection_dim].
    """
    c = config
    B, N = input_ids.shape
    if N > c.max_position_embeddings:
        raise ValueError("%d tokens > max_position_embeddings %d" % (N, c.max_position_embeddings))
    p = "text_model."
    x = w[p + "embeddings.token_embedding.weight"][input_ids.long()]
    x = x + w[p + "embeddings.position_embedding.weight"][:N].unsqueeze(0)
    hidden = [x]
    head_dim = c.hidden_size // c.num_attention_heads
    act = ACTS[c.hidden_act]
    for i in range(c.num_hidden_layers):
        q = "%sencoder.layers.%d." % (p, i)
        h = _layer_norm(x, w[q + "layer_norm1.weight"], w[q + "layer_norm1.bias"], c.layer_norm_eps)
        a = _attention(
            _linear(h, w[q + "self_attn.q_proj.weight"], w[q + "self_attn.q_proj.bias"]),
            _linear(h, w[q + "self_attn.k_proj.weight"], w[q + "self_attn.k_proj.bias"]),
            _linear(h, w[q + "self_attn.v_proj.weight"], w[q + "self_attn.v_proj.bias"]),
            c.num_attention_heads, head_dim ** -0.5, causal=True)
        x = x + _linear(a, w[q + "self_attn.out_proj.weight"], w[q + "self_attn.out_proj.bias"])
        h = _layer_norm(x, w[q + "layer_norm2.weight"], w[q + "layer_norm2.bias"], c.layer_norm_eps)
        h = act(_linear(h, w[q + "mlp.fc1.weight"], w[q + "mlp.fc1.bias"]))
        x = x + _linear(h, w[q + "mlp.fc2.weight"], w[q + "mlp.fc2.bias"])
        hidden.append(x)
    last = _layer_norm(x, w[p + "final_layer_norm.weight"], w[p + "final_layer_norm.bias"],
                       c.layer_norm_eps)
    pos = clip_pool_positions(c, input_ids)
    pooled = last[torch.arange(B), pos.long()]
    embeds = _linear(pooled, w["text_projection.weight"])
    return {"hidden_states": hidden, "last_hidden_state": last, "pooled": pooled,
            "pool_positions": pos, "text_embeds": embeds}


# ---- T5 encoder ----


class T5Config:
    """The T5Config fields the encoder uses, with transformers' defaults and its parsing of
    feed_forward_proj ("ACT" or "gated-ACT"; "gated-gelu" means gelu_new)."""

    def __init__(self, d):
        self.vocab_size = d.get("vocab_size", 32128)
        self.d_model = d["d_model"]
        self.d_kv = d["d_kv"]
        self.d_ff = d["d_ff"]
        self.num_layers = d["num_layers"]
        self.num_heads = d["num_heads"]
        self.num_buckets = d.get("relative_attention_num_buckets", 32)
        self.max_distance = d.get("relative_attention_max_distance", 128)
        self.eps = d.get("layer_norm_epsilon", 1e-6)
        ffp = d.get("feed_forward_proj", "relu")
        parts = ffp.split("-")
        self.is_gated_act = parts[0] == "gated"
        act = parts[-1]
        if ffp == "gated-gelu":
            act = "gelu_new"
        self.dense_act_fn = d.get("dense_act_fn", act)
        self.is_gated_act = d.get("is_gated_act", self.is_gated_act)


def t5_relative_position_bucket(rel, num_buckets=32, max_distance=128):
    """T5Attention._relative_position_bucket for the bidirectional (encoder) case.

    rel = key position - query position (an integer tensor). Half the buckets are for keys after
    the query; of each half, the first half are exact distances and the rest are log-spaced up to
    max_distance; the log is taken in float32 and truncated, as transformers does.
    """
    num_buckets //= 2
    buckets = (rel > 0).to(torch.long) * num_buckets
    n = torch.abs(rel)
    max_exact = num_buckets // 2
    is_small = n < max_exact
    large = max_exact + (
        torch.log(n.float() / max_exact) / math.log(max_distance / max_exact)
        * (num_buckets - max_exact)).to(torch.long)
    large = torch.min(large, torch.full_like(large, num_buckets - 1))
    return buckets + torch.where(is_small, n, large)


def t5_position_bias(table, n, num_buckets, max_distance):
    """T5Attention.compute_bias: table [num_buckets, h] -> bias [h, n, n] (query i, key j)."""
    ctx = torch.arange(n, dtype=torch.long)[:, None]
    mem = torch.arange(n, dtype=torch.long)[None, :]
    b = t5_relative_position_bucket(mem - ctx, num_buckets, max_distance)
    return table[b].permute(2, 0, 1)


def _rms_norm(x, w, eps):
    # T5LayerNorm: no mean subtraction, no bias.
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def t5_embedding_name(w):
    """The embedding table's name: T5EncoderModel ties encoder.embed_tokens to shared and saves
    the tied tensor once, as "shared.weight"; a file may hold the other name instead."""
    for name in ("shared.weight", "encoder.embed_tokens.weight"):
        if name in w:
            return name
    raise KeyError("no shared.weight or encoder.embed_tokens.weight")


def t5_encoder_forward(w, config, input_ids):
    """T5EncoderModel(input_ids) with no attention mask (as SD3 calls it).

    Returns a dict: hidden_states (the embeddings and every block's output, as T5Stack lists them
    before the final norm), last_hidden_state [B, N, d_model], bias [h, N, N].
    """
    c = config
    B, N = input_ids.shape
    x = w[t5_embedding_name(w)][input_ids.long()]
    table = w["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    bias = t5_position_bias(table, N, c.num_buckets, c.max_distance).to(x.dtype)
    act = ACTS[c.dense_act_fn]
    hidden = [x]
    for i in range(c.num_layers):
        p = "encoder.block.%d.layer." % i
        h = _rms_norm(x, w[p + "0.layer_norm.weight"], c.eps)
        s = p + "0.SelfAttention."
        # No 1/sqrt(d) scaling: T5 folds it into the initialisation of q.
        a = _attention(_linear(h, w[s + "q.weight"]), _linear(h, w[s + "k.weight"]),
                       _linear(h, w[s + "v.weight"]), c.num_heads, 1.0, bias=bias)
        x = x + _linear(a, w[s + "o.weight"])
        h = _rms_norm(x, w[p + "1.layer_norm.weight"], c.eps)
        f = p + "1.DenseReluDense."
        if c.is_gated_act:
            h = act(_linear(h, w[f + "wi_0.weight"])) * _linear(h, w[f + "wi_1.weight"])
        else:
            h = act(_linear(h, w[f + "wi.weight"]))
        x = x + _linear(h, w[f + "wo.weight"])
        hidden.append(x)
    last = _rms_norm(x, w["encoder.final_layer_norm.weight"], c.eps)
    return {"hidden_states": hidden, "last_hidden_state": last, "bias": bias}
