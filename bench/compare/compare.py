#!/usr/bin/env python3
"""compare.py - tttd against diffusers, side by side in one run on the GPU machine.

One SD3.5 transformer forward (random bf16 weights, 333 text tokens, batch 2 by default), timed in the same
process run for:
  - diffusers' SD3Transformer2DModel, eager and torch.compile, softmax attention (JointAttnProcessor2_0);
  - the same model with a naive PyTorch TTT (DESIGN's inner model, unfused, eager) in the sd35-t5 and all
    maps, for orientation;
  - `tttd bench --cuda --dtype bf16` on the same shapes and maps;
  - attention alone: PyTorch SDPA through cuDNN against tttd's own kernels (`build/dev/attention`, when built).
Then a markdown table with the ratios tttd / diffusers and the bars of issue 13, written to --out and stdout.

  python3 bench/compare/compare.py --diffusers-src DIR [--tttd build/tttd] [--res 1024 2048]
          [--maps none sd35-t5 all] [--batch 2] [--no-compile] [--out FILE]

DIR is a diffusers source tree (its src/ folder or the tree above it). Medians of 5 timed runs (3 at 2048 px and
above) after warm-up, CUDA events around each forward. The random weights are not tttd's: only the shapes and
dtype agree (speed does not depend on the values, which are random normal in both).
"""
import argparse
import os
import re
import subprocess
import sys
import time

# tttd / diffusers-compile-softmax bars per (map, resolution) from issue 13.
BARS = {('none', 1024): 0.95, ('none', 2048): 0.95, ('sd35-t5', 1024): 0.75, ('sd35-t5', 2048): 0.63,
        ('all', 1024): 0.55, ('all', 2048): 0.28}
MEDIUM = dict(sample_size=128, patch_size=2, in_channels=16, num_layers=24, attention_head_dim=64,
              num_attention_heads=24, joint_attention_dim=4096, caption_projection_dim=1536,
              pooled_projection_dim=2048, out_channels=16, pos_embed_max_size=384,
              dual_attention_layers=tuple(range(13)), qk_norm='rms_norm')
TOKENS = 333


def cuda_median(torch, fn, warm, reps):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2]


class NaiveTTT:
    """The TTT module of DESIGN section 4 in plain PyTorch ops (unfused): projections and q/k RMSNorm of
    the module, key instance norm over tokens (eps 1), q/k + DWConv3x3 on the image tokens, the inner model
    per head over all tokens, the output projections."""

    def __init__(self, torch, attn, grid):
        nn = torch.nn
        C, h = attn.inner_dim, attn.heads
        d = C // h
        dev, dt = attn.to_q.weight.device, attn.to_q.weight.dtype
        self.torch, self.grid = torch, grid
        attn.ttt_w1 = nn.Parameter(torch.randn(1, h, d, d, device=dev, dtype=dt) * 0.02)
        attn.ttt_w2 = nn.Parameter(torch.randn(1, h, d, d, device=dev, dtype=dt) * 0.02)
        attn.ttt_qconv = nn.Conv2d(C, C, 3, padding=1, groups=C).to(dev, dt)
        attn.ttt_kconv = nn.Conv2d(C, C, 3, padding=1, groups=C).to(dev, dt)

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, *a, **kw):
        torch = self.torch
        F = torch.nn.functional
        B, Ni, C = hidden_states.shape
        h = attn.heads
        d = C // h

        def heads(t):
            return t.view(B, -1, h, d).transpose(1, 2)

        q, k, v = heads(attn.to_q(hidden_states)), heads(attn.to_k(hidden_states)), heads(attn.to_v(hidden_states))
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)
        if encoder_hidden_states is not None:
            cq = heads(attn.add_q_proj(encoder_hidden_states))
            ck = heads(attn.add_k_proj(encoder_hidden_states))
            cv = heads(attn.add_v_proj(encoder_hidden_states))
            if attn.norm_added_q is not None:
                cq = attn.norm_added_q(cq)
            if attn.norm_added_k is not None:
                ck = attn.norm_added_k(ck)
            q, k, v = torch.cat([q, cq], 2), torch.cat([k, ck], 2), torch.cat([v, cv], 2)
        N = q.shape[2]
        kf = k.float()
        k = ((kf - kf.mean(2, keepdim=True)) / torch.sqrt(kf.var(2, unbiased=False, keepdim=True) + 1.0)).to(q.dtype)
        H, W = self.grid

        def conv(t, m):
            img = t[:, :, :Ni].transpose(1, 2).reshape(B, H, W, C).permute(0, 3, 1, 2)
            img = img + m(img)
            img = img.permute(0, 2, 3, 1).reshape(B, Ni, h, d).transpose(1, 2)
            return torch.cat([img, t[:, :, Ni:]], 2)

        q, k = conv(q, attn.ttt_qconv), conv(k, attn.ttt_kconv)
        w1, w2 = attn.ttt_w1, attn.ttt_w2
        z = k @ w1
        sig = torch.sigmoid(z)
        s = z * sig
        e = (s @ w2 - v) / float(N) * (d ** -0.5)
        g1 = k.transpose(-2, -1) @ ((e @ w2.transpose(-2, -1)) * (sig * (1.0 + z * (1.0 - sig))))
        g2 = s.transpose(-2, -1) @ e
        out = F.silu(q @ (w1 - g1)) @ (w2 - g2)
        out = out.transpose(1, 2).reshape(B, -1, C)
        if encoder_hidden_states is not None:
            out, ctx = out[:, :Ni], out[:, Ni:]
            if not attn.context_pre_only:
                ctx = attn.to_add_out(ctx)
            return attn.to_out[1](attn.to_out[0](out)), ctx
        return attn.to_out[1](attn.to_out[0](out))


def diffusers_forward(args, log):
    """{(engine, map, res): ms} for diffusers eager / compile / naive TTT."""
    import torch
    torch.backends.cuda.matmul.allow_tf32 = True
    import diffusers
    from diffusers import SD3Transformer2DModel
    from diffusers.models.attention_processor import JointAttnProcessor2_0

    out = {}
    torch.manual_seed(0)
    with torch.device('cuda'):
        m = SD3Transformer2DModel(**MEDIUM).to(torch.bfloat16).eval()
    nb = len(m.transformer_blocks)
    grid = [0, 0]

    def set_map(mp):
        m.set_attn_processor(JointAttnProcessor2_0())
        if mp == 'none':
            return
        for i, blk in enumerate(m.transformer_blocks):
            if getattr(blk, 'attn2', None) is not None:
                blk.attn2.set_processor(NaiveTTT(torch, blk.attn2, grid))
            if mp == 'all' or i >= nb - 5:
                blk.attn.set_processor(NaiveTTT(torch, blk.attn, grid))

    for res in args.res:
        lat = res // 8
        grid[0] = grid[1] = lat // 2
        x = torch.randn(args.batch, 16, lat, lat, device='cuda', dtype=torch.bfloat16)
        ctx = torch.randn(args.batch, TOKENS, 4096, device='cuda', dtype=torch.bfloat16)
        pooled = torch.randn(args.batch, 2048, device='cuda', dtype=torch.bfloat16)
        ts = torch.full((args.batch,), 500.0, device='cuda')
        reps = 5 if res < 2048 else 3
        for mp in args.maps:
            modes = ['eager'] + (['compile'] if mp == 'none' and not args.no_compile else [])
            set_map(mp)
            for mode in modes:
                fm = torch.compile(m) if mode == 'compile' else m
                t0 = time.time()
                with torch.no_grad():
                    ms = cuda_median(torch, lambda: fm(hidden_states=x, encoder_hidden_states=ctx,
                                                       pooled_projections=pooled, timestep=ts,
                                                       return_dict=False), 3 if mode == 'compile' else 2, reps)
                out[(mode, mp, res)] = ms
                log(f"diffusers {mode:7s} map={mp:7s} {res} px: {ms:8.1f} ms  ({time.time() - t0:.0f} s incl. warm-up)")
        del x, ctx, pooled
    del m
    torch.cuda.empty_cache()
    return out


def tttd_forward(args, log):
    out = {}
    # maps whose random model is saved under --model-dir (by this run or an earlier one)
    made = {mp for mp in args.maps if os.path.exists(os.path.join(args.model_dir, 'sd35m-' + mp, 'config.json'))}
    os.makedirs(args.model_dir, exist_ok=True)
    for res in args.res:
        for mp in args.maps:
            mdir = os.path.join(args.model_dir, 'sd35m-' + mp)
            src = ['--model', mdir] if mp in made else ['--preset', 'sd35m', '--ttt', mp, '--save-model', mdir]
            made.add(mp)
            cmd = [args.tttd, 'bench', '--cuda', '--dtype', 'bf16'] + src + [
                   '--width', str(res), '--height', str(res), '--batch', str(args.batch), '--tokens', str(TOKENS),
                   '--repeat', '5' if res < 2048 else '3']
            if args.profile:
                cmd.append('--profile')
            r = subprocess.run(cmd, capture_output=True, text=True)
            mt = re.search(r'median ([0-9.]+) ms', r.stdout)
            if r.returncode != 0 or not mt:
                log(f"tttd map={mp} {res} px: FAILED (exit {r.returncode}): {r.stderr.strip()[-400:]}")
                continue
            out[('tttd', mp, res)] = float(mt.group(1))
            if args.profile:
                log(r.stdout[r.stdout.find('profile of'):].rstrip())
            log(f"tttd    bf16    map={mp:7s} {res} px: {out[('tttd', mp, res)]:8.1f} ms")
    return out


def attention_kernels(args, log):
    """[(N, what, ms, tflops)]: PyTorch SDPA (cuDNN) and tttd's dev/attention at SD3.5 shapes."""
    rows = []
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import sdpa_kernel, SDPBackend
    for n in args.attn_n:
        q, k, v = (torch.randn(2, 24, n, 64, device='cuda', dtype=torch.bfloat16) for _ in range(3))
        fl = 4 * 2 * 24 * n * n * 64
        try:
            with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                ms = cuda_median(torch, lambda: F.scaled_dot_product_attention(q, k, v), 3, 20)
            rows.append((n, 'pytorch sdpa cudnn', ms, fl / ms / 1e9))
        except Exception as e:  # noqa: BLE001 - reported, not fatal
            log(f"sdpa cudnn N={n}: unavailable ({type(e).__name__}: {e})")
    dev_bin = os.path.join(os.path.dirname(args.tttd), 'dev', 'attention')
    if os.path.exists(dev_bin):
        for n in args.attn_n:
            r = subprocess.run([dev_bin, '--N', str(n), '--B', '2', '--h', '24', '--d', '64'],
                               capture_output=True, text=True)
            for line in r.stdout.splitlines():  # "v2 <name>   1.234 ms   345.6 TFLOP/s"
                mt = re.match(r'v\d+\s+(.*?)\s+([0-9.]+) ms\s+([0-9.]+) TFLOP/s', line)
                if mt:
                    rows.append((n, 'tttd ' + mt.group(1), float(mt.group(2)), float(mt.group(3))))
            if r.returncode != 0:
                log(f"{dev_bin} N={n}: exit {r.returncode}: {r.stderr.strip()[-300:]}")
    for n, what, ms, tf in rows:
        log(f"attention N={n:6d} {what:28s} {ms:8.3f} ms {tf:6.0f} TFLOP/s")
    return rows


def table(args, d, t, attn):
    lines = ['| map | px | diffusers eager | diffusers compile (softmax) | naive TTT eager | tttd | '
             'tttd / compile softmax | bar | met |', '| --- | --- | --- | --- | --- | --- | --- | --- | --- |']
    for res in args.res:
        comp = d.get(('compile', 'none', res))
        for mp in args.maps:
            eager = d.get(('eager', mp, res))
            tt = t.get(('tttd', mp, res))
            ratio = tt / comp if (tt and comp) else None
            bar = BARS.get((mp, res))
            met = '' if ratio is None or bar is None else ('yes' if ratio <= bar else 'no')

            def f(v):
                return f'{v:.1f} ms' if v else '-'
            lines.append(f"| {mp} | {res} | {f(eager) if mp == 'none' else '-'} | {f(comp) if mp == 'none' else ''} | "
                         f"{f(eager) if mp != 'none' else '-'} | {f(tt)} | "
                         f"{'%.2fx' % ratio if ratio else '-'} | {'<= %.2fx' % bar if bar else '-'} | {met} |")
    if attn:
        lines += ['', '| attention, B 2, 24 heads x 64 | N | ms | TFLOP/s | vs cuDNN |', '| --- | --- | --- | --- | --- |']
        ref = {n: tf for n, w, ms, tf in attn if w == 'pytorch sdpa cudnn'}
        for n, w, ms, tf in attn:
            lines.append(f"| {w} | {n} | {ms:.3f} | {tf:.0f} | "
                         f"{'%.2fx' % (tf / ref[n]) if n in ref else '-'} |")
    return '\n'.join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--diffusers-src', required=True, help='a diffusers source tree (its src/ or the folder above)')
    p.add_argument('--tttd', default='build/tttd', help='the tttd binary [build/tttd]')
    p.add_argument('--res', type=int, nargs='+', default=[1024, 2048], help='square image sizes in px [1024 2048]')
    p.add_argument('--maps', nargs='+', default=['none', 'sd35-t5', 'all'], help='TTT maps [none sd35-t5 all]')
    p.add_argument('--batch', type=int, default=2, help='samples per forward [2: one image with CFG]')
    p.add_argument('--attn-n', type=int, nargs='*', default=[4429, 16717], help='attention sequence lengths')
    p.add_argument('--no-compile', action='store_true', help='skip torch.compile (its warm-up takes minutes)')
    p.add_argument('--skip-diffusers', action='store_true', help='time tttd only')
    p.add_argument('--out', help='also write the table here')
    p.add_argument('--model-dir', default='/tmp/tttd-compare', help="where tttd's random models are kept between runs")
    p.add_argument('--profile', action='store_true', help="print tttd's per-op profile of each run")
    p.add_argument('--order', default='tttd,attn,diffusers', help='the parts to run, in this order')
    args = p.parse_args()
    src = args.diffusers_src
    sys.path.insert(0, os.path.join(src, 'src') if os.path.isdir(os.path.join(src, 'src')) else src)

    def log(s):
        print(s, flush=True)

    import torch
    log(f"device: {torch.cuda.get_device_name(0)}; torch {torch.__version__}; date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    t, attn, d = {}, [], {}
    for part in args.order.split(','):
        if part == 'tttd':
            t = tttd_forward(args, log)
        elif part == 'attn' and args.attn_n:
            attn = attention_kernels(args, log)
        elif part == 'diffusers' and not args.skip_diffusers:
            d = diffusers_forward(args, log)
        print(table(args, d, t, attn), flush=True)  # the table so far: a cut-short run still tells
    tab = table(args, d, t, attn)
    if args.out:
        with open(args.out, 'w') as fh:
            fh.write(tab + '\n')


if __name__ == '__main__':
    main()
