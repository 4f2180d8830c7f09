"""Does `torch.compile` of the training step pay back in `xresnet-fa train`? Measured on the path of a CPU whose bf16 is not faster.

Each run is `train(...)` (what `xresnet-fa train` runs) in float32, channels-last, in its own process, on the same folder (default:
the digits), with the model's forward and backward compiled by Inductor (`model.compile()` from the first batch of each fit: training,
validation and the last short batch each compile their graph) or not:
  eager           the command as it is
  compiled cold   a fresh, empty Inductor cache: what the first run on a machine pays
  compiled warm   the cache the cold run filled: what every later run of the same network, size and batch pays
Reported: seconds of each epoch (fastai's epoch: training plus validation pass), the steady epoch (median of epochs 2 on), the compile
time apart (first epoch minus eager's first epoch), the steady speed-up, and after how many epochs the compile time is paid back.
Run: python benchmarks/compiled_training.py [--arch xresnet18] [--size 32] [--epochs 5] [--json F]
"""
import argparse, json, os, statistics, subprocess, sys, tempfile
from pathlib import Path

HERE = Path(__file__).resolve()


def one_run(arch, size, bs, epochs, compiled, data):
    "In a child process: one `train` run; prints one JSON line"
    from fastai.callback.core import Callback
    from xresnet_fa.train import train

    class CompiledModel(Callback):
        "The model's forward (and so its backward) compiled by Inductor for the fit; dropped after it, so export pickles the plain model"
        def before_fit(self): self.learn.model.compile()
        def after_fit(self): self.learn.model._compiled_call_impl = None

    with tempfile.TemporaryDirectory() as out:
        m = train(data, arch, epochs, size, bs, precision='32', channels_last=True, out=out, cbs=[CompiledModel()] if compiled else [])
    print(json.dumps(dict(accuracy=m['accuracy'], epochs=[e['seconds'] for e in m['epochs']])))


def run(mode, a, cache_dir):
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache_dir)
    cmd = [sys.executable, str(HERE), '--child', mode, '--arch', a.arch, '--size', str(a.size), '--bs', str(a.bs), '--epochs', str(a.epochs)]
    if a.data: cmd += ['--data', a.data]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode: sys.exit(f"{mode} run failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--arch', default='xresnet18'); p.add_argument('--size', type=int, default=32)
    p.add_argument('--bs', type=int, default=32); p.add_argument('--epochs', type=int, default=5)
    p.add_argument('--data', help='image folder (default: the digits)'); p.add_argument('--json', help='also write the results here')
    p.add_argument('--child', help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.epochs < 2: p.error('--epochs must be 2 or more: the steady epoch is the median of epochs 2 on')
    if a.child: return one_run(a.arch, a.size, a.bs, a.epochs, a.child != 'eager', a.data)
    with tempfile.TemporaryDirectory() as cache:
        runs = {m: run(m, a, cache) for m in ('eager', 'compiled cold', 'compiled warm')}  # cold fills the cache that warm reads
    steady = {m: statistics.median(r['epochs'][1:]) for m, r in runs.items()}
    print(f"{a.arch} at {a.size} px, batch {a.bs}, {a.epochs} epochs, float32, channels-last; epoch seconds (training + validation):")
    for m, r in runs.items():
        extra = r['epochs'][0] - runs['eager']['epochs'][0]
        gain = steady['eager'] - steady[m]
        payback = '' if m == 'eager' else (f", compile {extra:.0f} s, paid back after {extra / gain:.1f} epochs" if gain > 0
                                           else f", compile {extra:.0f} s, never paid back: no faster per epoch")
        print(f"  {m:14s} {' '.join(f'{s:6.1f}' for s in r['epochs'])}   steady {steady[m]:.1f} s"
              f" ({steady['eager'] / steady[m]:.2f}x eager){payback}; accuracy {r['accuracy']:.4f}")
    if a.json:
        Path(a.json).write_text(json.dumps(dict(arch=a.arch, size=a.size, bs=a.bs, epochs=a.epochs, runs=runs, steady=steady), indent=1))


if __name__ == '__main__': main()
