"""make_vae_fixtures.py - writes tests/fixtures/vae/: two tiny random-weight AutoencoderKL folders
laid out as diffusers saves them (config.json + diffusion_pytorch_model.safetensors), each with
an io file of latents and the decoded image and RGB bytes from tools/reference/vae.py, plus a
postprocess-only file with rounding ties. Deterministic: fixed seeds, and st_io's writer is
byte-stable. Run with Debian's torch: /usr/bin/python3 tools/reference/make_vae_fixtures.py
(tests/fixtures/vae/README.md describes the files).
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402
import vae  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "vae")


def config(blocks, **kw):
    """A config.json as diffusers' AutoencoderKL.save_pretrained writes it."""
    n = len(blocks)
    c = {
        "_class_name": "AutoencoderKL",
        "_diffusers_version": "0.31.0",
        "act_fn": "silu",
        "block_out_channels": blocks,
        "down_block_types": ["DownEncoderBlock2D"] * n,
        "force_upcast": True,
        "in_channels": 3,
        "latent_channels": 16,
        "latents_mean": None,
        "latents_std": None,
        "layers_per_block": 2,
        "mid_block_add_attention": True,
        "norm_num_groups": 32,
        "out_channels": 3,
        "sample_size": 1024,
        "scaling_factor": 1.5305,
        "shift_factor": 0.0609,
        "up_block_types": ["UpDecoderBlock2D"] * n,
        "use_post_quant_conv": False,
        "use_quant_conv": False,
    }
    c.update(kw)
    return c


def write_model(name, cfg, sd, extra, file_dtype, latents):
    """Writes <name>/config.json, <name>/diffusion_pytorch_model.safetensors (decoder weights in
    file_dtype plus `extra` tensors the decoder must ignore) and <name>_io.safetensors."""
    folder = os.path.join(OUT, name)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    stored = {k: t.to(file_dtype) for k, t in sd.items()}
    stored.update({k: t.to(file_dtype) for k, t in extra.items()})
    st_io.save(os.path.join(folder, "diffusion_pytorch_model.safetensors"), stored)
    # The reference decodes with the weights as the engine reads them: stored, then widened.
    sd32 = {k: t.float() for k, t in stored.items()}
    x, image, rgb = vae.decode(latents, sd32, cfg)
    st_io.save(os.path.join(OUT, name + "_io.safetensors"), {
        "latents": latents,
        "decoded": x,
        "image": image,
        "rgb": torch.from_numpy(rgb.astype(np.int32)),
    })
    lo, hi = float(x.min()), float(x.max())
    clamped = float(((x < -1) | (x > 1)).float().mean())
    print("%s: latents %s -> image %s, decoder output in [%.3f, %.3f], %.1f%% clamped"
          % (name, list(latents.shape), list(image.shape), lo, hi, 100 * clamped))


def tie_inputs():
    """Decoder outputs x whose f32((x * 0.5 + 0.5) * 255) is exactly k + 0.5, for every k it can
    be found for: the uint8 conversion must round those half to even, as numpy does."""
    found = []
    for k in range(255):
        c0 = np.float32((k + 0.5) / 255.0)
        cands = [c0]
        for _ in range(4):
            cands.append(np.nextafter(cands[-1], np.float32(2)))
        c = c0
        for _ in range(4):
            c = np.nextafter(c, np.float32(-1))
            cands.append(c)
        for c in cands:
            x = np.float32(np.float32(2) * c - np.float32(1))
            back = np.float32(np.float32(x * np.float32(0.5)) + np.float32(0.5))
            if np.float32(back * np.float32(255)) == np.float32(k + 0.5):
                found.append(x)
                break
    return np.array(found, dtype=np.float32)


def write_postprocess():
    ties = tie_inputs()
    gen = torch.Generator().manual_seed(3)
    rand = (torch.randn(600, generator=gen) * 1.5).numpy().astype(np.float32)
    edges = np.array([-1, 1, 0, -3.5, 3.5, 1e-8, -1e-8, 1 + 1e-7, -1 - 1e-7,
                      np.float32(254.5 / 255 * 2 - 1)], dtype=np.float32)
    vals = np.concatenate([ties, edges, rand])
    vals = np.concatenate([vals, np.zeros((-len(vals)) % 3, dtype=np.float32)])
    x = torch.from_numpy(vals).reshape(1, 3, 1, -1)
    image, rgb = vae.postprocess(x)
    st_io.save(os.path.join(OUT, "postprocess.safetensors"), {
        "x": x, "image": image, "rgb": torch.from_numpy(rgb.astype(np.int32))})
    print("postprocess: %d values, %d exact .5 ties" % (len(vals), len(ties)))


def main():
    os.makedirs(OUT, exist_ok=True)

    # "sd3": SD3's decoder structure at toy width: 16 latent channels, no post-quant conv, mid
    # attention, layers_per_block 2 (3 resnets per up block), three levels (two upsamplers, so
    # 4x), channel change 16 -> 8 in the last block (a conv_shortcut), 4 groups of 2 and 4
    # channels. Encoder tensors in the file must be ignored.
    cfg = config([8, 16, 16], norm_num_groups=4)
    gen = torch.Generator().manual_seed(1234)
    sd = vae.random_weights(cfg, gen, out_gain=1.5)
    extra = {"encoder.conv_in.weight": torch.randn(8, 3, 3, 3, generator=gen),
             "encoder.conv_in.bias": torch.randn(8, generator=gen)}
    latents = torch.randn(2, 16, 4, 6, generator=gen) * 1.5
    write_model("sd3", cfg, sd, extra, torch.float32, latents)

    # "pqc": the other switches: post_quant_conv on, no mid attention, layers_per_block 1, a null
    # shift_factor, F16 weights (widened at load), odd latent sizes, quant_conv present but unused.
    cfg = config([8, 8], norm_num_groups=2, layers_per_block=1, mid_block_add_attention=False,
                 use_post_quant_conv=True, use_quant_conv=True, scaling_factor=0.13025,
                 shift_factor=None)
    gen = torch.Generator().manual_seed(99)
    sd = vae.random_weights(cfg, gen, out_gain=1.5)
    extra = {"quant_conv.weight": torch.randn(32, 32, 1, 1, generator=gen),
             "quant_conv.bias": torch.randn(32, generator=gen)}
    latents = torch.randn(1, 16, 5, 3, generator=gen) * 0.2
    write_model("pqc", cfg, sd, extra, torch.float16, latents)

    write_postprocess()


if __name__ == "__main__":
    main()
