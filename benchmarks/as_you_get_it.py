"""Speed as a user gets it: `xresnet-fa train` and `predict` with their defaults, against the fastai script a user writes.

Training, on the same image folder (default: the digits that ship with scikit-learn), each run in its own process, the three
interleaved seed by seed:
  ours    `xresnet-fa train --data D --arch A --size S --bs B --epochs E --seed s` (its defaults: channels-last, bf16 where faster)
  fastai  ImageDataLoaders.from_folder(D, valid='valid', item_tfms=Resize(S), bs=B); Learner(dls, fastai's A(n_out=dls.c),
          metrics=accuracy).fit_one_cycle(E, 5e-3): fastai's defaults, float32, channels-first
  timm    the same script with timm's resnet{depth}d
Reported: training images per second of epoch wall time (training pass plus validation pass, as fastai times an epoch; median
over epochs), final validation accuracy, peak resident memory of the process; medians over seeds with min-max, and ratios.
Inference, on the validation images with our trained learner: `predict_files` (what `xresnet-fa predict` runs: its defaults) and
`fast_inference` (defaults, compiled; compile time reported apart) against fastai's `learn.get_preds` and the eager model in
float32; interleaved repeats, medians.
int8: `fast_inference(precision='int8')`, calibrated on the first 4 validation batches, compiled (time apart); --no-int8 leaves it out.
--busy: only the CPU bf16 probe of the training step (--arch, --size, --bs), idle and then beside a burner, with its decisions.
Run: python benchmarks/as_you_get_it.py [--arch xresnet50] [--size 128] [--epochs 2] [--seeds 3] [--busy] [--json F]
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time
from pathlib import Path

HERE = Path(__file__).resolve()
LR = 5e-3  # the command's default --lr, given to the scripts too


def user_script(family, data, arch, size, bs, epochs, seed):
    "In a child process: the fastai script a user writes, with a timer callback; prints one JSON line"
    from fastai.vision.all import ImageDataLoaders, Learner, Resize, accuracy, set_seed, Callback
    set_seed(seed)
    dls = ImageDataLoaders.from_folder(data, valid='valid', item_tfms=Resize(size), bs=bs)
    if family == 'fastai':
        from fastai.vision.models import xresnet as fx
        model = getattr(fx, arch)(n_out=dls.c)
    else:
        import timm
        model = timm.create_model(f"resnet{arch.removeprefix('xresnet')}d", num_classes=dls.c)
    class EpochTimer(Callback):
        def before_epoch(self): self.t = time.perf_counter()
        def after_epoch(self): seconds.append(time.perf_counter() - self.t)
    seconds = []
    learn = Learner(dls, model, metrics=accuracy)
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(epochs, LR, cbs=[EpochTimer()])
    print(json.dumps(dict(seconds=seconds, accuracy=float(learn.recorder.values[-1][2]), n_train=len(dls.train_ds),
                          workers=dls.train.num_workers, precision='32', channels_last=False)))


def peak_mib_of(cmd):
    "Run `cmd` in a child; return (stdout, stderr, peak RSS MiB of the child)"
    with tempfile.TemporaryFile('w+') as fo, tempfile.TemporaryFile('w+') as fe:
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe, text=True)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        fo.seek(0); fe.seek(0); out, err = fo.read(), fe.read()
    if p.returncode: sys.exit(f"failed ({p.returncode}): {' '.join(map(str, cmd))}\n{err[-3000:]}")
    return out, err, usage.ru_maxrss/1024  # Linux: KiB


def train_ours(data, arch, size, bs, epochs, seed, out):
    cmd = [sys.executable, '-m', 'xresnet_fa', 'train', '--data', data, '--arch', arch, '--size', size, '--bs', bs,
           '--epochs', epochs, '--seed', seed, '--lr', LR, '--out', out, '--overwrite']
    _, err, mib = peak_mib_of(list(map(str, cmd)))
    m = json.loads((Path(out)/'metrics.json').read_text())
    return dict(seconds=[e['seconds'] for e in m['epochs']], accuracy=m['accuracy'], n_train=m['n_train'], workers=0,
                precision=m['precision'], channels_last=m['channels_last'], speed=m['speed'], peak_mib=mib)


def train_script(family, data, arch, size, bs, epochs, seed):
    cmd = [sys.executable, str(HERE), '--child', family, '--data', data, '--arch', arch, '--size', size, '--bs', bs,
           '--epochs', epochs, '--seeds', seed]
    out, _, mib = peak_mib_of(list(map(str, cmd)))
    return dict(json.loads(out.strip().splitlines()[-1]), peak_mib=mib)


def inference(export, data, repeats, bs, compile=True, int8=True):
    "In this process: our predict path and fast_inference against fastai's get_preds and the eager model, on the valid images"
    import torch, warnings
    from fastai.learner import load_learner
    from xresnet_fa.fast import predict_files, fast_inference, speed_defaults
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        learn = load_learner(export)
    files = sorted(p for p in (Path(data)/'valid').rglob('*') if p.suffix.lower() in ('.png', '.jpg', '.jpeg'))
    dl = learn.dls.test_dl(files, bs=bs, num_workers=0)
    batches = [xb.as_subclass(torch.Tensor) for xb, *_ in dl]  # decoded, resized and normalised once, for the model-only timings
    eager = learn.model.eval()
    start = time.perf_counter(); fast = fast_inference(learn.model, compile=compile)
    with torch.inference_mode(): fast(batches[0])
    compile_s = time.perf_counter() - start
    int8_s = None
    if int8 and compile:  # asked-for int8: calibrated on the first 4 validation batches (this benchmark keeps no training data), compiled
        start = time.perf_counter(); q8 = fast_inference(learn.model, precision='int8', calibration=batches[:4])
        with torch.inference_mode(): q8(batches[0])
        int8_s = time.perf_counter() - start
    def get_preds():
        with learn.no_bar(): return learn.get_preds(dl=learn.dls.test_dl(files, bs=bs, num_workers=0))[0]
    def predict(): return predict_files(learn, files, bs)[1]
    def model_eager():
        with torch.inference_mode(): return torch.cat([eager(x) for x in batches])
    def model_fast():
        with torch.inference_mode(): return torch.cat([fast(x) for x in batches])
    def model_int8():
        with torch.inference_mode(): return torch.cat([q8(x) for x in batches])
    steps = dict(get_preds=get_preds, predict_files=predict, eager_model=model_eager, fast_inference=model_fast,
                 **(dict(fast_inference_int8=model_int8) if int8_s is not None else {}))
    times = {k: [] for k in steps}
    outs = {k: f() for k, f in steps.items()}  # warm-up, and the answers to compare
    for _ in range(repeats):
        for k, f in steps.items():
            start = time.perf_counter(); f(); times[k].append(time.perf_counter() - start)
    n = len(files)
    ips = {k: [n/t for t in v] for k, v in times.items()}
    agree = {k: float((outs[k].argmax(1) == outs['get_preds'].argmax(1)).float().mean()) for k in outs}
    extra = dict(int8_vs_eager_model=statistics.median(ips['fast_inference_int8'])/statistics.median(ips['eager_model'])) if int8_s is not None else {}
    return dict(images=n, bs=bs, compile_seconds=compile_s, int8_compile_seconds=int8_s, images_per_s=ips, agree_with_get_preds=agree,
                speed=speed_defaults(torch.device('cpu'))[2],
                ratios=dict(predict_files_vs_get_preds=statistics.median(ips['predict_files'])/statistics.median(ips['get_preds']),
                            fast_inference_vs_eager_model=statistics.median(ips['fast_inference'])/statistics.median(ips['eager_model']), **extra))


def busy_probe(arch, size, bs):
    "The CPU bf16 probe of this run's training step, on an idle machine and beside a burner (a spinning process per core)"
    from xresnet_fa.fast import BF16_MIN_SPEEDUP, Workload, probe_bf16
    work, res = Workload(arch, size, bs), {}
    code = "import time\nt = time.time()\nwhile time.time() - t < 3600: pass"
    for mode in ('idle', 'busy'):
        procs = [subprocess.Popen([sys.executable, '-c', code]) for _ in range(os.cpu_count() or 1)] if mode == 'busy' else []
        try:
            with tempfile.TemporaryDirectory() as c:
                start = time.perf_counter(); r = probe_bf16(work, c); r['seconds'] = time.perf_counter() - start
        finally:
            for q in procs: q.kill(); q.wait()
        r['decision'] = 'bf16' if r['ratio'] >= BF16_MIN_SPEEDUP else 'float32'
        res[mode] = r
        print(f"probe {mode}: {work}: {r['ratio']:.2f}x -> {r['decision']} ({r['pairs']} pairs, thread share {r['share']:.0%}, "
              f"{'kept' if r['kept'] else 'not kept'}; {r['seconds']:.1f} s)", flush=True)
    return res


def med(xs): return statistics.median(xs), min(xs), max(xs)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data', help='image folder with train/ and valid/ (default: the digits, written once to the cache)')
    p.add_argument('--arch', default='xresnet50')
    p.add_argument('--size', type=int, default=128)
    p.add_argument('--bs', type=int, default=32)
    p.add_argument('--epochs', type=int, default=2)
    p.add_argument('--seeds', type=int, default=3, help='seeds 0..N-1 (with --child: the seed)')
    p.add_argument('--families', nargs='+', default=['ours', 'fastai', 'timm'])
    p.add_argument('--infer-repeats', type=int, default=3)
    p.add_argument('--infer-bs', type=int, default=64)
    p.add_argument('--compile', action=argparse.BooleanOptionalAction, default=True, help="fast_inference's torch.compile (default: on)")
    p.add_argument('--int8', action=argparse.BooleanOptionalAction, default=True, help='add the int8 row (compiled; needs --compile)')
    p.add_argument('--busy', action='store_true', help="only run the CPU bf16 probe of this run's step, idle and beside a CPU burner, and print its decisions")
    p.add_argument('--json', help='write the results here')
    p.add_argument('--child', help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child: return user_script(a.child, a.data, a.arch, a.size, a.bs, a.epochs, a.seeds)
    if a.busy:
        res = busy_probe(a.arch, a.size, a.bs)
        if a.json: Path(a.json).write_text(json.dumps(res, indent=1))
        return
    if a.data is None:
        from xresnet_fa.data import digits_folder
        a.data = str(digits_folder())
    runs = {f: [] for f in a.families}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(a.seeds):
            for f in a.families:
                r = (train_ours(a.data, a.arch, a.size, a.bs, a.epochs, seed, Path(tmp)/f'ours{seed}') if f == 'ours' else
                     train_script(f, a.data, a.arch, a.size, a.bs, a.epochs, seed))
                r['images_per_s'] = statistics.median(r['n_train']/s for s in r['seconds'])
                runs[f].append(r)
                print(f"seed {seed} {f:>6}: {r['images_per_s']:6.1f} images/s, accuracy {r['accuracy']:.2%}, "
                      f"peak {r['peak_mib']:.0f} MiB", flush=True)
        infer = inference(Path(tmp)/'ours0'/'export.pkl', a.data, a.infer_repeats, a.infer_bs, a.compile, a.int8) if 'ours' in a.families else None
    summary = {f: dict(images_per_s=med([r['images_per_s'] for r in rs]), accuracy=med([r['accuracy'] for r in rs]),
                       peak_mib=med([r['peak_mib'] for r in rs])) for f, rs in runs.items()}
    print(f"\n{a.arch} at {a.size} px, batch {a.bs}, {a.epochs} epochs, seeds 0-{a.seeds - 1}; medians (min-max)")
    for f, s in summary.items():
        print(f"  {f:>6}: {s['images_per_s'][0]:6.1f} images/s ({s['images_per_s'][1]:.1f}-{s['images_per_s'][2]:.1f}), "
              f"accuracy {s['accuracy'][0]:.2%} ({s['accuracy'][1]:.2%}-{s['accuracy'][2]:.2%}), peak {s['peak_mib'][0]:.0f} MiB")
    ratios = {}
    if 'ours' in runs:
        for f in runs:
            if f == 'ours': continue
            per_seed = [o['images_per_s']/t['images_per_s'] for o, t in zip(runs['ours'], runs[f])]
            ratios[f] = dict(training=med(per_seed), accuracy_points=100*(summary['ours']['accuracy'][0] - summary[f]['accuracy'][0]),
                             peak_memory=summary['ours']['peak_mib'][0]/summary[f]['peak_mib'][0])
            print(f"  ours / {f}: training {ratios[f]['training'][0]:.2f}x ({ratios[f]['training'][1]:.2f}-{ratios[f]['training'][2]:.2f}), "
                  f"accuracy {ratios[f]['accuracy_points']:+.2f} points, peak memory {ratios[f]['peak_memory']:.2f}x")
        print(f"  ours ran in: {runs['ours'][0]['speed']}")
    if infer:
        print(f"inference on {infer['images']} validation images, batch {infer['bs']}, medians of {a.infer_repeats}:")
        for k, v in infer['images_per_s'].items():
            print(f"  {k:>15}: {statistics.median(v):6.1f} images/s (agrees with get_preds on {infer['agree_with_get_preds'][k]:.1%})")
        print(f"  predict_files / get_preds: {infer['ratios']['predict_files_vs_get_preds']:.2f}x; "
              f"fast_inference / eager model: {infer['ratios']['fast_inference_vs_eager_model']:.2f}x "
              f"(compiled once in {infer['compile_seconds']:.1f} s, not counted)")
        if infer['int8_compile_seconds'] is not None:
            print(f"  fast_inference int8 / eager model: {infer['ratios']['int8_vs_eager_model']:.2f}x "
                  f"(quantized and compiled once in {infer['int8_compile_seconds']:.1f} s, not counted)")
    if a.json:
        import torch, fastai, timm
        from xresnet_fa.fast import _cpu_name
        Path(a.json).write_text(json.dumps(dict(
            settings=vars(a), machine=dict(cpu=_cpu_name(), threads=torch.get_num_threads(),
                                           torch=torch.__version__, fastai=fastai.__version__, timm=timm.__version__),
            runs=runs, summary=summary, ratios=ratios, inference=infer), indent=1))


if __name__ == '__main__':
    main()
