"""sampler.py - diffusers' FlowMatchEulerDiscreteScheduler and the SD3 pipeline's denoising loop.

Only the configuration tttd uses: no dynamic shifting, no Karras / exponential / beta sigmas,
no terminal shift, no stochastic sampling, invert_sigmas false. Precision follows diffusers:

  __init__: t = linspace(1, T, T) in float32 (numpy), reversed; sigmas = t / T in float32 (torch);
            sigmas = shift * sigmas / (1 + (shift - 1) * sigmas) in float32;
            sigma_max = sigmas[0], sigma_min = sigmas[-1] (float32 values read as doubles).
  set_timesteps(n): t = linspace(sigma_max * T, sigma_min * T, n) in float64 (numpy);
            sigmas = t / T; sigmas = shift * sigmas / (1 + (shift - 1) * sigmas), float64 (so
            the shift is applied to already-shifted end points, as diffusers does);
            then float32; timesteps = sigmas * T in float32; sigmas gets a trailing 0.
  step:     x_next = x + (sigma_next - sigma) * v, all float32.

The loop is the SD3 pipeline's: with guidance g > 1 the model sees the batch [uncond, cond] and
v = v_uncond + g * (v_cond - v_uncond); with g <= 1 only the cond pass runs. tttd gives every
sample its own guidance, so the reference runs each sample as its own diffusers pipeline call.
"""
import numpy as np
import torch


class FlowMatchEuler:
    def __init__(self, num_train_timesteps=1000, shift=1.0):
        self.num_train_timesteps = num_train_timesteps
        self.shift = shift
        t = np.linspace(1, num_train_timesteps, num_train_timesteps, dtype=np.float32)[::-1].copy()
        sigmas = torch.from_numpy(t).to(dtype=torch.float32) / num_train_timesteps
        sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
        self.sigma_min = sigmas[-1].item()
        self.sigma_max = sigmas[0].item()

    @classmethod
    def from_config(cls, d):
        for key in ("use_dynamic_shifting", "use_karras_sigmas", "use_exponential_sigmas",
                    "use_beta_sigmas", "invert_sigmas", "stochastic_sampling"):
            if d.get(key):
                raise ValueError("scheduler option %s is not implemented" % key)
        if d.get("shift_terminal"):
            raise ValueError("scheduler option shift_terminal is not implemented")
        return cls(d.get("num_train_timesteps", 1000), d.get("shift", 1.0))

    def set_timesteps(self, n):
        """(sigmas [n + 1] float32 ending in 0, timesteps [n] float32)."""
        T = self.num_train_timesteps
        t = np.linspace(self.sigma_max * T, self.sigma_min * T, n)
        sigmas = t / T
        sigmas = self.shift * sigmas / (1 + (self.shift - 1) * sigmas)
        sigmas = torch.from_numpy(sigmas).to(dtype=torch.float32)
        timesteps = sigmas * T
        return torch.cat([sigmas, torch.zeros(1)]), timesteps

    @staticmethod
    def step(v, sigma, sigma_next, x):
        """One Euler step in float32; sigma and sigma_next are float32 scalar tensors."""
        dt = sigma_next - sigma
        return x.to(torch.float32) + dt * v


def cfg_combine(v_uncond, v_cond, g):
    return v_uncond + g * (v_cond - v_uncond)


def denoise(model, latents, ctx, neg_ctx, pooled, neg_pooled, guidance, steps, scheduler,
            trace=None):
    """The SD3 pipeline's loop for a batch whose samples each have their own guidance.
    model(x, t, ctx, pooled) -> v, all batched; latents [B, C, H, W]; guidance a list of B
    floats. trace (a list) receives the latents after every step. Returns the final latents."""
    sigmas, timesteps = scheduler.set_timesteps(steps)
    outs = []
    for b in range(latents.shape[0]):
        x = latents[b:b + 1].clone()
        g = float(guidance[b])
        for i in range(steps):
            t = timesteps[i]
            if g > 1:
                xin = torch.cat([x, x])
                v = model(xin, t.expand(2), torch.cat([neg_ctx[b:b + 1], ctx[b:b + 1]]),
                          torch.cat([neg_pooled[b:b + 1], pooled[b:b + 1]]))
                v_uncond, v_cond = v.chunk(2)
                v = cfg_combine(v_uncond, v_cond, g)
            else:
                v = model(x, t.expand(1), ctx[b:b + 1], pooled[b:b + 1])
            x = FlowMatchEuler.step(v, sigmas[i], sigmas[i + 1], x)
            if trace is not None:
                if len(trace) <= i:
                    trace.append([None] * latents.shape[0])
                trace[i][b] = x[0]
        outs.append(x)
    return torch.cat(outs)
