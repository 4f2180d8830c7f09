"""Default `xresnet-fa train` settings on the digits: ours vs fastai's xresnet18, trained the same way in one run.

Interleaves the two architectures over several seeds; prints a table of validation accuracy and training seconds
(medians and min-max) and writes JSON. Run: python benchmarks/train_digits.py [--seeds 3] [--json out.json]
"""
import argparse, contextlib, io, json, platform, statistics, time
import torch
from fastai.vision.all import Learner, accuracy, set_seed
from fastai.vision.models.xresnet import xresnet18 as fastai_xresnet18
from xresnet_fa.xresnet import xresnet18
from xresnet_fa.data import digits_folder
from xresnet_fa.folder import check_folder, folder_dls
import inspect, xresnet_fa.train as T

DEFAULTS = {k: v.default for k, v in inspect.signature(T.train).parameters.items()}


def run(make_model, seed):
    "One training run with the defaults of xresnet-fa train; returns (accuracy, training seconds)"
    folder = check_folder(digits_folder())
    set_seed(seed, reproducible=True)
    dls = folder_dls(folder, DEFAULTS['size'], DEFAULTS['bs'], DEFAULTS['workers'], 'cpu', seed)
    learn = Learner(dls, make_model(n_out=dls.c), metrics=accuracy)
    start = time.perf_counter()
    with learn.no_bar(), contextlib.redirect_stdout(io.StringIO()): learn.fit_one_cycle(DEFAULTS['epochs'], DEFAULTS['lr'])
    return float(learn.recorder.values[-1][2]), time.perf_counter() - start


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--seeds', type=int, default=3)
    p.add_argument('--json', default='benchmarks/train_digits.json')
    args = p.parse_args()
    models = {'xresnet_fa xresnet18': xresnet18, 'fastai xresnet18': fastai_xresnet18}
    results = {name: [] for name in models}
    for seed in range(args.seeds):
        for name, make in models.items():  # interleaved: both see the same machine state
            acc, secs = run(make, seed)
            results[name].append(dict(seed=seed, accuracy=acc, seconds=secs))
            print(f"seed {seed}  {name:<22} accuracy {acc:.2%}  {secs:5.1f} s", flush=True)
    print(f"\nxresnet-fa train defaults: size {DEFAULTS['size']}, bs {DEFAULTS['bs']}, {DEFAULTS['epochs']} epochs, "
          f"lr {DEFAULTS['lr']}, fit_one_cycle; {torch.get_num_threads()} CPU threads, {platform.processor() or platform.machine()}")
    print(f"{'model':<22}{'accuracy median (min-max)':>30}{'train s median (min-max)':>30}")
    for name, rs in results.items():
        a, s = [r['accuracy'] for r in rs], [r['seconds'] for r in rs]
        print(f"{name:<22}{statistics.median(a):>17.2%} ({min(a):.2%}-{max(a):.2%}){statistics.median(s):>17.1f} ({min(s):.1f}-{max(s):.1f})")
    ratio = statistics.median(r['seconds'] for r in results['xresnet_fa xresnet18']) / statistics.median(r['seconds'] for r in results['fastai xresnet18'])
    print(f"time ratio ours/fastai (medians): {ratio:.2f}")
    json.dump(dict(defaults={k: DEFAULTS[k] for k in ('size', 'bs', 'epochs', 'lr')}, threads=torch.get_num_threads(),
                   results=results, time_ratio=ratio), open(args.json, 'w'), indent=1)
