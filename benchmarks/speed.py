"""Speed of the same network three ways: xresnet_fa vs fastai's xresnet vs timm's resnet*d, side by side in one run.

Measures, interleaved over repeats (medians, min-max, and the ratios ours/fastai and ours/timm from the same run):
  training step images/s (forward, loss, backward, SGD step), inference images/s (eval, inference_mode) eager and with
  our fast paths (`fuse`: BatchNorm folded, channels-last; `fast_inference`: + torch.compile, frozen weights), and peak memory of a
  training step, each model in its own process.
CPU defaults: training batch 32 at 128x128, inference batch 16 at 224x224.
GPU mode: --device cuda --bf16 --channels-last --train-bs 256 --train-size 224 --infer-bs 256 --infer-size 224
  prints achieved TFLOP/s (forward = 2 x MACs per image, training = 3 x forward) and, with --peak-tflops, the model FLOP
  utilisation.
Run: python benchmarks/speed.py [--archs xresnet18 xresnet50 xse_resnext50] [--repeats 5] [--json benchmarks/speed.json]
  (any name of the family; timm is measured where it has the same network: resnet*d, resnext50d_32x4d, seresnext26d_32x4d)
"""
import argparse, contextlib, json, os, platform, statistics, subprocess, sys, threading, time
import torch
from torch import nn

FAMILIES = ('xresnet_fa', 'fastai', 'timm')
TIMM_TWINS = {**{f'xresnet{d}': f'resnet{d}d' for d in (18, 34, 50, 101, 152)},
              'xresnext50': 'resnext50d_32x4d', 'xse_resnext26': 'seresnext26d_32x4d'}  # the same networks (tests/test_family.py)


def families(arch):
    "Who has `arch`: always ours and fastai's (fastai has every family name but xse_resnext26), timm where it has the same network"
    return [f for f in FAMILIES if (f != 'timm' or arch in TIMM_TWINS) and (f != 'fastai' or arch != 'xse_resnext26')]


def build(family, arch):
    if family == 'xresnet_fa':
        from xresnet_fa.family import FAMILY
        return FAMILY[arch]()
    if family == 'fastai':
        from fastai.vision.models import xresnet as fx
        if arch == 'xsenet154': return fx.XResNet(fx.SEBlock, 4, fx.g3, groups=64, reduction=16, p=0.2)  # a TypeError in fastai
        return getattr(fx, arch)()
    import timm
    return timm.create_model(TIMM_TWINS[arch], pretrained=False)


def autocast(args):
    return torch.autocast(args.device, dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext()


def sync(args):
    if args.device == 'cuda': torch.cuda.synchronize()


def images_per_s(step, n_images, args, steps):
    "Median-free single measurement: `steps` calls of `step` after one warm-up call"
    step(); sync(args)
    start = time.perf_counter()
    for _ in range(steps): step()
    sync(args)
    return n_images*steps/(time.perf_counter() - start)


def train_setup(model, args):
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(args.device, memory_format=fmt).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(args.train_bs, 3, args.train_size, args.train_size, device=args.device).to(memory_format=fmt)
    y = torch.randint(0, 1000, (args.train_bs,), device=args.device)
    def step():
        with autocast(args): loss = nn.functional.cross_entropy(model(x), y)
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    return step


def infer_setup(model, args, fast=None):
    "fast: None (eager), 'fused' (BatchNorm folded, channels-last) or 'compiled' (fast_inference: fused + torch.compile, frozen)"
    from xresnet_fa.fast import fast_inference
    fmt = torch.channels_last if (args.channels_last or fast) else torch.contiguous_format
    model = fast_inference(model.to(args.device), compile=fast == 'compiled') if fast else model.to(args.device).eval()
    model = model.to(memory_format=fmt) if fast != 'compiled' else model
    x = torch.randn(args.infer_bs, 3, args.infer_size, args.infer_size, device=args.device).to(memory_format=fmt)
    def step():
        with torch.inference_mode(), autocast(args): model(x)
    return step


def rss_mib():
    "Resident memory of this process now, MiB (Linux)"
    with open('/proc/self/statm') as f: return int(f.read().split()[1])*os.sysconf('SC_PAGE_SIZE')/2**20


def peak_memory_child(family, arch, args):
    "Run in a fresh process: peak memory (MiB) that two training steps add to the built model"
    import fastai.vision.all, timm, xresnet_fa  # the same imports for every family, so the baselines agree
    model = build(family, arch)
    step = train_setup(model, args)
    if args.device == 'cuda':
        torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
        step(); step(); sync(args)
        return (torch.cuda.max_memory_allocated() - base)/2**20
    base, peak, done = rss_mib(), [0.0], threading.Event()
    def sample():  # the ops release the GIL, so this thread sees the high-water mark
        while not done.is_set(): peak[0] = max(peak[0], rss_mib()); time.sleep(0.0005)
    t = threading.Thread(target=sample); t.start()
    try: step(); step()
    finally: done.set(); t.join()
    return max(peak[0], rss_mib()) - base


def summary(xs): return dict(median=statistics.median(xs), min=min(xs), max=max(xs), all=xs)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--archs', nargs='+', default=['xresnet18', 'xresnet50', 'xse_resnext50'], help='names from xresnet_fa.family.FAMILY')
    p.add_argument('--depths', type=int, nargs='+', help='plain depths, the same as --archs xresnet{depth}')
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--steps', type=int, default=3, help='timed steps per measurement')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--train-bs', type=int, default=32); p.add_argument('--train-size', type=int, default=128)
    p.add_argument('--infer-bs', type=int, default=16); p.add_argument('--infer-size', type=int, default=224)
    p.add_argument('--bf16', action='store_true'); p.add_argument('--channels-last', action='store_true')
    p.add_argument('--compile', action=argparse.BooleanOptionalAction, default=True,
                   help='also measure fast_inference: fused + torch.compile with frozen weights (default: on)')
    p.add_argument('--peak-tflops', type=float, help="the device's peak TFLOP/s, to report model FLOP utilisation")
    p.add_argument('--memory-repeats', type=int, default=3, help='fresh processes per model for peak memory (median)')
    p.add_argument('--json', default='benchmarks/speed.json')
    p.add_argument('--memory-child', nargs=2, metavar=('FAMILY', 'ARCH'), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child:
        print(json.dumps(peak_memory_child(args.memory_child[0], args.memory_child[1], args))); return

    from xresnet_fa.family import FAMILY
    from xresnet_fa.xresnet import count_macs
    archs = [f'xresnet{d}' for d in args.depths] if args.depths else args.archs
    if unknown := [a for a in archs if a not in FAMILY]: p.error(f"unknown architecture {unknown[0]!r}; choose from {', '.join(FAMILY)}")
    torch.manual_seed(0)
    results = {}
    for arch in archs:
        fams = families(arch)
        models = {f: build(f, arch) for f in fams}
        setups = {f'train {f}': train_setup(m, args) for f, m in models.items()}
        setups.update({f'infer {f}': infer_setup(build(f, arch), args) for f in fams})
        setups['infer xresnet_fa fused'] = infer_setup(build('xresnet_fa', arch), args, fast='fused')
        if args.compile: setups['infer xresnet_fa compiled'] = infer_setup(build('xresnet_fa', arch), args, fast='compiled')
        runs = {k: [] for k in setups}
        for r in range(args.repeats):  # interleaved: every variant sees the same machine state in each repeat
            for name, step in setups.items():
                bs = args.train_bs if name.startswith('train') else args.infer_bs
                runs[name].append(images_per_s(step, bs, args, args.steps))
        flags = [a for a in ('bf16', 'channels_last') if getattr(args, a)]
        samples = {f: [] for f in fams}
        for r in range(args.memory_repeats):  # each model in its own process, interleaved, median of the repeats
            for f in fams:
                cmd = [sys.executable, __file__, '--memory-child', f, arch, '--device', args.device, '--train-bs', str(args.train_bs),
                       '--train-size', str(args.train_size)] + [f"--{a.replace('_', '-')}" for a in flags]
                samples[f].append(json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]))
        memory = {f: statistics.median(v) for f, v in samples.items()}
        macs_at = {size: count_macs(FAMILY[arch](), size) for size in {args.train_size, args.infer_size}}
        res = {k: summary(v) for k, v in runs.items()}
        ratio = lambda a, b: dict(median=res[a]['median']/res[b]['median'],
                                  min=min(x/y for x, y in zip(runs[a], runs[b])), max=max(x/y for x, y in zip(runs[a], runs[b])))
        res['ratios'] = {}
        for other in fams[1:]:  # each ratio from the same run
            res['ratios'].update({f'train ours/{other}': ratio('train xresnet_fa', f'train {other}'),
                                  f'infer eager ours/{other}': ratio('infer xresnet_fa', f'infer {other}'),
                                  f'infer fused ours/{other} eager': ratio('infer xresnet_fa fused', f'infer {other}')})
            if args.compile: res['ratios'][f'infer compiled ours/{other} eager'] = ratio('infer xresnet_fa compiled', f'infer {other}')
        res['peak train memory MiB'] = memory
        res['peak train memory samples MiB'] = samples
        div = lambda a, b: a/b if b else float('nan')
        for other in fams[1:]: res[f'memory ours/{other}'] = div(memory['xresnet_fa'], memory[other])
        tf = lambda ips, mult, size: 2*macs_at[size]*mult*ips/1e12
        res['TFLOP/s'] = {k: tf(v['median'], 3 if k.startswith('train') else 1, args.train_size if k.startswith('train') else args.infer_size)
                          for k, v in res.items() if k.startswith(('train', 'infer'))}
        results[arch] = res
        print(f"\n== {arch}: {args.device}, {torch.get_num_threads()} threads, train bs {args.train_bs}@{args.train_size}, "
              f"infer bs {args.infer_bs}@{args.infer_size}, {args.repeats} interleaved repeats x {args.steps} steps {' '.join(flags)}")
        print(f"{'measurement':<26}{'images/s median':>16}{'min-max':>18}{'TFLOP/s':>9}")
        for k in runs:
            s = res[k]; mfu = f"  MFU {res['TFLOP/s'][k]/args.peak_tflops:.1%}" if args.peak_tflops else ''
            print(f"{k:<26}{s['median']:>16.1f}{s['min']:>9.1f}-{s['max']:<8.1f}{res['TFLOP/s'][k]:>9.3f}{mfu}")
        for k, v in res['ratios'].items(): print(f"{k:<30} {v['median']:.2f}  (per-repeat {v['min']:.2f}-{v['max']:.2f})")
        print(f'peak training memory MiB (median of {args.memory_repeats} processes each): ' + ', '.join(f'{k} {v:.0f}' for k, v in memory.items())
              + ''.join(f"; ours/{o} {res[f'memory ours/{o}']:.2f}" for o in fams[1:]))
    meta = dict(device=args.device, cpu=platform.processor() or platform.machine(), threads=torch.get_num_threads(),
                torch=torch.__version__, args={k: v for k, v in vars(args).items() if k != 'memory_child'})
    if args.device == 'cuda': meta['gpu'] = torch.cuda.get_device_name()
    with open(args.json, 'w') as f: json.dump(dict(meta=meta, results=results), f, indent=1)
    print(f'\nwrote {args.json}')


if __name__ == '__main__': main()
