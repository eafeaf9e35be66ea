#!/usr/bin/env python3
"""check_vae_diffusers.py - checks tests/fixtures/vae/ (made by vae.py) against diffusers itself.

Needs torch >= 2 and an importable diffusers (with safetensors), e.g. on the GPU machine:
  PYTHONPATH=path/to/diffusers/src python3 tools/reference/check_vae_diffusers.py
Runs on the CPU in float32. For each model fixture (sd3, pqc) it loads the folder with
AutoencoderKL.from_pretrained, scales the io file's latents as the SD3 pipeline does, decodes, and
compares diffusers' decoder output, VaeImageProcessor.postprocess "pt" image and "pil" bytes with
the fixture's decoded / image / rgb; then it runs postprocess.safetensors' x through
VaeImageProcessor and compares image and bytes exactly. Prints one line per check; exits 1 when a
check fails.
"""
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import st_io  # noqa: E402
from diffusers import AutoencoderKL  # noqa: E402
from diffusers.image_processor import VaeImageProcessor  # noqa: E402

FIX = os.path.join(os.path.dirname(os.path.dirname(HERE)), "tests", "fixtures", "vae")
failures = []


def check(name, ok, detail):
    print("%-40s %s  %s" % (name, "ok  " if ok else "FAIL", detail))
    if not ok:
        failures.append(name)


def pil_bytes(proc, x):
    return np.stack([np.asarray(im) for im in proc.postprocess(x, output_type="pil")])


def model(name):
    vae = AutoencoderKL.from_pretrained(os.path.join(FIX, name), torch_dtype=torch.float32).eval()
    io = st_io.load(os.path.join(FIX, name + "_io.safetensors"))
    cfg = vae.config
    z = io["latents"] / cfg.scaling_factor + (cfg.shift_factor or 0.0)
    with torch.no_grad():
        x = vae.decode(z).sample
    proc = VaeImageProcessor(vae_scale_factor=2 ** (len(cfg.block_out_channels) - 1))
    image = proc.postprocess(x, output_type="pt")
    rgb = pil_bytes(proc, x)
    d = (x - io["decoded"]).abs().max().item() / io["decoded"].abs().max().item()
    check(name + ": decoder output", d < 1e-5, "rel err %.3g" % d)
    d = (image - io["image"]).abs().max().item()
    check(name + ": postprocess pt image", d < 1e-5, "max abs %.3g" % d)
    n = int((rgb.astype(np.int32) != io["rgb"].numpy()).sum())
    check(name + ": postprocess pil bytes", n == 0, "%d of %d bytes differ" % (n, rgb.size))


def postprocess():
    io = st_io.load(os.path.join(FIX, "postprocess.safetensors"))
    proc = VaeImageProcessor()
    image = proc.postprocess(io["x"], output_type="pt")
    check("postprocess: pt image", torch.equal(image, io["image"]), "bitwise")
    rgb = pil_bytes(proc, io["x"])
    n = int((rgb.astype(np.int32) != io["rgb"].numpy()).sum())
    check("postprocess: pil bytes (.5 ties)", n == 0, "%d of %d bytes differ" % (n, rgb.size))


def main():
    torch.manual_seed(0)
    model("sd3")
    model("pqc")
    postprocess()
    if failures:
        print("FAILED: " + ", ".join(failures))
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
