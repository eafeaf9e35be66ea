"""pipeline.py - diffusers' StableDiffusion3Pipeline end to end, on token ids, from our references.

Composes text_encoders.py (CLIP, T5), mmdit.py (the transformer, softmax or TTT per module),
sampler.py (FlowMatchEulerDiscreteScheduler and the per-sample-guidance loop), rng.py (the
project's seeded latents) and vae.py (AutoencoderKL decode + VaeImageProcessor.postprocess) the
way diffusers' SD3 pipeline does (pipeline_stable_diffusion_3.py):

  encode_prompt:  CLIP-L and CLIP-G on 77 ids each -> hidden_states[-2] (clip_skip None) and the
                  projected pooled output (text_embeds); the two hidden states concatenated on
                  channels and zero-padded on the right to T5's width; T5's last_hidden_state on
                  256 ids (no attention mask; zeros [B, 256, joint_attention_dim] when the
                  pipeline has no text_encoder_3); [clip ; t5] concatenated on tokens (333);
                  pooled = CLIP-L text_embeds ++ CLIP-G text_embeds.
                  The negative prompt ("" when none) is encoded the same way.
  latents:        image b: rng.latent(seed_b, [C, H/8, W/8]) (or latents given by the caller).
  denoise:        sampler.denoise: per sample, guidance > 1 runs [uncond, cond] in one batch and
                  combines them; guidance <= 1 runs the cond pass only.
  decode:         latents / scaling_factor + shift_factor -> decoder -> (x/2 + 0.5).clamp(0, 1)
                  -> uint8 (numpy round half to even), as vae.decode.

Tokenization is NOT done here (no Python tokenizer on the reference machine): callers hand in the
ids that transformers' tokenizers give (tests/fixtures/tokenizers/expected.json, made with HF
tokenizers), padded to 77 / 77 / 256 as diffusers asks for (padding="max_length").

Everything runs in float32 on the CPU on the stored (rounded) weights, as diffusers runs an fp32
pipeline. Shapes: B = images, Nt = 77 + 256 text tokens, D = joint_attention_dim.
"""
import json
import os

import torch

import mmdit
import rng
import sampler
import st_io
import text_encoders as te
import vae

CLIP_TOKENS = 77
T5_TOKENS = 256  # the SD3 pipeline's max_sequence_length


def _read_json(path):
    with open(path) as f:
        return json.load(f)


def _weights(folder):
    """Every *.safetensors of a component folder, widened to float32 (integer tensors kept)."""
    out = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".safetensors"):
            for k, v in st_io.load(os.path.join(folder, name)).items():
                out[k] = v.float() if v.is_floating_point() else v
    return out


class Pipeline:
    """A loaded pipeline folder: configs and float32 weights of each component present in
    model_index.json (a component listed as [null, null] or absent is None)."""

    def __init__(self, folder):
        self.folder = folder
        index = _read_json(os.path.join(folder, "model_index.json"))
        # tttd's extension (diffusers ignores "_" keys): the T5 token count the pipeline was
        # trained with; 0 (no T5 only) leaves the zero rows out.
        self.t5_tokens = int(index.get("_tttd_max_sequence_length", T5_TOKENS))

        def present(name):
            v = index.get(name)
            return isinstance(v, list) and len(v) == 2 and v[0] is not None and v[1] is not None

        def comp(name, cfg_file="config.json"):
            if not present(name):
                return None, None
            d = os.path.join(folder, name)
            return _read_json(os.path.join(d, cfg_file)), _weights(d)

        tcfg, self.transformer = comp("transformer")
        self.transformer_config = mmdit.Config(tcfg)
        self.vae_config, self.vae = comp("vae")
        c, self.clip_l = comp("text_encoder")
        self.clip_l_config = te.ClipConfig(c) if c else None
        c, self.clip_g = comp("text_encoder_2")
        self.clip_g_config = te.ClipConfig(c) if c else None
        c, self.t5 = comp("text_encoder_3")
        self.t5_config = te.T5Config(c) if c else None
        self.scheduler = sampler.FlowMatchEuler.from_config(
            _read_json(os.path.join(folder, "scheduler", "scheduler_config.json")))
        self.vae_scale = 2 ** (len(self.vae_config["block_out_channels"]) - 1)

    # ---- prompt encoding ----

    def encode_prompt(self, ids_l, ids_g, ids_t5):
        """ids_l, ids_g [B, 77], ids_t5 [B, 256] (int) -> dict with ctx [B, 333, D],
        pooled [B, P] and the parts (clip_l_hidden, clip_g_hidden, clip_l_pooled,
        clip_g_pooled, t5)."""
        if self.clip_l is None or self.clip_g is None:
            raise ValueError("the reference needs both CLIP text encoders")
        D = self.transformer_config.joint_attention_dim
        with torch.no_grad():
            rl = te.clip_text_forward(self.clip_l, self.clip_l_config, ids_l)
            rg = te.clip_text_forward(self.clip_g, self.clip_g_config, ids_g)
            clip = torch.cat([rl["hidden_states"][-2], rg["hidden_states"][-2]], dim=-1)
            if self.t5 is not None:
                t5 = te.t5_encoder_forward(self.t5, self.t5_config, ids_t5)["last_hidden_state"]
            else:
                t5 = torch.zeros(ids_t5.shape[0], self.t5_tokens, D)
            if t5.shape[-1] != D:
                raise ValueError("T5 width %d != joint_attention_dim %d" % (t5.shape[-1], D))
            if clip.shape[-1] > D:
                raise ValueError("CLIP widths %d exceed the T5 width %d" % (clip.shape[-1], D))
            clip = torch.nn.functional.pad(clip, (0, D - clip.shape[-1]))
            ctx = torch.cat([clip, t5], dim=-2)
            pooled = torch.cat([rl["text_embeds"], rg["text_embeds"]], dim=-1)
        return {"ctx": ctx, "pooled": pooled, "clip_l_hidden": rl["hidden_states"][-2],
                "clip_g_hidden": rg["hidden_states"][-2], "clip_l_pooled": rl["text_embeds"],
                "clip_g_pooled": rg["text_embeds"], "t5": t5}

    # ---- the rest ----

    def latents(self, seeds, width, height):
        """[B, C, H/8, W/8]: image b from the project RNG with seeds[b]."""
        c = self.transformer_config.in_channels
        shape = [c, height // self.vae_scale, width // self.vae_scale]
        return torch.stack([rng.latent(s, shape) for s in seeds])

    def denoiser(self, x, t, ctx, pooled):
        return mmdit.forward(self.transformer, self.transformer_config, x, t, ctx, pooled)

    def denoise(self, latents, cond, uncond, guidance, steps, trace=None):
        with torch.no_grad():
            return sampler.denoise(self.denoiser, latents, cond["ctx"], uncond["ctx"],
                                   cond["pooled"], uncond["pooled"], guidance, steps,
                                   self.scheduler, trace)

    def decode(self, latents):
        """(decoder output, image float [B, 3, H, W] in [0, 1], rgb uint8 numpy [B, H, W, 3])."""
        return vae.decode(latents, self.vae, self.vae_config)

    def generate(self, cond_ids, uncond_ids, guidance, width, height, steps, seeds=None,
                 latents=None):
        """The whole pipeline. cond_ids / uncond_ids: (ids_l, ids_g, ids_t5) for the prompts
        and the negative prompts; guidance: B floats; seeds or latents [B, C, h, w].
        Returns a dict of every stage's tensors."""
        cond = self.encode_prompt(*cond_ids)
        uncond = self.encode_prompt(*uncond_ids)
        if latents is None:
            latents = self.latents(seeds, width, height)
        trace = []
        out = self.denoise(latents, cond, uncond, guidance, steps, trace)
        x, image, rgb = self.decode(out)
        sigmas, timesteps = self.scheduler.set_timesteps(steps)
        return {"cond": cond, "uncond": uncond, "latents_in": latents, "latents_out": out,
                "trace": trace, "decoded": x, "image": image, "rgb": rgb, "sigmas": sigmas,
                "timesteps": timesteps}


def pad_ids(ids, length, pad_id):
    """Token ids (a list that already holds the special tokens) truncated or padded to length,
    as padding="max_length", truncation=True gives them when the text fits (truncation would
    also keep the final EOS; the fixtures' prompts fit)."""
    if len(ids) > length:
        raise ValueError("%d ids do not fit in %d" % (len(ids), length))
    return list(ids) + [pad_id] * (length - len(ids))
