"""`fast_inference` against fastai's eager float32 model: images per second at one batch size and input side (default: xresnet50,
batch 16, 160 px, 10 classes), interleaved repeats, medians. Rows: fastai's `xresnet50` eager (eval, inference_mode, float32, channels-first,
the baseline), ours eager, `fast_inference` with its defaults (the probe of this model's inference step chooses bf16 or float32),
'32', 'bf16', and 'int8' (asked-for: calibrated on 4 random batches, which is enough for timing, not for accuracy: see 11_fast).
Compile (and quantize) times are reported apart. Random weights (the same network as fastai's; speed does not depend on the values).
Run: python benchmarks/fast_inference.py [--arch xresnet50] [--bs 16] [--size 160] [--repeats 5] [--rows auto 32 bf16 int8] [--json F]
"""
import argparse, json, statistics, time, warnings


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--arch', default='xresnet50')
    p.add_argument('--bs', type=int, default=16)
    p.add_argument('--size', type=int, default=160)
    p.add_argument('--batches', type=int, default=4, help='batches per timed pass')
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--rows', nargs='+', default=['auto', '32', 'bf16', 'int8'], help="fast_inference precisions to time")
    p.add_argument('--json', help='write the results here')
    a = p.parse_args()
    import torch
    from fastai.vision.models import xresnet as fx
    from xresnet_fa.family import FAMILY
    from xresnet_fa.fast import fast_inference, native_bf16, _cpu_name
    warnings.simplefilter('ignore')
    torch.manual_seed(0)
    fastai_model = getattr(fx, a.arch)(n_out=10).eval()
    ours = FAMILY[a.arch](n_out=10).eval()
    xs = [torch.randn(a.bs, 3, a.size, a.size) for _ in range(a.batches)]
    models, build_s = {'fastai eager': fastai_model, 'ours eager': ours}, {}
    for prec in a.rows:
        start = time.perf_counter()
        m = fast_inference(ours, precision=prec, size=a.size, bs=a.bs, **(dict(calibration=xs) if prec == 'int8' else {}))
        with torch.inference_mode(): m(xs[0])  # compiles here
        build_s[f'fast_inference {prec}'] = time.perf_counter() - start
        models[f'fast_inference {prec}'] = m
        print(f"built fast_inference {prec} in {build_s[f'fast_inference {prec}']:.1f} s (probe, quantize, compile; not counted)", flush=True)
    def run(m):
        with torch.inference_mode():
            for x in xs: m(x)
    times = {k: [] for k in models}
    for m in models.values(): run(m)  # warm-up
    for _ in range(a.repeats):
        for k, m in models.items():
            start = time.perf_counter(); run(m); times[k].append(time.perf_counter() - start)
    n = a.bs*a.batches
    ips = {k: statistics.median(n/t for t in v) for k, v in times.items()}
    print(f"\n{a.arch}, batch {a.bs}, {a.size} px, {_cpu_name()}, {torch.get_num_threads()} threads, native bf16: {native_bf16(torch.device('cpu'))}; "
          f"medians of {a.repeats}")
    for k, v in ips.items(): print(f"  {k:>22}: {v:7.1f} images/s  {v/ips['fastai eager']:5.2f}x fastai eager float32")
    if a.json: open(a.json, 'w').write(json.dumps(dict(args=vars(a), images_per_s=ips, build_seconds=build_s, times=times), indent=1))


if __name__ == '__main__': main()
